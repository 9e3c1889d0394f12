package daemon

import (
	"io"
	"path/filepath"
	"time"

	"github.com/rs/zerolog"

	"github.com/usbhotplugd/usbhotplugd/internal/uevent"
	"github.com/usbhotplugd/usbhotplugd/internal/usbsysfs"
)

// Defaults of the packaged unit.
const (
	DefaultPolicy   = "/etc/usbhotplugd/policy.toml"
	DefaultStateDir = "/run/usbhotplugd"
	// DefaultControlGroup may use the control socket's read-only
	// requests (status, explain, watch): Debian's group for reading
	// system logs.
	DefaultControlGroup = "adm"
)

// Config is what Run needs; the command line fills it.
type Config struct {
	PolicyPath string
	// StateDir holds the lock file, status.json and the control socket.
	StateDir string
	DryRun   bool
	// Sysfs is the sysfs root; SysfsWriter, when set, takes its writes
	// (a fake kernel in tests).
	Sysfs       string
	SysfsWriter usbsysfs.Writer
	// Xenstore is the store's socket or device; empty tries the usual
	// places.
	Xenstore       string
	BackendTimeout time.Duration
	// ControlGroup names the group allowed the read-only requests; empty
	// or unknown leaves the socket to root.
	ControlGroup string
	Log          zerolog.Logger
	// Uevents opens the kernel's uevent socket (uevent.Listen when nil).
	Uevents func() (uevent.Source, io.Closer, error)
	// StoreFailAfter: a store that answers every request with an error
	// for this long ends the process (5 s when zero).
	StoreFailAfter time.Duration
	// StopTimeout bounds the wait for the tasks once one failed or a stop
	// was asked (10 s when zero).
	StopTimeout time.Duration
	// MetricsFile, when set, is where the Prometheus metrics are written
	// for node_exporter's textfile collector.
	MetricsFile string
	// HookTimeout bounds each rule's command (the agent's default when
	// zero).
	HookTimeout time.Duration
}

func (c *Config) setDefaults() {
	if c.PolicyPath == "" {
		c.PolicyPath = DefaultPolicy
	}
	// Absolute, as status tells it: reload and assign, run elsewhere,
	// compare it with theirs.
	if abs, err := filepath.Abs(c.PolicyPath); err == nil {
		c.PolicyPath = abs
	}
	if c.StateDir == "" {
		c.StateDir = DefaultStateDir
	}
	if c.Sysfs == "" {
		c.Sysfs = "/sys"
	}
	if c.StoreFailAfter <= 0 {
		c.StoreFailAfter = 5 * time.Second
	}
	if c.StopTimeout <= 0 {
		c.StopTimeout = 10 * time.Second
	}
	if c.Uevents == nil {
		c.Uevents = func() (uevent.Source, io.Closer, error) {
			l, err := uevent.Listen(0)
			if err != nil {
				return nil, nil, err
			}
			return l, l, nil
		}
	}
}
