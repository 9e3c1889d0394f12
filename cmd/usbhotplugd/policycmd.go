package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"runtime/debug"
	"strings"

	"github.com/spf13/cobra"

	"github.com/usbhotplugd/usbhotplugd/internal/daemon"
	"github.com/usbhotplugd/usbhotplugd/internal/inventory"
	"github.com/usbhotplugd/usbhotplugd/internal/mounts"
	"github.com/usbhotplugd/usbhotplugd/internal/safetext"
	"github.com/usbhotplugd/usbhotplugd/internal/usbsysfs"
	"github.com/usbhotplugd/usbhotplugd/policy"
)

// defaultPolicy is where the agent reads its policy.
const defaultPolicy = "/etc/usbhotplugd/policy.toml"

// exitError fails a command (exit 1) with a message and nothing else to
// print: `check --strict` with warnings.
type exitError struct{ msg string }

func (e *exitError) Error() string { return e.msg }

func init() {
	register(command{name: "check", group: groupPolicy, new: newCheckCmd,
		examples: []string{"usbhotplugd check /etc/usbhotplugd/policy.toml", "usbhotplugd check --strict my.toml"}})
	register(command{name: "explain", group: groupPolicy, new: newExplainCmd,
		examples: []string{"usbhotplugd explain\t# every present device", "usbhotplugd explain --policy my.toml 1-1.6"}})
}

func newCheckCmd() *cobra.Command {
	c := &cobra.Command{
		Use:   "check [--strict] [--host NAME] [--policy FILE | POLICY]",
		Short: "validate a policy file and its drop-ins, and list rules that can never decide",
		Args:  maxArgs(1, "one policy file at most"),
	}
	strict := c.Flags().Bool("strict", false, "fail on warnings too (shadowed rules, a class given per interface)")
	host := c.Flags().String("host", "", "check what host NAME would load: the drop-ins whose hosts match it (default: this host)")
	// As the other policy commands take it; the file may be given as
	// the argument too.
	polPath := c.Flags().String("policy", defaultPolicy, "policy file to check (its rules.d drop-ins too); or give it as the argument")
	c.RunE = func(c *cobra.Command, args []string) error {
		path := *polPath
		if len(args) == 1 {
			if c.Flags().Changed("policy") && args[0] != *polPath {
				return &usageError{fmt.Sprintf("two policy files, --policy %s and %s: give one", *polPath, args[0])}
			}
			path = args[0]
		}
		if c.Flags().Changed("host") && *host == "" {
			return &usageError{"--host NAME: give a host name (without --host, this host's)"}
		}
		return runCheck(c.Context(), path, policy.Options{Host: *host}, *strict, c.OutOrStdout())
	}
	return c
}

func runCheck(ctx context.Context, path string, opt policy.Options, strict bool, stdout io.Writer) error {
	// check allocates much and exits: collecting half as often saves a
	// sixth of a large policy's check, for no more memory at its peak.
	defer debug.SetGCPercent(debug.SetGCPercent(200))
	p, err := policy.Load(ctx, path, opt)
	if err != nil {
		if es, ok := err.(policy.Errors); ok {
			for _, e := range es {
				fmt.Fprintln(stdout, e)
			}
			return fmt.Errorf("%s: %s; the policy is not valid and the agent would keep its previous one", path, plural(len(es), "error"))
		}
		return err
	}
	warnings := p.Warnings()
	for _, w := range warnings {
		fmt.Fprintf(stdout, "warning: %s\n", w)
	}
	summary := checkSummary(p, path, len(warnings))
	if strict && len(warnings) > 0 {
		summary = strings.Replace(summary, ": valid:", ": not valid with --strict:", 1)
	}
	fmt.Fprintln(stdout, summary)
	printRuleFiles(stdout, p)
	if strict && len(warnings) > 0 {
		return &exitError{fmt.Sprintf("%s with --strict", plural(len(warnings), "warning"))}
	}
	return nil
}

func checkSummary(p *policy.Policy, path string, warnings int) string {
	files := map[string]int{}
	var order []string
	for _, r := range p.Rules {
		if files[r.File] == 0 {
			order = append(order, r.File)
		}
		files[r.File]++
	}
	var inc []string
	for _, f := range order {
		if f != path {
			inc = append(inc, fmt.Sprintf("%d from %s", files[f], f))
		}
	}
	summary := fmt.Sprintf("%s: valid: %s", path, plural(len(p.Rules), "rule"))
	if len(inc) > 0 {
		summary += " (" + strings.Join(inc, ", ") + ")"
	}
	return summary + fmt.Sprintf(", %s, %s", plural(len(p.Domains), "domain section"), plural(warnings, "warning"))
}

// printRuleFiles lists which file each rule comes from, in the order the
// rules are tried, when there is more than one file; and the drop-ins
// left out for this host.
func printRuleFiles(w io.Writer, p *policy.Policy) {
	type run struct {
		file        string
		first, last int
	}
	var runs []run
	for _, r := range p.Rules {
		if n := len(runs); n > 0 && runs[n-1].file == r.File {
			runs[n-1].last = r.Index
			continue
		}
		runs = append(runs, run{r.File, r.Index, r.Index})
	}
	if len(runs) > 1 {
		fmt.Fprintln(w, "rules in the order they are tried (the first that matches decides):")
		for _, r := range runs {
			span := fmt.Sprint(r.first)
			if r.last != r.first {
				span = fmt.Sprintf("%d-%d", r.first, r.last)
			}
			fmt.Fprintf(w, "  %-13s %s\n", span, r.file)
		}
	}
	for _, s := range p.Skipped {
		fmt.Fprintf(w, "not for host %s: %s (hosts = %s)\n", p.Host, s.File, strings.Join(s.Hosts, ", "))
	}
}

type explainOpts struct {
	path, root, mountinfo, host string
	asJSON, plugged             bool
}

func newExplainCmd() *cobra.Command {
	c := &cobra.Command{
		Use:               "explain [--policy FILE] [--json] [--plugged] [--sysfs DIR] [--mountinfo FILE] [BUSID]",
		Short:             "show what the policy does with each present device, and why",
		ValidArgsFunction: completeBusID,
		Args: func(c *cobra.Command, args []string) error {
			if len(args) > 1 {
				return &usageError{"one busid at most"}
			}
			if len(args) == 1 {
				if err := usbsysfs.ValidBusID(args[0]); err != nil {
					return &usageError{err.Error()}
				}
			}
			return nil
		},
	}
	var o explainOpts
	c.Flags().StringVar(&o.path, "policy", defaultPolicy, "policy file (its rules.d drop-ins too)")
	c.Flags().StringVar(&o.host, "host", "", "select drop-ins as host NAME would (default: this host)")
	c.Flags().BoolVar(&o.asJSON, "json", false, "print JSON (the control socket's explain objects)")
	c.Flags().StringVar(&o.root, "sysfs", sysfsDefault(), "sysfs root to read")
	c.Flags().StringVar(&o.mountinfo, "mountinfo", mounts.Default, "dom0's mounts, for the guard that keeps a disk dom0 uses")
	c.Flags().BoolVar(&o.plugged, "plugged", false, "decide as for devices plugged in after the agent started (match.when = \"plugged\"); by default they count as present at its start")
	c.RunE = func(c *cobra.Command, args []string) error {
		want := ""
		if len(args) == 1 {
			want = args[0]
		}
		if c.Flags().Changed("host") && o.host == "" {
			return &usageError{"--host NAME: give a host name (without --host, this host's)"}
		}
		return runExplain(c.Context(), o, want, c.OutOrStdout())
	}
	return c
}

func runExplain(ctx context.Context, o explainOpts, want string, stdout io.Writer) error {
	p, err := policy.Load(ctx, o.path, policy.Options{Host: o.host})
	if err != nil {
		return fmt.Errorf("%w\n(run usbhotplugd check %s)", err, o.path)
	}
	devs, scanErr := usbsysfs.NewFS(o.root).Devices()
	unread, err := usbsysfs.Partial(scanErr)
	if err != nil {
		return err
	}
	if err := usbsysfs.UnreadOf(unread, want); err != nil {
		return err
	}
	if want != "" {
		scanErr = nil // another device's fault changes nothing here
	}
	inv := inventory.FromScan(devs)
	sys := usbsysfs.NewFS(o.root)
	for i := range inv {
		inv[i].Present = !o.plugged
		inv[i].InUse = inventory.InUse(sys, devs[i], o.mountinfo)
	}
	// In the control socket's form: one shape, whoever explains.
	var out []daemon.Explanation
	for i, d := range devs {
		if want != "" && d.BusID != want {
			continue
		}
		out = append(out, daemon.ExplanationOf(d, p.Explain(&inv[i], inv), nil))
	}
	if want != "" && len(out) == 0 {
		return fmt.Errorf("no USB device %s on this host (usbhotplugd devices lists them)", want)
	}
	if o.asJSON {
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		return errors.Join(enc.Encode(out), scanErr)
	}
	for i, j := range out {
		if i > 0 {
			fmt.Fprintln(stdout)
		}
		name := safetext.Text(strings.TrimSpace(j.Device.Manufacturer + " " + j.Device.ProductName))
		where := fmt.Sprintf("bus %d addr %d", j.Device.BusNum, j.Device.DevNum)
		if j.Device.PortPath != "" {
			// A platform controller's part of it is firmware's naming:
			// never raw either.
			where += "  " + safetext.Text(j.Device.PortPath)
		}
		fmt.Fprintf(stdout, "%s  %s  %s  %s\n", j.Device.BusID, j.Device.ID, where, name)
		// A rule written for the socket the device is plugged into names
		// the EHCI's port, which the device is not at: say so here, where
		// the admin looks when such a rule does not match.
		if ehci, err := sys.CompanionOf(j.Device.BusID); err == nil && ehci != "" {
			fmt.Fprintf(stdout, "  at a companion controller of the EHCI %s: a full- or low-speed device plugged into an EHCI socket is handed to it, so a rule for that socket (port, port_path) names the busid and port path shown here, not the EHCI's\n", ehci)
		}
		// A reason may quote more than the device's strings (%q'd): a
		// mount point made of a stick's filesystem label. Never raw.
		for _, s := range j.Skipped {
			fmt.Fprintf(stdout, "  rule %d %q (%s) does not match: %s\n", s.RuleIndex, s.Rule, s.RuleAt, safetext.Line(s.Reason))
		}
		at := ""
		if j.RuleAt != "" {
			at = " (" + j.RuleAt + ")"
		}
		fmt.Fprintf(stdout, "  => %s: %s%s\n", j.Action, safetext.Line(j.Reason), at)
		if len(j.Exec) > 0 {
			fmt.Fprintf(stdout, "     then runs %s\n", strings.Join(j.Exec, " "))
		}
	}
	return scanErr
}

// plural says "1 error", "2 errors", "0 passes".
func plural(n int, what string) string {
	if n == 1 {
		return "1 " + what
	}
	if strings.HasSuffix(what, "s") {
		return fmt.Sprintf("%d %ses", n, what)
	}
	return fmt.Sprintf("%d %ss", n, what)
}
