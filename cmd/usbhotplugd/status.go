package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"strconv"
	"syscall"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/usbhotplugd/usbhotplugd/policy"
)

func readStatus(dir string) (*daemonStatus, bool, error) {
	s := &stateFiles{dir: dir}
	b, err := os.ReadFile(s.statusPath())
	if errors.Is(err, fs.ErrNotExist) {
		return nil, false, fmt.Errorf("no agent has run here: %s does not exist (is usbhotplugd running, with --state-dir %s?)", s.statusPath(), dir)
	}
	if err != nil {
		return nil, false, err
	}
	var st daemonStatus
	if err := json.Unmarshal(b, &st); err != nil {
		return nil, false, fmt.Errorf("%s: %w", s.statusPath(), err)
	}
	return &st, alive(st.PID), nil
}

func alive(pid int) bool {
	if pid <= 0 {
		return false
	}
	err := syscall.Kill(pid, 0)
	return err == nil || errors.Is(err, syscall.EPERM)
}

// states orders the table: what the agent did first, then what waits,
// then what it will not do.
var states = []string{"attached", "kept", "held", "pending", "left", "refused", "denied", "unmatched", "failed"}

func init() {
	register(command{name: "status", group: groupAgent, new: newStatusCmd,
		examples: []string{"usbhotplugd status\t# what each device is and why", "usbhotplugd status --json"}})
	register(command{name: "reload", group: groupAgent, new: newReloadCmd,
		examples: []string{"usbhotplugd reload\t# check /etc/usbhotplugd/policy.toml, then have the agent load it"}})
}

func newStatusCmd() *cobra.Command {
	c := &cobra.Command{
		Use:   "status [--state-dir DIR] [--json]",
		Short: "what the running agent decided for each device, and why",
	}
	stateDir := c.Flags().String("state-dir", DefaultStateDir, "the agent's state directory")
	asJSON := c.Flags().Bool("json", false, "print the status file as JSON")
	c.RunE = func(c *cobra.Command, args []string) error { return runStatus(*stateDir, *asJSON, c.OutOrStdout()) }
	return c
}

func runStatus(stateDir string, asJSON bool, stdout io.Writer) error {
	st, running, err := readStatus(stateDir)
	if err != nil {
		return err
	}
	if asJSON {
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		return enc.Encode(struct {
			Running bool `json:"running"`
			*daemonStatus
		}{running, st})
	}
	state := "running"
	if !running {
		state = "NOT running (this is what it last wrote)"
	}
	fmt.Fprintf(stdout, "usbhotplugd %s, pid %d, %s since %s\n", st.Version, st.PID, state, st.Started.Format(time.DateTime))
	ready := "ready"
	if !st.Ready {
		ready = "not ready yet (first pass running)"
	}
	conn := "connected to xenstore"
	if !st.Connected {
		conn = "NOT connected to xenstore"
	}
	dry := ""
	if st.DryRun {
		dry = ", DRY RUN (changes nothing)"
	}
	fmt.Fprintf(stdout, "%s, %s%s; %s, %s\n", ready, conn, dry, plural(int(st.Stats.Events), "kernel event"), plural(int(st.Stats.Passes), "pass"))
	fmt.Fprintf(stdout, "policy %s: %s, loaded %s\n", st.Policy, plural(st.Rules, "rule"), st.PolicyAt.Format(time.DateTime))
	if st.ReloadError != "" {
		fmt.Fprintf(stdout, "last reload REFUSED (the policy above stays in force): %s\n", st.ReloadError)
	}
	if st.Status == nil || len(st.Status.Devices) == 0 {
		fmt.Fprintln(stdout, "\nno devices decided yet")
		return nil
	}
	fmt.Fprintln(stdout)
	tw := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "BUSID\tID\tSTATE\tDOMAIN\tPORT\tRULE\tWHY")
	for _, s := range states {
		for _, d := range st.Status.Devices {
			if string(d.Action) != s {
				continue
			}
			dom, port := "-", "-"
			if d.Domain != "" {
				dom = d.Domain
				if d.Domid > 0 {
					dom += " (" + strconv.Itoa(d.Domid) + ")"
				}
			} else if d.Domid > 0 {
				dom = "domid " + strconv.Itoa(d.Domid)
			}
			if d.Port > 0 {
				port = fmt.Sprintf("%d:%d", d.Ctrl, d.Port)
			}
			rule := d.Rule
			if rule == "" {
				rule = "-"
			}
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\n", d.BusID, d.ID, d.Action, dom, port, rule, d.Reason)
		}
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	for _, k := range st.Status.Skipped {
		fmt.Fprintf(stdout, "controller %d of domain %d is SKIPPED (the rest of the host works on): %s\n", k.DevID, k.Domid, k.Reason)
	}
	return nil
}

func newReloadCmd() *cobra.Command {
	c := &cobra.Command{
		Use:   "reload [--policy FILE] [--state-dir DIR]",
		Short: "check the policy, then make the running agent reload it (SIGHUP)",
	}
	polPath := c.Flags().String("policy", DefaultPolicy, "the policy file the agent reads (checked first)")
	stateDir := c.Flags().String("state-dir", DefaultStateDir, "the agent's state directory")
	wait := c.Flags().Duration("wait", 5*time.Second, "how long to wait for the agent to take it")
	c.RunE = func(c *cobra.Command, args []string) error {
		return runReload(c.Context(), *polPath, *stateDir, *wait, c.OutOrStdout())
	}
	return c
}

func runReload(ctx context.Context, polPath, stateDir string, wait time.Duration, stdout io.Writer) error {
	// A policy that does not parse is never sent: the agent would refuse
	// it anyway, and the admin is here to read why.
	p, err := policy.ParseFile(polPath)
	if err != nil {
		return err
	}
	sf := &stateFiles{dir: stateDir}
	b, err := os.ReadFile(sf.pidPath())
	if err != nil {
		return fmt.Errorf("no running agent: %w", err)
	}
	pid, err := strconv.Atoi(string(trimNL(b)))
	if err != nil || pid <= 0 {
		return fmt.Errorf("%s: not a pid: %q", sf.pidPath(), b)
	}
	before, _, _ := readStatus(stateDir)
	if err := syscall.Kill(pid, syscall.SIGHUP); err != nil {
		return fmt.Errorf("signalling usbhotplugd (pid %d): %w", pid, err)
	}
	deadline := time.Now().Add(wait)
	for time.Now().Before(deadline) {
		st, _, err := readStatus(stateDir)
		if err == nil && (before == nil || st.PolicyAt.After(before.PolicyAt)) {
			if st.ReloadError != "" {
				return fmt.Errorf("the agent refused the policy: %s", st.ReloadError)
			}
			fmt.Fprintf(stdout, "usbhotplugd (pid %d) reloaded %s: %s\n", pid, p.File, plural(st.Rules, "rule"))
			return nil
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(20 * time.Millisecond): // polls a file another process writes
		}
	}
	return fmt.Errorf("usbhotplugd (pid %d) was signalled but did not confirm the reload within %s", pid, wait)
}
