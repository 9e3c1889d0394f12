package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"os"
	"strconv"
	"time"

	"github.com/usbhotplugd/usbhotplugd/internal/assign"
	"github.com/usbhotplugd/usbhotplugd/internal/inventory"
	"github.com/usbhotplugd/usbhotplugd/internal/mounts"
	"github.com/usbhotplugd/usbhotplugd/internal/usbsysfs"
	"github.com/usbhotplugd/usbhotplugd/internal/xenstore"
	"github.com/usbhotplugd/usbhotplugd/policy"
)

// sysfsWriter, when set (by tests), receives sysfs writes instead of the
// files: the fake kernel.
var sysfsWriter usbsysfs.Writer

// hostFlags are the options every PVUSB command takes.
type hostFlags struct {
	xenstore string
	sysfs    string
	timeout  time.Duration
}

func addHostFlags(fs *flag.FlagSet) *hostFlags {
	h := &hostFlags{}
	fs.StringVar(&h.xenstore, "xenstore", "", "xenstored socket (default: $XENSTORED_PATH, /var/run/xenstored/socket, /dev/xen/xenbus)")
	fs.StringVar(&h.sysfs, "sysfs", sysfsDefault(), "sysfs root")
	fs.DurationVar(&h.timeout, "backend-timeout", assign.InitTimeout, "how long to wait for a backend to initialise or close, as libxl's 10 s")
	return h
}

func (hf *hostFlags) open(ctx context.Context) (*assign.Host, func(), error) {
	var xs *xenstore.Conn
	var err error
	if hf.xenstore != "" {
		xs, err = xenstore.DialPath(ctx, hf.xenstore)
	} else {
		xs, err = xenstore.Dial(ctx)
	}
	if err != nil {
		return nil, nil, fmt.Errorf("%w (is xenstored running? this needs dom0 and root)", err)
	}
	sys := usbsysfs.NewFS(hf.sysfs)
	if sysfsWriter != nil {
		sys = sys.WithWriter(sysfsWriter)
	}
	h := &assign.Host{XS: xs, Sys: sys, InitTimeout: hf.timeout, DestroyTimeout: hf.timeout}
	return h, func() { xs.Close() }, nil
}

// hostCommand parses flags, opens the host and resolves the DOMAIN
// argument, then runs fn with the remaining arguments.
func hostCommand(ctx context.Context, name, synopsis string, args []string, stderr io.Writer, minArgs, maxArgs int,
	extra func(fs *flag.FlagSet), fn func(h *assign.Host, d assign.Domain, rest []string) error) error {
	fs := newFlags(name, synopsis, stderr)
	hf := addHostFlags(fs)
	if extra != nil {
		extra(fs)
	}
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if fs.NArg() < minArgs || (maxArgs >= 0 && fs.NArg() > maxArgs) {
		return &usageError{"usage: usbhotplugd " + name + " " + synopsis}
	}
	h, closeFn, err := hf.open(ctx)
	if err != nil {
		return err
	}
	defer closeFn()
	h.Warn = func(msg string) { fmt.Fprintf(stderr, "usbhotplugd %s: warning: %s\n", name, msg) }
	d, err := h.Domain(ctx, fs.Arg(0))
	if err != nil {
		return err
	}
	return fn(h, d, fs.Args()[1:])
}

func runUsbctrlAttach(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	return hostCommand(ctx, "usbctrl-attach", "DOMAIN [type=auto|pv|qusb] [version=1|2] [ports=N]", args, stderr, 1, -1, nil,
		func(h *assign.Host, d assign.Domain, rest []string) error {
			spec, err := policy.ParseCtrlArgs(rest)
			if err != nil {
				return &usageError{err.Error()}
			}
			_, err = h.AddController(ctx, d.ID, spec, true)
			return err
		})
}

func runUsbctrlDetach(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	return hostCommand(ctx, "usbctrl-detach", "DOMAIN DEVID", args, stderr, 2, 2, nil,
		func(h *assign.Host, d assign.Domain, rest []string) error {
			devid, err := strconv.Atoi(rest[0])
			if err != nil || devid < 0 {
				return &usageError{fmt.Sprintf("%q is not a controller devid (usb-list shows them)", rest[0])}
			}
			return h.RemoveController(ctx, d.ID, devid)
		})
}

func runUsbdevAttach(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	var force *bool
	return hostCommand(ctx, "usbdev-attach", "[--force] DOMAIN hostbus=B hostaddr=A | busid=B-P.P [controller=C [port=P]]", args, stderr, 2, -1,
		func(fs *flag.FlagSet) {
			force = fs.Bool("force", false, "attach even a disk dom0 uses (mounted, or under device-mapper or md)")
		},
		func(h *assign.Host, d assign.Domain, rest []string) error {
			spec, err := policy.ParseDevArgs(rest)
			if err != nil {
				return &usageError{err.Error()}
			}
			if !*force {
				if err := checkNotInUse(h, spec); err != nil {
					return err
				}
			}
			_, err = h.Attach(ctx, d.ID, spec)
			return err
		})
}

func runUsbdevDetach(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	return hostCommand(ctx, "usbdev-detach", "DOMAIN CONTROLLER PORT", args, stderr, 3, 3, nil,
		func(h *assign.Host, d assign.Domain, rest []string) error {
			ctrl, err1 := strconv.Atoi(rest[0])
			port, err2 := strconv.Atoi(rest[1])
			if err1 != nil || err2 != nil || ctrl < 0 || port < 1 {
				return &usageError{fmt.Sprintf("%s %s: CONTROLLER and PORT are numbers, as usb-list shows them (ports count from 1)", rest[0], rest[1])}
			}
			return h.Detach(ctx, d.ID, ctrl, port)
		})
}

func runUsbList(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	var asJSON *bool
	return hostCommand(ctx, "usb-list", "[--json] DOMAIN", args, stderr, 1, 1,
		func(fs *flag.FlagSet) { asJSON = fs.Bool("json", false, "print JSON") },
		func(h *assign.Host, d assign.Domain, rest []string) error {
			l, err := h.List(ctx, d.ID)
			if err != nil {
				return err
			}
			if *asJSON {
				enc := json.NewEncoder(stdout)
				enc.SetIndent("", "  ")
				return enc.Encode(struct {
					Domid       uint32                    `json:"domid"`
					Name        string                    `json:"name"`
					Controllers []assign.ListedController `json:"controllers"`
				}{d.ID, d.Name, l})
			}
			return assign.WriteList(stdout, l)
		})
}

func runRepair(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlags("repair", "", stderr)
	hf := addHostFlags(fs)
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if fs.NArg() != 0 {
		return &usageError{fmt.Sprintf("unexpected argument %q", fs.Arg(0))}
	}
	h, closeFn, err := hf.open(ctx)
	if err != nil {
		return err
	}
	defer closeFn()
	fixed, err := h.Repair(ctx)
	for _, a := range fixed {
		fmt.Fprintf(stdout, "cleared domain %d controller %d port %d: %s is no longer on the host\n", a.Domid, a.Controller, a.Port, a.BusID)
	}
	if err == nil && len(fixed) == 0 {
		fmt.Fprintln(stdout, "nothing to repair: every port names a device that is present")
	}
	return err
}

// sysfsDefault is /sys, or $USBHOTPLUGD_SYSFS (a fixture tree, a
// container's bind mount).
func sysfsDefault() string {
	if p := os.Getenv("USBHOTPLUGD_SYSFS"); p != "" {
		return p
	}
	return "/sys"
}

// checkNotInUse refuses a device dom0 uses, as the agent's guard does: xl
// would pass dom0's own disk away, and dom0 with it.
func checkNotInUse(h *assign.Host, spec policy.DevSpec) error {
	busid := spec.BusID
	if busid == "" {
		b, err := h.Sys.BusIDByAddr(spec.HostBus, spec.HostAddr)
		if err != nil {
			return nil // the attach says why it cannot find it
		}
		busid = b
	}
	dev, err := h.Sys.Device(busid)
	if err != nil {
		return nil
	}
	if why := inventory.InUse(h.Sys, dev, mounts.Default); why != "" {
		return fmt.Errorf("%s is in use by dom0: %s; unmount it first, or pass --force to attach it anyway", busid, why)
	}
	return nil
}
