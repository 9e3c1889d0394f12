package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"path/filepath"
	"strconv"
	"syscall"
	"time"

	"github.com/coreos/go-systemd/v22/daemon"
	"github.com/mattn/go-isatty"
	"github.com/rs/zerolog"
	"github.com/spf13/cobra"

	"github.com/usbhotplugd/usbhotplugd/internal/agent"
	"github.com/usbhotplugd/usbhotplugd/internal/assign"
	"github.com/usbhotplugd/usbhotplugd/internal/build"
	"github.com/usbhotplugd/usbhotplugd/internal/uevent"
	"github.com/usbhotplugd/usbhotplugd/internal/usbsysfs"
	"github.com/usbhotplugd/usbhotplugd/internal/xenstore"
	"github.com/usbhotplugd/usbhotplugd/policy"
)

// DefaultPolicy is where the packaged unit reads the policy.
const DefaultPolicy = "/etc/usbhotplugd/policy.toml"

// DefaultStateDir holds the pid file and the status file.
const DefaultStateDir = "/run/usbhotplugd"

// ueventSource opens the kernel's uevent socket (tests replace it).
var ueventSource = func() (uevent.Source, io.Closer, error) {
	l, err := uevent.Listen(0)
	if err != nil {
		return nil, nil, err
	}
	return l, l, nil
}

// daemonStatus is the status file: the agent's decisions and its health.
type daemonStatus struct {
	PID         int           `json:"pid"`
	Version     string        `json:"version"`
	Policy      string        `json:"policy"`
	Rules       int           `json:"rules"`
	PolicyAt    time.Time     `json:"policy_loaded"`
	ReloadError string        `json:"reload_error,omitempty"`
	Started     time.Time     `json:"started"`
	Ready       bool          `json:"ready"`
	DryRun      bool          `json:"dry_run,omitempty"`
	Connected   bool          `json:"xenstore_connected"`
	Stats       agent.Stats   `json:"stats"`
	Status      *agent.Status `json:"status,omitempty"`
}

// stateFiles writes the status file atomically, so a reader never sees
// half of it.
type stateFiles struct {
	dir string
	st  daemonStatus
}

func (s *stateFiles) pidPath() string    { return filepath.Join(s.dir, "usbhotplugd.pid") }
func (s *stateFiles) statusPath() string { return filepath.Join(s.dir, "status.json") }

func (s *stateFiles) write() error {
	b, err := json.MarshalIndent(s.st, "", "  ")
	if err != nil {
		return err
	}
	tmp := s.statusPath() + ".tmp"
	if err := os.WriteFile(tmp, append(b, '\n'), 0o644); err != nil {
		return err
	}
	return os.Rename(tmp, s.statusPath())
}

// lockPID takes the pid file: one agent per host, since two would fight
// over every device.
func lockPID(path string) (*os.File, error) {
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o644)
	if err != nil {
		return nil, err
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		b, _ := os.ReadFile(path)
		f.Close()
		return nil, fmt.Errorf("another usbhotplugd (pid %s) holds %s: %w", string(trimNL(b)), path, err)
	}
	if err := f.Truncate(0); err != nil {
		f.Close()
		return nil, err
	}
	if _, err := f.WriteAt([]byte(strconv.Itoa(os.Getpid())+"\n"), 0); err != nil {
		f.Close()
		return nil, err
	}
	return f, nil
}

func trimNL(b []byte) []byte {
	for len(b) > 0 && (b[len(b)-1] == '\n' || b[len(b)-1] == ' ') {
		b = b[:len(b)-1]
	}
	return b
}

// newLogger logs JSON under systemd or to a file, and for people on a
// terminal.
func newLogger(w io.Writer, format, level string) (zerolog.Logger, error) {
	lvl, err := zerolog.ParseLevel(level)
	if err != nil || level == "" {
		return zerolog.Logger{}, &usageError{fmt.Sprintf("--log-level %q: one of debug, info, warn, error", level)}
	}
	switch format {
	case "auto":
		format = "json"
		if f, ok := w.(*os.File); ok && os.Getenv("JOURNAL_STREAM") == "" && isatty.IsTerminal(f.Fd()) {
			format = "console"
		}
	case "json", "console":
	default:
		return zerolog.Logger{}, &usageError{fmt.Sprintf("--log-format %q: one of auto, json, console", format)}
	}
	out := w
	if format == "console" {
		out = zerolog.ConsoleWriter{Out: w, TimeFormat: time.DateTime}
	}
	return zerolog.New(out).Level(lvl).With().Timestamp().Logger(), nil
}

func init() {
	register(command{name: "run", group: groupAgent, new: newRunCmd, examples: []string{
		"usbhotplugd run --policy /etc/usbhotplugd/policy.toml\t# as systemd runs it",
		"usbhotplugd run --dry-run --log-format console\t# see what it would do, change nothing",
	}})
}

type runOpts struct {
	polPath, stateDir, logFormat, logLevel string
	dryRun                                 bool
	host                                   *hostFlags
}

func newRunCmd() *cobra.Command {
	c := &cobra.Command{
		Use:   "run [--policy FILE] [--dry-run] [--state-dir DIR] [--log-format auto|json|console]",
		Short: "the agent: attach devices to guests as the policy says, until stopped",
	}
	var o runOpts
	c.Flags().StringVar(&o.polPath, "policy", DefaultPolicy, "policy file")
	c.Flags().BoolVar(&o.dryRun, "dry-run", false, "decide and log, change nothing")
	c.Flags().StringVar(&o.stateDir, "state-dir", DefaultStateDir, "directory for the pid file and status.json")
	c.Flags().StringVar(&o.logFormat, "log-format", "auto", "auto (JSON under systemd, console on a terminal), json or console")
	c.Flags().StringVar(&o.logLevel, "log-level", "info", "debug, info, warn or error")
	o.host = addHostFlags(c.Flags())
	c.RunE = func(c *cobra.Command, args []string) error { return runRun(c.Context(), o, c.OutOrStdout()) }
	return c
}

func runRun(ctx context.Context, o runOpts, stdout io.Writer) error {
	hf := o.host
	// journald takes stdout; so does a console.
	log, err := newLogger(stdout, o.logFormat, o.logLevel)
	if err != nil {
		return err
	}
	pol, err := policy.ParseFile(o.polPath)
	if err != nil {
		return err
	}
	if err := os.MkdirAll(o.stateDir, 0o755); err != nil {
		return err
	}
	state := &stateFiles{dir: o.stateDir, st: daemonStatus{PID: os.Getpid(), Version: build.Version, Policy: pol.File, Rules: len(pol.Rules),
		PolicyAt: time.Now(), Started: time.Now(), DryRun: o.dryRun}}
	pidf, err := lockPID(state.pidPath())
	if err != nil {
		return err
	}
	defer func() {
		os.Remove(state.pidPath())
		pidf.Close()
	}()

	ctx, stop := signal.NotifyContext(ctx, syscall.SIGTERM, syscall.SIGINT)
	defer stop()

	src, closer, err := ueventSource()
	if err != nil {
		return fmt.Errorf("kernel uevents: %w (this needs root in dom0)", err)
	}
	defer closer.Close()
	sys := usbsysfs.NewFS(hf.sysfs)
	if sysfsWriter != nil {
		sys = sys.WithWriter(sysfsWriter)
	}
	// The socket is open before the scan, so nothing is missed between.
	stream, err := uevent.Coldplug(ctx, src, func() ([]uevent.Event, error) { return uevent.Scan(sys) })
	if err != nil {
		return err
	}
	defer stream.Close()

	h := &assign.Host{Sys: sys, InitTimeout: hf.timeout, DestroyTimeout: hf.timeout}
	var statusMu = make(chan struct{}, 1) // a one-slot lock: writers are the agent and the signal loop
	writeState := func(f func(*daemonStatus)) {
		statusMu <- struct{}{}
		defer func() { <-statusMu }()
		f(&state.st)
		if err := state.write(); err != nil {
			log.Warn().Err(err).Str("path", state.statusPath()).Msg("cannot write the status file")
		}
	}
	var a *agent.Agent
	a = agent.New(agent.Config{Host: h, Policy: pol, Log: log, DryRun: o.dryRun, Hooks: true,
		OnStatus: func(s agent.Status) { writeState(func(d *daemonStatus) { d.Status = &s; d.Stats = a.Stats() }) }})
	log.Info().Str("version", build.Version).Str("policy", pol.File).Int("rules", len(pol.Rules)).Bool("dry_run", o.dryRun).Msg("usbhotplugd starting")

	// SIGHUP: a new policy, or the old one kept with the reason logged.
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(hup)
	hupDone := make(chan struct{})
	defer func() { <-hupDone }()
	go func() {
		defer close(hupDone)
		for {
			select {
			case <-ctx.Done():
				return
			case <-hup:
				p, err := policy.ParseFile(o.polPath)
				if err != nil {
					log.Error().Err(err).Str("policy", o.polPath).Msg("policy reload refused: the old policy stays in force")
					writeState(func(d *daemonStatus) { d.ReloadError = err.Error(); d.PolicyAt = time.Now() })
					continue
				}
				a.Reload(p)
				writeState(func(d *daemonStatus) {
					d.ReloadError = ""
					d.Rules = len(p.Rules)
					d.Policy = p.File
					d.PolicyAt = time.Now()
				})
			}
		}
	}()

	// The watchdog is fed only while the agent makes progress.
	if iv, err := daemon.SdWatchdogEnabled(false); err == nil && iv > 0 {
		wdDone := make(chan struct{})
		defer func() { <-wdDone }()
		go func() {
			defer close(wdDone)
			t := time.NewTicker(iv / 3)
			defer t.Stop()
			for {
				select {
				case <-ctx.Done():
					return
				case <-t.C:
					if !a.Stuck(iv) {
						daemon.SdNotify(false, daemon.SdNotifyWatchdog)
					}
				}
			}
		}()
	}

	ready := false
	backoff := 50 * time.Millisecond
	for ctx.Err() == nil {
		var xs *xenstore.Conn
		if hf.xenstore != "" {
			xs, err = xenstore.DialPath(ctx, hf.xenstore)
		} else {
			xs, err = xenstore.Dial(ctx)
		}
		if err != nil {
			log.Warn().Err(err).Dur("retry_in_ms", backoff).Msg("xenstore is not reachable")
			select {
			case <-ctx.Done():
			case <-time.After(backoff):
			}
			backoff = min(backoff*2, 5*time.Second)
			continue
		}
		backoff = 50 * time.Millisecond
		h.XS = xs
		writeState(func(d *daemonStatus) { d.Connected = true })
		err = a.Run(ctx, stream, func() {
			writeState(func(d *daemonStatus) { d.Ready = true; d.Stats = a.Stats() })
			if !ready {
				ready = true
				daemon.SdNotify(false, daemon.SdNotifyReady+"\nSTATUS=reconciled; watching USB devices and domains")
				log.Info().Msg("ready: every present device reconciled")
			} else {
				log.Info().Msg("reconnected to xenstore: every device reconciled again")
			}
		})
		xs.Close()
		writeState(func(d *daemonStatus) { d.Connected = false })
		if ctx.Err() != nil {
			break
		}
		if err != nil && !errors.Is(err, xenstore.ErrDisconnected) {
			return err
		}
		log.Warn().Err(err).Msg("xenstore connection lost: reconnecting, then everything is looked at again")
	}
	daemon.SdNotify(false, daemon.SdNotifyStopping)
	log.Info().Msg("usbhotplugd stopped")
	return nil
}
