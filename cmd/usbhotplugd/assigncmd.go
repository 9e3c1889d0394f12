package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"

	"github.com/spf13/cobra"

	"github.com/usbhotplugd/usbhotplugd/internal/daemon"
	"github.com/usbhotplugd/usbhotplugd/internal/inventory"
	"github.com/usbhotplugd/usbhotplugd/internal/mounts"
	"github.com/usbhotplugd/usbhotplugd/internal/policygen"
	"github.com/usbhotplugd/usbhotplugd/internal/usbsysfs"
	"github.com/usbhotplugd/usbhotplugd/policy"
)

func init() {
	register(command{name: "assign", group: groupPolicy, new: newAssignCmd, examples: []string{
		"usbhotplugd assign 1-2 kiosk\t# 1-2 goes to kiosk from now on, by a drop-in in rules.d/",
		"usbhotplugd assign --prefer port_path 1-3 kiosk\t# whatever stick of this kind is in that socket",
	}})
	register(command{name: "unassign", group: groupPolicy, new: newUnassignCmd, examples: []string{
		"usbhotplugd unassign 1-2\t# remove its drop-in; it stays with dom0 unless another rule says otherwise",
	}})
}

type assignOpts struct {
	polPath, stateDir, root, mountinfo, prefer string
	noReload, force                            bool
}

func (o *assignOpts) flags(c *cobra.Command, assign bool) {
	c.Flags().StringVar(&o.polPath, "policy", "", "the policy file; drop-ins are in rules.d/ beside it (by default the running agent's, else "+DefaultPolicy+")")
	c.Flags().StringVar(&o.stateDir, "state-dir", DefaultStateDir, "the agent's state directory")
	c.Flags().StringVar(&o.root, "sysfs", sysfsDefault(), "sysfs root to read")
	what := "remove the drop-in only; the agent reads rules.d again at its next reload or start"
	if assign {
		what = "write the drop-in only; the agent reads it at its next reload or start"
	}
	c.Flags().BoolVar(&o.noReload, "no-reload", false, what)
	if assign {
		c.Flags().StringVar(&o.prefer, "prefer", policygen.BySerial, "the identity to name the device by when it names it alone: serial, port_path or hash")
		c.Flags().StringVar(&o.mountinfo, "mountinfo", mounts.Default, "dom0's mounts: a disk dom0 uses is refused")
		c.Flags().BoolVar(&o.force, "force", false, "assign a disk dom0 uses anyway (the agent's guard still keeps it while it is used)")
	}
}

func newAssignCmd() *cobra.Command {
	c := &cobra.Command{
		Use:   "assign [--prefer serial|port_path|hash] [--no-reload] [--policy FILE] BUSID DOMAIN",
		Short: "send a device to a guest for good: a drop-in with its stable identity, then reload the agent",
		Args:  rangeArgs(2, 2),
		ValidArgsFunction: func(c *cobra.Command, args []string, toComplete string) ([]cobra.Completion, cobra.ShellCompDirective) {
			switch len(args) {
			case 0:
				return completeBusIDs(sysfsFlag(c), ""), cobra.ShellCompDirectiveNoFileComp
			case 1:
				return completeDomains(c), cobra.ShellCompDirectiveNoFileComp
			}
			return nil, cobra.ShellCompDirectiveNoFileComp
		},
	}
	var o assignOpts
	o.flags(c, true)
	c.RunE = func(c *cobra.Command, args []string) error {
		if err := usbsysfs.ValidBusID(args[0]); err != nil {
			return &usageError{err.Error()}
		}
		if err := checkPrefer(o.prefer); err != nil {
			return err
		}
		if err := policygen.CheckDomain(args[1]); err != nil {
			return &usageError{err.Error()}
		}
		return runAssign(c.Context(), o, args[0], args[1], c.OutOrStdout())
	}
	return c
}

func presentDevice(root, busid string) (usbsysfs.Device, []usbsysfs.Device, error) {
	sys := usbsysfs.NewFS(root)
	devs, scanErr := sys.Devices()
	unread, err := usbsysfs.Partial(scanErr)
	if err != nil {
		return usbsysfs.Device{}, nil, err
	}
	if err := usbsysfs.UnreadOf(unread, busid); err != nil {
		return usbsysfs.Device{}, nil, err
	}
	if len(unread) > 0 {
		// It could be a twin: the identity chosen must be one no other
		// present device has.
		return usbsysfs.Device{}, nil, fmt.Errorf("cannot tell which identity names %s alone: %w", busid, scanErr)
	}
	for _, d := range devs {
		if d.BusID == busid {
			return d, devs, nil
		}
	}
	return usbsysfs.Device{}, devs, &noDeviceError{busid}
}

// noDeviceError is a busid at which the host has no device. It is
// fs.ErrNotExist, but says so in its own words alone, not with the
// system's "file does not exist".
type noDeviceError struct{ busid string }

func (e *noDeviceError) Error() string {
	return fmt.Sprintf("no USB device %s on this host (usbhotplugd devices lists them)", e.busid)
}

func (e *noDeviceError) Is(target error) bool { return target == fs.ErrNotExist }

// resolvePolicy sets o.polPath to the policy file the drop-ins go beside:
// the running agent's, which a --policy given must name (a drop-in beside
// another file would never be read by it); with no agent running, or no
// reload asked for, the one given or the default.
func (o *assignOpts) resolvePolicy(ctx context.Context) error {
	if !o.noReload {
		p, err := agentPolicy(ctx, o.polPath, o.stateDir)
		if err == nil {
			o.polPath = p
			return nil
		}
		if !errors.Is(err, daemon.ErrNotRunning) {
			return err
		}
	}
	if o.polPath == "" {
		o.polPath = DefaultPolicy
	}
	return nil
}

func runAssign(ctx context.Context, o assignOpts, busid, domain string, stdout io.Writer) error {
	if err := o.resolvePolicy(ctx); err != nil {
		return err
	}
	d, devs, err := presentDevice(o.root, busid)
	if err != nil {
		return err
	}
	if why := inventory.InUse(usbsysfs.NewFS(o.root), d, o.mountinfo); why != "" && !o.force {
		return fmt.Errorf("%s (%s) is in use by dom0: %s; it is not assigned (--force writes the drop-in anyway)", d.BusID, d.ID(), why)
	}
	a, err := policygen.AssignDropIn(ctx, o.polPath, d, devs, domain, o.prefer)
	if err != nil {
		return err
	}
	fmt.Fprintf(stdout, "wrote %s: %s (%s) goes to %s, named by its %s %s\n", a.File, d.BusID, d.ID(), domain, a.ID.Key, a.ID.Value)
	for _, f := range a.Replaced {
		fmt.Fprintf(stdout, "replaced %s, which named it before\n", f)
	}
	if a.Note != "" {
		fmt.Fprintf(stdout, "note: %s\n", a.Note)
	}
	return reloadAfter(ctx, o, stdout)
}

// reloadAfter has the agent load the policy that a drop-in changed; no
// agent running is no error, as it reads the drop-ins when it starts.
func reloadAfter(ctx context.Context, o assignOpts, stdout io.Writer) error {
	if o.noReload {
		fmt.Fprintln(stdout, "not reloaded (--no-reload): usbhotplugd reload applies it")
		return nil
	}
	err := runReload(ctx, o.polPath, o.stateDir, stdout)
	if errors.Is(err, daemon.ErrNotRunning) {
		fmt.Fprintln(stdout, "no agent is running: it reads the drop-in when it starts")
		return nil
	}
	return err
}

func newUnassignCmd() *cobra.Command {
	c := &cobra.Command{
		Use:               "unassign [--no-reload] [--policy FILE] BUSID|DROP-IN",
		Short:             "remove the drop-in that assign wrote for a device, then reload the agent",
		Args:              rangeArgs(1, 1),
		ValidArgsFunction: completeBusID,
	}
	var o assignOpts
	o.flags(c, false)
	c.RunE = func(c *cobra.Command, args []string) error {
		return runUnassign(c.Context(), o, args[0], c.OutOrStdout())
	}
	return c
}

func runUnassign(ctx context.Context, o assignOpts, which string, stdout io.Writer) error {
	if err := o.resolvePolicy(ctx); err != nil {
		return err
	}
	var removed []string
	if usbsysfs.ValidBusID(which) == nil {
		d, devs, err := presentDevice(o.root, which)
		if err != nil {
			return fmt.Errorf("%w; for a device that is not plugged in, give its drop-in's name (ls %s)", err, policy.DropInDir(o.polPath))
		}
		if removed, err = policygen.Unassign(o.polPath, d, devs); err != nil {
			return err
		}
		if len(removed) == 0 {
			return fmt.Errorf("no drop-in of usbhotplugd assign in %s names %s (%s)", policy.DropInDir(o.polPath), d.BusID, d.ID())
		}
	} else {
		f, err := policygen.UnassignFile(o.polPath, which)
		if err != nil {
			return err
		}
		removed = []string{f}
	}
	for _, f := range removed {
		fmt.Fprintf(stdout, "removed %s\n", f)
	}
	return reloadAfter(ctx, o, stdout)
}
