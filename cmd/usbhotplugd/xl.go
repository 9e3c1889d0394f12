package main

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"github.com/usbhotplugd/usbhotplugd/internal/assign"
	"github.com/usbhotplugd/usbhotplugd/internal/inventory"
	"github.com/usbhotplugd/usbhotplugd/internal/mounts"
	"github.com/usbhotplugd/usbhotplugd/internal/safetext"
	"github.com/usbhotplugd/usbhotplugd/internal/usbsysfs"
	"github.com/usbhotplugd/usbhotplugd/internal/xenstore"
	"github.com/usbhotplugd/usbhotplugd/policy"
)

// sysfsWriter, when set (by tests), receives sysfs writes instead of the
// files: the fake kernel.
var sysfsWriter usbsysfs.Writer

// hostFlags are the options every PVUSB command takes, and the backend
// timeout of those that wait for a backend.
type hostFlags struct {
	xenstore string
	sysfs    string
	timeout  time.Duration
}

// addHostFlags adds --xenstore and --sysfs, and with waits (the command
// waits for a backend to initialise or close: a controller's add or
// removal, the agent) --backend-timeout.
func addHostFlags(fs *pflag.FlagSet, waits bool) *hostFlags {
	h := &hostFlags{timeout: assign.InitTimeout}
	fs.StringVar(&h.xenstore, "xenstore", "", "xenstored socket (default: $XENSTORED_PATH, /var/run/xenstored/socket, /dev/xen/xenbus)")
	fs.StringVar(&h.sysfs, "sysfs", sysfsDefault(), "sysfs root")
	if waits {
		fs.Var((*positiveDuration)(&h.timeout), "backend-timeout", "how long to wait for a backend to initialise or close, as libxl's 10 s")
	}
	return h
}

// positiveDuration is a duration flag that refuses zero and less: a wait
// of none would fail every command that waits.
type positiveDuration time.Duration

func (d *positiveDuration) String() string { return time.Duration(*d).String() }
func (d *positiveDuration) Type() string   { return "duration" }
func (d *positiveDuration) Set(s string) error {
	v, err := time.ParseDuration(s)
	if err != nil {
		return err
	}
	if v <= 0 {
		return fmt.Errorf("%s: a wait longer than none (10s is libxl's)", s)
	}
	*d = positiveDuration(v)
	return nil
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
	if exiting {
		return h, func() {}, nil // closed by the exit, with no wake-up of its reader first
	}
	return h, func() { xs.Close() }, nil
}

func init() {
	for _, c := range []command{
		{name: "usbctrl-attach", new: newUsbctrlAttachCmd, examples: []string{"usbhotplugd usbctrl-attach kiosk version=2 ports=8"}},
		{name: "usbctrl-detach", new: newUsbctrlDetachCmd, examples: []string{"usbhotplugd usbctrl-detach kiosk 0"}},
		{name: "usbdev-attach", new: newUsbdevAttachCmd, examples: []string{"usbhotplugd usbdev-attach kiosk hostbus=1 hostaddr=6", "usbhotplugd usbdev-attach kiosk busid=1-2 controller=0 port=2"}},
		{name: "usbdev-detach", new: newUsbdevDetachCmd, examples: []string{"usbhotplugd usbdev-detach kiosk 0 1"}},
		{name: "usb-list", quick: true, new: newUsbListCmd, examples: []string{"usbhotplugd usb-list kiosk"}},
		{name: "repair", new: newRepairCmd, examples: []string{"usbhotplugd repair"}},
	} {
		c.group = groupXL
		register(c)
	}
}

// hostCommand is a PVUSB command: the host flags (--backend-timeout too
// when it waits for a backend), minArgs to maxArgs
// arguments (maxArgs < 0: no limit), checked by parse (given the arguments
// after DOMAIN; nil: none to check) before anything is dialled; then the
// host opened and DOMAIN resolved before fn runs.
func hostCommand(use, short string, waits bool, minArgs, maxArgs int, parse func(rest []string) error,
	fn func(ctx context.Context, c *cobra.Command, h *assign.Host, d assign.Domain) error) *cobra.Command {
	return domainCommand((*assign.Host).Domain, use, short, waits, minArgs, maxArgs, parse, fn)
}

// hostAheadCommand is hostCommand for a command that attaches: DOMAIN is
// resolved with Host.DomainAhead.
func hostAheadCommand(use, short string, waits bool, minArgs, maxArgs int, parse func(rest []string) error,
	fn func(ctx context.Context, c *cobra.Command, h *assign.Host, d assign.Domain) error) *cobra.Command {
	return domainCommand((*assign.Host).DomainAhead, use, short, waits, minArgs, maxArgs, parse, fn)
}

func domainCommand(resolve func(h *assign.Host, ctx context.Context, nameOrID string) (assign.Domain, error),
	use, short string, waits bool, minArgs, maxArgs int, parse func(rest []string) error,
	fn func(ctx context.Context, c *cobra.Command, h *assign.Host, d assign.Domain) error) *cobra.Command {
	return hostArgsCommand(use, short, waits, minArgs, maxArgs, parse, func(ctx context.Context, c *cobra.Command, h *assign.Host, args []string) error {
		d, err := resolve(h, ctx, args[0])
		if err != nil {
			return err
		}
		return fn(ctx, c, h, d)
	})
}

// hostArgsCommand is hostCommand with DOMAIN left to fn to resolve.
func hostArgsCommand(use, short string, waits bool, minArgs, maxArgs int, parse func(rest []string) error,
	fn func(ctx context.Context, c *cobra.Command, h *assign.Host, args []string) error) *cobra.Command {
	count := rangeArgs(minArgs, maxArgs)
	c := &cobra.Command{Use: use, Short: short, Args: func(c *cobra.Command, args []string) error {
		if err := count(c, args); err != nil {
			return err
		}
		if parse == nil {
			return nil
		}
		if err := parse(args[1:]); err != nil {
			return &usageError{err.Error()}
		}
		return nil
	}}
	c.ValidArgsFunction = completeHost()
	hf := addHostFlags(c.Flags(), waits)
	c.RunE = func(c *cobra.Command, args []string) error {
		ctx := c.Context()
		h, closeFn, err := hf.open(ctx)
		if err != nil {
			return err
		}
		defer closeFn()
		h.Warn = func(msg string) {
			fmt.Fprintf(c.ErrOrStderr(), "%s: warning: %s\n", c.CommandPath(), safetext.Line(msg))
		}
		return fn(ctx, c, h, args)
	}
	return c
}

// dom0Refusal is the error for dom0 named as the guest of an attach:
// libxl would write a controller for dom0, which no frontend reads.
func dom0Refusal(name string) error {
	return &usageError{fmt.Sprintf("%s is dom0 itself, which has the host's devices already: give a guest's name or domid (xl list shows them)", name)}
}

// notDom0 makes an attach command refuse dom0 as DOMAIN, by its name or
// its domid, before anything is dialled; and dom0 found by another name.
func notDom0(c *cobra.Command) *cobra.Command {
	check := c.Args
	c.Args = func(c *cobra.Command, args []string) error {
		if len(args) > 0 && (args[0] == policy.Dom0 || args[0] == "0") {
			return dom0Refusal(args[0])
		}
		return check(c, args)
	}
	return c
}

func newUsbctrlAttachCmd() *cobra.Command {
	var spec policy.CtrlSpec
	var typed string // the words as given, which a spec error quotes
	c := hostCommand("usbctrl-attach DOMAIN [type=auto|pv|qusb|devicemodel] [version=1|2|3] [ports=N]", "add a USB controller to a guest, as xl usbctrl-attach", true, 1, -1,
		func(rest []string) (err error) {
			typed = strings.Join(rest, " ")
			spec, err = policy.ParseCtrlArgs(rest)
			return err
		},
		func(ctx context.Context, c *cobra.Command, h *assign.Host, d assign.Domain) error {
			if d.ID == 0 {
				return dom0Refusal(c.Flags().Arg(0) + " (domid 0)")
			}
			_, err := h.AddController(ctx, d.ID, spec, true)
			if errors.Is(err, policy.ErrSpec) {
				// What auto chose for this guest (an HVM guest's
				// emulated controller) does not take the spec: still
				// the command line's fault, in the words it gave.
				return &usageError{policy.Typed(err, typed).Error()}
			}
			return err
		})
	c.ValidArgsFunction = completeHost("type=", "version=", "ports=")
	return notDom0(c)
}

func newUsbctrlDetachCmd() *cobra.Command {
	var devid int
	return hostCommand("usbctrl-detach DOMAIN DEVID", "remove a guest's USB controller and give back its devices, as xl usbctrl-detach", true, 2, 2,
		func(rest []string) (err error) {
			devid, err = strconv.Atoi(rest[0])
			if err != nil || devid < 0 {
				return fmt.Errorf("%q is not a controller devid (usb-list shows them)", rest[0])
			}
			return nil
		},
		func(ctx context.Context, c *cobra.Command, h *assign.Host, d assign.Domain) error {
			return h.RemoveController(ctx, d.ID, devid)
		})
}

func newUsbdevAttachCmd() *cobra.Command {
	var force *bool
	var spec policy.DevSpec
	c := hostAheadCommand("usbdev-attach [--force] DOMAIN hostbus=B hostaddr=A | busid=B-P.P [controller=C [port=P]]",
		"attach a host USB device to a guest, as xl usbdev-attach (or by busid=)", false, 2, -1,
		func(rest []string) (err error) { spec, err = policy.ParseDevArgs(rest); return err },
		func(ctx context.Context, c *cobra.Command, h *assign.Host, d assign.Domain) error {
			if d.ID == 0 {
				return dom0Refusal(c.Flags().Arg(0) + " (domid 0)")
			}
			spec, opts := h.ReadDevice(spec)
			if !*force {
				release, err := checkNotInUse(h, opts.Device)
				if err != nil {
					return err
				}
				defer release() // once the attach has taken it from dom0
			}
			_, err := h.AttachWith(ctx, d.ID, spec, opts)
			return err
		})
	c.ValidArgsFunction = completeHost("busid=", "hostbus=", "hostaddr=", "controller=", "port=")
	force = c.Flags().Bool("force", false, "attach even a disk dom0 uses (mounted, or under device-mapper or md)")
	return notDom0(c)
}

func newUsbdevDetachCmd() *cobra.Command {
	var ctrl, port int
	return hostCommand("usbdev-detach DOMAIN CONTROLLER PORT", "give back the device at a guest's controller port, as xl usbdev-detach", false, 3, 3,
		func(rest []string) error {
			var err1, err2 error
			ctrl, err1 = strconv.Atoi(rest[0])
			port, err2 = strconv.Atoi(rest[1])
			if err1 != nil || err2 != nil || ctrl < 0 || port < 1 {
				return fmt.Errorf("%s %s: CONTROLLER and PORT are numbers, as usb-list shows them (ports count from 1)", rest[0], rest[1])
			}
			return nil
		},
		func(ctx context.Context, c *cobra.Command, h *assign.Host, d assign.Domain) error {
			return h.Detach(ctx, d.ID, ctrl, port)
		})
}

// usbListJSON is what `usb-list --json` prints: the domain by its name
// and id, as the audit records give them.
type usbListJSON struct {
	Domid       uint32                    `json:"domid"`
	Domain      string                    `json:"domain"`
	Controllers []assign.ListedController `json:"controllers"`
}

func newUsbListCmd() *cobra.Command {
	var asJSON *bool
	c := hostArgsCommand("usb-list [--json] DOMAIN", "list a guest's USB controllers and devices, byte for byte as xl usb-list", false, 1, 1, nil,
		func(ctx context.Context, c *cobra.Command, h *assign.Host, args []string) error {
			d, l, err := h.DomainList(ctx, args[0])
			if err != nil {
				return err
			}
			// One write: the listing is a few hundred bytes.
			stdout := bufio.NewWriter(c.OutOrStdout())
			if *asJSON {
				enc := json.NewEncoder(stdout)
				enc.SetIndent("", "  ")
				err = enc.Encode(usbListJSON{d.ID, d.Name, l})
			} else {
				err = assign.WriteList(stdout, l)
			}
			return errors.Join(err, stdout.Flush())
		})
	asJSON = c.Flags().Bool("json", false, "print JSON")
	return c
}

func newRepairCmd() *cobra.Command {
	c := &cobra.Command{
		Use:   "repair",
		Short: "clear ports that name devices no longer on the host (which make xl refuse every attach)",
	}
	hf := addHostFlags(c.Flags(), false)
	c.RunE = func(c *cobra.Command, args []string) error { return runRepair(c.Context(), hf, c.OutOrStdout()) }
	return c
}

func runRepair(ctx context.Context, hf *hostFlags, stdout io.Writer) error {
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
// would pass dom0's own disk away, and dom0 with it. A device not read
// (nil) is left to the attach. A free device's disks are held until
// release (inventory.Hold), so that no mount takes them before the
// attach unbinds them.
func checkNotInUse(h *assign.Host, dev *usbsysfs.Device) (release func(), err error) {
	release = func() {}
	if dev == nil {
		return release, nil
	}
	why := inventory.InUse(h.Sys, *dev, mounts.Default)
	if why == "" {
		release, why = inventory.Hold(h.Sys, *dev) // it is about to be passed
	}
	if why != "" {
		return release, fmt.Errorf("%s is in use by dom0: %s; unmount it first, or pass --force to attach it anyway", dev.BusID, why)
	}
	return release, nil
}
