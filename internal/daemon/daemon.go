package daemon

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"sync"
	"syscall"
	"time"

	sd "github.com/coreos/go-systemd/v22/daemon"
	"github.com/rs/zerolog"

	"github.com/usbhotplugd/usbhotplugd/internal/agent"
	"github.com/usbhotplugd/usbhotplugd/internal/assign"
	"github.com/usbhotplugd/usbhotplugd/internal/build"
	"github.com/usbhotplugd/usbhotplugd/internal/metrics"
	"github.com/usbhotplugd/usbhotplugd/internal/uevent"
	"github.com/usbhotplugd/usbhotplugd/internal/usbsysfs"
	"github.com/usbhotplugd/usbhotplugd/policy"
)

// ErrNotRoot: the agent binds and unbinds USB interfaces in sysfs, reads
// the kernel's uevent socket and writes dom0's part of xenstore, which
// only root may do.
var ErrNotRoot = errors.New("needs root: it binds USB interfaces in sysfs, reads kernel uevents and writes dom0's xenstore entries")

// euid is the effective user (tests pretend another).
var euid = os.Geteuid

// LockFile, under the state directory, is held (flock) by the running
// agent: one agent per host, since two would fight over every device. It
// holds the agent's pid for people to read; nothing signals that pid.
const LockFile = "usbhotplugd.pid"

// daemon is one run: the agent and what its tasks share.
type daemon struct {
	cfg   Config
	log   zerolog.Logger
	h     *assign.Host
	a     *agent.Agent
	st    *state
	audit *hub
	// m is kept whether or not a textfile is written: the control
	// socket's metrics request reads it.
	m *metrics.Metrics
	// suspect is told of each failed pass: the store probe looks then.
	suspect chan struct{}
	ready   bool // told systemd; the store task's only

	reloading sync.Mutex
}

// Run runs the agent until ctx ends (nil) or a task fails (its error,
// logged once). cfg.Log is where everything is said.
func Run(ctx context.Context, cfg Config) error {
	cfg.setDefaults()
	if euid() != 0 {
		return ErrNotRoot
	}
	d, closeAll, err := start(cfg)
	if err != nil {
		return err
	}
	defer closeAll()
	err = d.serve(ctx)
	sd.SdNotify(false, sd.SdNotifyStopping)
	if err == nil {
		// A clean stop gives back what authorization before probe
		// changed; a failure keeps the host safe until the restart.
		if rerr := d.a.RestoreAuthorization(); rerr != nil {
			d.log.Warn().Err(rerr).Msg("authorization before probe: cannot give the root hubs their defaults back")
		}
	}
	if err != nil {
		d.log.Error().Err(err).Msg("usbhotplugd stops: " + err.Error())
		return &loggedError{err}
	}
	d.log.Info().Msg("usbhotplugd stopped")
	return nil
}

// loggedError is an error Run has logged already.
type loggedError struct{ err error }

func (e *loggedError) Error() string { return e.err.Error() }
func (e *loggedError) Unwrap() error { return e.err }

// Logged says err was logged by Run already: the command line need not
// print it again.
func Logged(err error) bool {
	var le *loggedError
	return errors.As(err, &le)
}

// start reads the policy and takes the lock: what must hold before any
// task starts.
func start(cfg Config) (*daemon, func(), error) {
	pol, err := policy.ParseFile(cfg.PolicyPath)
	if err != nil {
		return nil, nil, err
	}
	if err := os.MkdirAll(cfg.StateDir, 0o755); err != nil {
		return nil, nil, fmt.Errorf("state directory: %w", err)
	}
	lock, err := lockPID(filepath.Join(cfg.StateDir, LockFile))
	if err != nil {
		return nil, nil, err
	}
	sys := usbsysfs.NewFS(cfg.Sysfs)
	if cfg.SysfsWriter != nil {
		sys = sys.WithWriter(cfg.SysfsWriter)
	}
	sys = sys.WithLockWait(usbsysfs.DefaultLockWait)
	d := &daemon{cfg: cfg, log: cfg.Log, audit: newHub(), suspect: make(chan struct{}, 1)}
	d.h = &assign.Host{Sys: sys, InitTimeout: cfg.BackendTimeout, DestroyTimeout: cfg.BackendTimeout}
	now := time.Now()
	d.a = agent.New(agent.Config{Host: d.h, Policy: pol, Log: cfg.Log, DryRun: cfg.DryRun, Hooks: true, HookTimeout: cfg.HookTimeout,
		OnStatus: d.onStatus, OnAudit: d.onAudit})
	d.m = metrics.New(build.Version, runtime.Version())
	d.st = newState(Status{PID: os.Getpid(), Version: build.Version, StartedAt: now, State: StateStarting, DryRun: cfg.DryRun,
		Policy: PolicyState{File: pol.File, Rules: len(pol.Rules), LoadedAt: now}}, d.a.Stats)
	// Said at once, with the lock held: a killed agent's file says
	// "ready", and must not be read as this one's while it starts. A
	// failure is the status writer's to report.
	_ = saveJSON(filepath.Join(cfg.StateDir, StatusFile), d.st.get())
	return d, func() {
		os.Remove(lock.Name())
		lock.Close()
	}, nil
}

// logWarnings logs what `usbhotplugd check` warns of in a policy put in
// force: rules that match almost nothing or never decide, a keyboard
// lockout.
func (d *daemon) logWarnings(p *policy.Policy) {
	for _, w := range p.Warnings() {
		d.log.Warn().Str("policy", p.File).Msg("policy: " + w)
	}
}

func (d *daemon) onAudit(r agent.Audit) {
	d.audit.publish(r)
	countMetric(d.m, r)
	if r.Action == agent.ActFailed {
		select {
		case d.suspect <- struct{}{}:
		default:
		}
	}
}

func (d *daemon) onStatus(s agent.Status) {
	d.st.update(func(st *Status) {
		st.Devices, st.DevicesUpdatedAt, st.SkippedControllers = s.Devices, s.Updated, s.Skipped
	})
}

// serve opens the sources and runs the tasks.
func (d *daemon) serve(ctx context.Context) error {
	ctl, err := listenControl(d.cfg.StateDir, d.cfg.ControlGroup, d.log)
	if err != nil {
		return err
	}
	defer ctl.Close()
	src, closer, err := d.cfg.Uevents()
	if err != nil {
		return fmt.Errorf("kernel uevents: %w (this needs root in dom0)", err)
	}
	defer closer.Close()
	o := newOwner(ctx)
	// The socket is open before the scan, so nothing is missed between.
	// The stream lives on the owner's context, as the tasks do: it ends
	// with them, never before the owner sees the stop.
	stream, err := uevent.Coldplug(o.ctx, src, func() ([]uevent.Event, error) {
		evs, err := uevent.Scan(d.h.Sys)
		// A device that could not be read is the agent's first pass's
		// to report and retry; the rest are not held back for it.
		_, err = usbsysfs.Partial(err)
		return evs, err
	})
	if err != nil {
		return fmt.Errorf("kernel uevents: %w", err)
	}
	defer stream.Close()
	pol := d.a.Policy()
	d.log.Info().Str("version", build.Version).Str("policy", pol.File).Int("rules", len(pol.Rules)).Bool("dry_run", d.cfg.DryRun).Msg("usbhotplugd starting")
	d.logWarnings(pol)

	o.Go("uevent reader", func(ctx context.Context) error { return d.a.PumpEvents(ctx, stream) })
	o.Go("hook runner", d.a.RunHooks)
	o.Go("store", d.store)
	o.Go("signals", d.signals)
	o.Go("status writer", func(ctx context.Context) error { return writeStatus(ctx, d.st, d.cfg.StateDir, d.log) })
	o.Go("control socket", func(ctx context.Context) error { return ctl.serve(ctx, d) })
	if d.cfg.MetricsFile != "" {
		tf := &metrics.Textfile{Path: d.cfg.MetricsFile, Heartbeat: metricsHeartbeat}
		o.Go("metrics writer", func(ctx context.Context) error { return writeMetrics(ctx, d.st, d.m, tf, d) })
	}
	if iv, err := sd.SdWatchdogEnabled(false); err == nil && iv > 0 {
		o.Go("watchdog", func(ctx context.Context) error { return watchdog(ctx, iv, o, d.a) })
	}
	return o.Wait(d.cfg.StopTimeout)
}

// watchdog feeds systemd's watchdog while every task runs and the worker
// is not stuck in one pass.
func watchdog(ctx context.Context, iv time.Duration, o *owner, a *agent.Agent) error {
	t := time.NewTicker(iv / 3)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-t.C:
			if o.Alive() && !a.Stuck(iv) {
				sd.SdNotify(false, sd.SdNotifyWatchdog)
			}
		}
	}
}

// lockPID takes the lock file. The holder removes it on exit while still
// holding the lock, so a lock taken on a file that the path no longer names
// is the old holder's: open the new one and lock again.
func lockPID(path string) (*os.File, error) {
	for {
		f, err := lockOnce(path)
		if err != nil || f != nil {
			return f, err
		}
	}
}

// lockOnce locks the file path names; nil, nil when the file was removed
// or replaced meanwhile.
func lockOnce(path string) (*os.File, error) {
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o644)
	if err != nil {
		return nil, err
	}
	return lockOpened(f, path)
}

// lockOpened locks f, opened at path, and writes the pid into it.
func lockOpened(f *os.File, path string) (*os.File, error) {
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		// The pid's line only: whatever else the file holds is not
		// the holder's to say, and may be huge.
		b := make([]byte, 32)
		n, _ := f.ReadAt(b, 0)
		b, _, _ = bytes.Cut(b[:n], []byte("\n"))
		f.Close()
		return nil, fmt.Errorf("another usbhotplugd (pid %s) holds %s: %w", trimNL(b), path, err)
	}
	held, err := f.Stat()
	if err != nil {
		f.Close()
		return nil, err
	}
	if now, err := os.Stat(path); err != nil || !os.SameFile(held, now) {
		f.Close()
		if err != nil && !errors.Is(err, fs.ErrNotExist) {
			return nil, err
		}
		return nil, nil
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

func trimNL(b []byte) string {
	for len(b) > 0 && (b[len(b)-1] == '\n' || b[len(b)-1] == ' ') {
		b = b[:len(b)-1]
	}
	return string(b)
}
