package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/usbhotplugd/usbhotplugd/internal/agent"
	"github.com/usbhotplugd/usbhotplugd/internal/daemon"
	"github.com/usbhotplugd/usbhotplugd/internal/safetext"
	"github.com/usbhotplugd/usbhotplugd/policy"
)

// states orders the table: what the agent did first, then what waits,
// then what it will not do.
var states = []string{"attached", "kept", "held", "pending", "left", "refused", "denied", "blocked", "unmatched", "released", "detached", "failed"}

func init() {
	register(command{name: "status", group: groupAgent, new: newStatusCmd,
		examples: []string{"usbhotplugd status\t# what each device is and why", "usbhotplugd status --json"}})
	register(command{name: "reload", group: groupAgent, new: newReloadCmd,
		examples: []string{"usbhotplugd reload\t# check /etc/usbhotplugd/policy.toml, then have the agent load it"}})
	register(command{name: "watch", group: groupAgent, new: newWatchCmd,
		examples: []string{"usbhotplugd watch\t# the agent's decisions as they are made, one JSON object a line"}})
}

// call asks the running agent one thing over its control socket.
func call(ctx context.Context, stateDir string, req daemon.Request) (*daemon.Response, error) {
	c, err := daemon.Dial(ctx, stateDir)
	if err != nil {
		return nil, err
	}
	defer c.Close()
	return c.Call(req)
}

func newStatusCmd() *cobra.Command {
	c := &cobra.Command{
		Use:   "status [--state-dir DIR] [--json]",
		Short: "what the running agent decided for each device, and why (exit 1 when no agent runs)",
	}
	stateDir := c.Flags().String("state-dir", DefaultStateDir, "the agent's state directory")
	asJSON := c.Flags().Bool("json", false, "print the status as JSON (the control socket's status object)")
	c.RunE = func(c *cobra.Command, args []string) error {
		return runStatus(c.Context(), *stateDir, *asJSON, c.OutOrStdout())
	}
	return c
}

func runStatus(ctx context.Context, stateDir string, asJSON bool, stdout io.Writer) error {
	r, err := call(ctx, stateDir, daemon.Request{Request: daemon.ReqStatus})
	if err != nil {
		return err
	}
	st := r.Status
	if asJSON {
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		return enc.Encode(st)
	}
	fmt.Fprintf(stdout, "usbhotplugd %s, pid %d, running since %s\n", st.Version, st.PID, st.StartedAt.Format(time.DateTime))
	dry := ""
	if st.DryRun {
		dry = ", DRY RUN (changes nothing)"
	}
	s := st.Stats
	fmt.Fprintf(stdout, "%s%s; %s, %s", stateLine(st), dry, plural(int(s.Events), "kernel event"), plural(int(s.Passes), "pass"))
	if s.HooksRun > 0 || s.HooksDropped > 0 {
		fmt.Fprintf(stdout, ", %s run, %d dropped (queue full)", plural(int(s.HooksRun), "rule command"), s.HooksDropped)
	}
	fmt.Fprintln(stdout)
	p := st.Policy
	fmt.Fprintf(stdout, "policy %s: %s, loaded %s\n", p.File, plural(p.Rules, "rule"), p.LoadedAt.Format(time.DateTime))
	printReloadRefused(stdout, p)
	for _, k := range st.SkippedControllers {
		fmt.Fprintf(stdout, "controller %d of domain %d is SKIPPED (the rest of the host works on): %s\n", k.DevID, k.Domid, safetext.Line(k.Reason))
	}
	if len(st.Devices) == 0 {
		fmt.Fprintln(stdout, "\nno devices decided yet")
		return nil
	}
	fmt.Fprintln(stdout)
	return deviceTable(stdout, st)
}

// stateLine says what the agent is doing.
// printReloadRefused says a refused reload's errors, one indented line
// each (the agent joins them with newlines), when the last one was.
func printReloadRefused(w io.Writer, p daemon.PolicyState) {
	if p.ReloadError == "" {
		return
	}
	fmt.Fprintf(w, "last reload REFUSED at %s (the policy above stays in force):\n", p.ReloadRefusedAt.Format(time.DateTime))
	for _, e := range strings.Split(strings.TrimRight(p.ReloadError, "\n"), "\n") {
		fmt.Fprintf(w, "  %s\n", safetext.Line(e))
	}
}

func stateLine(st *daemon.Status) string {
	switch st.State {
	case daemon.StateWaiting:
		return fmt.Sprintf("waiting for xenstored (%s; next try in %s)", st.Xenstore.LastError, time.Duration(st.Xenstore.RetryInMS)*time.Millisecond)
	case daemon.StateReady:
		return "ready, connected to xenstore"
	case daemon.StateSyncing:
		return "not ready yet (first pass running), connected to xenstore"
	}
	return st.State
}

func deviceTable(w io.Writer, st *daemon.Status) error {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "BUSID\tID\tSTATE\tDOMAIN\tPORT\tRULE\tWHY")
	// An action the order does not know (cleared, or one a later agent
	// adds) comes last, never left out: status lists every entry.
	order := slices.Clone(states)
	for _, d := range st.Devices {
		if !slices.Contains(order, string(d.Action)) {
			order = append(order, string(d.Action))
		}
	}
	for _, s := range order {
		for _, d := range st.Devices {
			if string(d.Action) != s {
				continue
			}
			id := d.ID
			if id == "" {
				id = "-" // not read: busy, or gone before it was
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
				switch d.Action {
				case agent.ActHeld, agent.ActDetached, agent.ActCleared, agent.ActReleased:
					port = "(was " + port + ")" // the port it left
				}
			}
			rule := ruleCell(d, st.Policy.File)
			why := d.Reason
			if len(d.Deauthorized) > 0 {
				why += " [inert: " + strings.Join(d.Deauthorized, ", ") + " deauthorized]"
			}
			// A reason may quote a device's own strings: never raw.
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\n", d.BusID, id, d.Action, safetext.Line(dom), port, safetext.Line(rule), safetext.Line(why))
		}
	}
	return tw.Flush()
}

// ruleCell names an entry's rule and where it is written: relative to
// the policy file's directory, which the header names (the main file and
// its rules.d are short), else as the record has it (an include
// elsewhere). A record without its source (cleared) gives the name alone.
func ruleCell(d agent.Audit, policyFile string) string {
	if d.Rule == "" {
		return "-"
	}
	if d.RuleAt == "" {
		return d.Rule
	}
	at := d.RuleAt
	if dir := filepath.Dir(policyFile); policyFile != "" && filepath.IsAbs(at) {
		if rel, ok := strings.CutPrefix(at, dir+string(filepath.Separator)); ok {
			at = rel
		}
	}
	return d.Rule + " (" + at + ")"
}

func newReloadCmd() *cobra.Command {
	c := &cobra.Command{
		Use:   "reload [--policy FILE] [--state-dir DIR]",
		Short: "check the policy, then make the running agent reload it, and report its answer",
	}
	polPath := c.Flags().String("policy", "", "the policy file the agent reads (checked first; by default the one the running agent names)")
	stateDir := c.Flags().String("state-dir", DefaultStateDir, "the agent's state directory")
	c.RunE = func(c *cobra.Command, args []string) error {
		return runReload(c.Context(), *polPath, *stateDir, c.OutOrStdout())
	}
	return c
}

// agentPolicy is the policy file the running agent reads: polPath when
// that is it or is "" (not given), else an error naming both, since the
// agent reloads its own file whatever another names.
func agentPolicy(ctx context.Context, polPath, stateDir string) (string, error) {
	r, err := call(ctx, stateDir, daemon.Request{Request: daemon.ReqStatus})
	if err != nil {
		return "", err
	}
	if r.Status == nil || r.Status.Policy.File == "" {
		return "", errors.New("the agent did not say which policy file it reads")
	}
	theirs := r.Status.Policy.File
	if polPath == "" || samePath(polPath, theirs) {
		return theirs, nil
	}
	return "", fmt.Errorf("the running agent reads %s, not %s, and reloads only its own file: change %s, or start the agent with --policy %s",
		theirs, polPath, theirs, polPath)
}

// samePath says whether a and b name one file: the same file when both
// exist, else the same cleaned absolute path.
func samePath(a, b string) bool {
	sa, errA := os.Stat(a)
	sb, errB := os.Stat(b)
	if errA == nil && errB == nil {
		return os.SameFile(sa, sb)
	}
	absA, errA := filepath.Abs(a)
	absB, errB := filepath.Abs(b)
	return errA == nil && errB == nil && absA == absB
}

func runReload(ctx context.Context, polPath, stateDir string, stdout io.Writer) error {
	polPath, err := agentPolicy(ctx, polPath, stateDir)
	if err != nil {
		return err
	}
	// A policy that does not parse is never sent: the agent would refuse
	// it anyway, and the admin is here to read why.
	p, err := policy.Load(ctx, polPath, policy.Options{})
	if err != nil {
		return err
	}
	r, err := call(ctx, stateDir, daemon.Request{Request: daemon.ReqReload})
	var ae *daemon.APIError
	if errors.As(err, &ae) && ae.Code == daemon.CodePolicyRefused {
		return fmt.Errorf("the agent refused the policy (the old one stays in force): %s", ae.Msg)
	}
	if err != nil {
		return err
	}
	// What check would warn of, as the agent logs it.
	for _, w := range p.Warnings() {
		fmt.Fprintf(stdout, "warning: %s\n", w)
	}
	fmt.Fprintf(stdout, "usbhotplugd reloaded %s: %s\n", r.Reload.File, plural(r.Reload.Rules, "rule"))
	return nil
}

func newWatchCmd() *cobra.Command {
	c := &cobra.Command{
		Use:   "watch [--state-dir DIR]",
		Short: "the running agent's decisions as they are made, one JSON object a line, until interrupted",
	}
	stateDir := c.Flags().String("state-dir", DefaultStateDir, "the agent's state directory")
	c.RunE = func(c *cobra.Command, args []string) error {
		return runWatch(c.Context(), *stateDir, c.OutOrStdout(), c.ErrOrStderr())
	}
	return c
}

func runWatch(ctx context.Context, stateDir string, stdout, stderr io.Writer) error {
	c, err := daemon.Dial(ctx, stateDir)
	if err != nil {
		return err
	}
	defer c.Close()
	if _, err := c.Call(daemon.Request{Request: daemon.ReqWatch}); err != nil {
		return err
	}
	// On stderr, so that stdout is JSON lines alone.
	fmt.Fprintln(stderr, "watching the agent's decisions (interrupt to stop)")
	enc := json.NewEncoder(stdout)
	for {
		r, err := c.Next()
		if ctx.Err() != nil {
			return nil // interrupted: the normal end
		}
		if err != nil {
			return err
		}
		if r.Decision != nil {
			if err := enc.Encode(r.Decision); err != nil {
				return err
			}
		}
	}
}
