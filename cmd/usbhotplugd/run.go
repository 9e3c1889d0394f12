package main

import (
	"context"
	"errors"
	"io"
	"os/signal"
	"syscall"

	"github.com/spf13/cobra"

	"github.com/usbhotplugd/usbhotplugd/internal/daemon"
	"github.com/usbhotplugd/usbhotplugd/internal/metrics"
	"github.com/usbhotplugd/usbhotplugd/internal/uevent"
)

// DefaultPolicy is where the packaged unit reads the policy.
const DefaultPolicy = daemon.DefaultPolicy

// DefaultStateDir holds the lock file, status.json and the control socket.
const DefaultStateDir = daemon.DefaultStateDir

// ueventSource opens the kernel's uevent socket (tests replace it; nil is
// the kernel's).
var ueventSource func() (uevent.Source, io.Closer, error)

func init() {
	register(command{name: "run", group: groupAgent, new: newRunCmd, examples: []string{
		"usbhotplugd run --policy /etc/usbhotplugd/policy.toml\t# as systemd runs it",
		"usbhotplugd run --dry-run --log-format console\t# see what it would do, change nothing",
	}})
}

type runOpts struct {
	polPath, stateDir, logFormat, logLevel, group string
	metricsFile                                   string
	dryRun                                        bool
	host                                          *hostFlags
}

func newRunCmd() *cobra.Command {
	c := &cobra.Command{
		Use:   "run [--policy FILE] [--dry-run] [--state-dir DIR] [--log-format auto|json|console]",
		Short: "the agent: attach devices to guests as the policy says, until stopped",
	}
	var o runOpts
	c.Flags().StringVar(&o.polPath, "policy", DefaultPolicy, "policy file")
	c.Flags().BoolVar(&o.dryRun, "dry-run", false, "decide and log, change nothing")
	c.Flags().StringVar(&o.stateDir, "state-dir", DefaultStateDir, "directory for the lock file, status.json and the control socket")
	c.Flags().StringVar(&o.group, "control-group", daemon.DefaultControlGroup, "group whose members may use the control socket's read-only requests (status, explain, watch)")
	c.Flags().StringVar(&o.metricsFile, "metrics-textfile", "", "write Prometheus metrics to this file for node_exporter's textfile collector (e.g. "+metrics.DefaultTextfile+"); empty: none")
	c.Flags().StringVar(&o.logFormat, "log-format", "auto", "auto (JSON under systemd, console on a terminal), json or console")
	c.Flags().StringVar(&o.logLevel, "log-level", "info", "debug, info, warn or error")
	o.host = addHostFlags(c.Flags(), true)
	c.RunE = func(c *cobra.Command, args []string) error { return runRun(c.Context(), o, c.OutOrStdout()) }
	return c
}

func runRun(ctx context.Context, o runOpts, stdout io.Writer) error {
	// journald takes stdout; so does a console.
	log, err := daemon.NewLogger(stdout, o.logFormat, o.logLevel)
	if errors.Is(err, daemon.ErrUsage) {
		return &usageError{err.Error()}
	}
	if err != nil {
		return err
	}
	ctx, stop := signal.NotifyContext(ctx, syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	return daemon.Run(ctx, daemon.Config{PolicyPath: o.polPath, StateDir: o.stateDir, DryRun: o.dryRun, ControlGroup: o.group,
		Sysfs: o.host.sysfs, SysfsWriter: sysfsWriter, Xenstore: o.host.xenstore, BackendTimeout: o.host.timeout,
		Log: log, Uevents: ueventSource, MetricsFile: o.metricsFile})
}
