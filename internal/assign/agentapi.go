package assign

import (
	"context"
	"errors"
	"fmt"
	"slices"

	"github.com/usbhotplugd/usbhotplugd/internal/usbsysfs"
	"github.com/usbhotplugd/usbhotplugd/internal/xenstore"
	"github.com/usbhotplugd/usbhotplugd/policy"
)

// Release gives every interface of busid that is in usbback back to its
// recorded driver and drops the record: the state a device must be in
// when no port names it. It is what a crash between the steps of a detach
// leaves to finish. An interface without a driver that it did not take
// out of usbback itself is left alone: the kernel has many (no driver
// matches them, or its module is not loaded), and an admin's own unbind
// stays.
func (h *Host) Release(ctx context.Context, busid string) error {
	if err := checkBusID(busid); err != nil {
		return err
	}
	out, err := h.takeFromUsbback(busid)
	return errors.Join(err, h.giveBack(ctx, busid, out))
}

// giveBack binds busid's interfaces to their recorded drivers, then
// offers those of out, and those whose bind failed, still without a
// driver to the kernel's matching, then removes the records. Not while
// the kernel still probes one: the pass after that offers them, once the
// records are done, so none is given the kernel's choice instead of its
// own driver. The records go last: a process killed before the offers
// leaves them, for the next pass to bind by; gone first, an interface
// whose bind failed would be left without a driver, and without anything
// that says it had one.
func (h *Host) giveBack(ctx context.Context, busid string, out []string) error {
	failed, err := h.bindRecorded(ctx, busid)
	if errors.Is(err, usbsysfs.ErrBusy) {
		return err
	}
	for _, f := range failed {
		if !slices.Contains(out, f) {
			out = append(out, f)
		}
	}
	err = errors.Join(err, h.offerUnbound(out))
	if errors.Is(err, usbsysfs.ErrBusy) {
		// The offers stopped at one the kernel still probes: the records
		// stay, for the next give-back to bind by and offer the rest.
		return err
	}
	return errors.Join(err, rmOpt(ctx, h.XS, usbbackRecord(busid)))
}

// offerUnbound offers each of out, interfaces just taken from usbback,
// that is still without a driver (no record to go back to: usbback bound
// it by itself, or the record went with a detach that raced this one) to
// the kernel's own matching, so it is not lost to dom0.
func (h *Host) offerUnbound(out []string) error {
	var unbound []string
	for _, intf := range out {
		if drv, derr := h.Sys.Driver(intf); derr == nil && drv == "" {
			unbound = append(unbound, intf)
		}
	}
	return h.probeEach(unbound)
}

// probeEach offers each interface of intfs to the kernel's own matching,
// up to one the kernel is still probing: the pass after it offers the
// rest.
func (h *Host) probeEach(intfs []string) error {
	var errs []error
	for _, intf := range intfs {
		err := h.Sys.Probe(intf)
		errs = append(errs, err)
		if errors.Is(err, usbsysfs.ErrBusy) {
			break
		}
	}
	return errors.Join(errs...)
}

// ReleaseUnbound is Release that also offers every interface of busid
// without a driver to the kernel's own matching (drivers_probe): for a
// device that was attached, whose interfaces a detach raced with another
// may have left without a driver and without a record.
func (h *Host) ReleaseUnbound(ctx context.Context, busid string) error {
	err := h.Release(ctx, busid)
	if errors.Is(err, usbsysfs.ErrBusy) {
		// The kernel still probes one: an interface whose recorded driver
		// is not bound yet must not get the kernel's choice instead. The
		// pass after it offers the rest.
		return err
	}
	intfs, ierr := h.Sys.InterfaceStates(busid)
	if ierr != nil {
		return errors.Join(err, ierr)
	}
	var unbound []string
	for _, in := range intfs {
		if in.Driver == "" {
			unbound = append(unbound, in.Name)
		}
	}
	return errors.Join(err, h.probeEach(unbound))
}

// takeFromUsbback unbinds from usbback the interfaces of busid bound to
// it, and names them.
func (h *Host) takeFromUsbback(busid string) ([]string, error) {
	intfs, err := h.Sys.InterfaceStates(busid)
	if err != nil {
		return nil, err
	}
	var out []string
	var errs []error
	for _, in := range intfs {
		if in.Driver != "usbback" {
			continue
		}
		took, err := h.unbindFromUsbback(in.Name)
		if err != nil {
			errs = append(errs, err)
		}
		if took {
			out = append(out, in.Name)
		}
	}
	return out, errors.Join(errs...)
}

// EnsureBound moves to usbback the interfaces of an attached device that
// are not there yet, recording their drivers first: what a crash between
// the port write and the binds leaves to finish.
func (h *Host) EnsureBound(ctx context.Context, busid string) error {
	return h.ensureBound(ctx, busid, false)
}

// EnsureBoundHeld is EnsureBound for the interfaces a dom0 driver holds
// (it took the guest's device: after a resume, a reset) or that are
// deauthorized (inert, which no driver probes): an authorized interface
// without a driver, which someone else unbound from usbback, is left so.
func (h *Host) EnsureBoundHeld(ctx context.Context, busid string) error {
	return h.ensureBound(ctx, busid, true)
}

func (h *Host) ensureBound(ctx context.Context, busid string, held bool) error {
	if err := checkBusID(busid); err != nil {
		return err
	}
	plan, err := h.usbbackPlan(busid)
	if err != nil {
		return err
	}
	if held {
		plan = slices.DeleteFunc(plan, func(p planned) bool { return p.driver == "" && p.authorized })
	}
	for _, p := range plan {
		if p.driver == "" {
			continue
		}
		if err := write(ctx, h.XS, driverPathKey(busid, p.intf), sysDrivers+p.driver); err != nil {
			return fmt.Errorf("recording the driver of %s: %w", p.intf, err)
		}
	}
	return h.bindUsbback(ctx, plan, settleBy(), nil)
}

// WriteRecords writes the driver records of busid's interfaces, in one
// transaction: drivers are their dom0 drivers, by interface. An interface
// no longer on the host is skipped.
func (h *Host) WriteRecords(ctx context.Context, busid string, drivers map[string]string) error {
	if err := checkBusID(busid); err != nil {
		return err
	}
	intfs, err := h.Sys.InterfaceStates(busid)
	if err != nil {
		return err
	}
	var writes [][2]string
	for _, in := range intfs {
		drv, ok := drivers[in.Name]
		if !ok {
			continue
		}
		if usbsysfs.ValidDriver(drv) != nil {
			return fmt.Errorf("the driver %q of %s is not a driver's name: %w", drv, in.Name, usbsysfs.ErrInvalidName)
		}
		writes = append(writes, [2]string{driverPathKey(busid, in.Name), sysDrivers + drv})
	}
	if len(writes) == 0 {
		return nil
	}
	return h.XS.Update(ctx, func(ctx context.Context, tx *xenstore.Tx) error { return tx.WriteMany(ctx, writes) })
}

// HasRecord reports whether /libxl/usbback holds driver records for busid.
func (h *Host) HasRecord(ctx context.Context, busid string) (bool, error) {
	p, err := RecordPath(busid)
	if err != nil {
		return false, err
	}
	_, ok, err := readOpt(ctx, h.XS, p)
	return ok, err
}

// RecordPath is the node of busid's driver records under /libxl/usbback,
// for callers that read it together with other nodes.
func RecordPath(busid string) (string, error) {
	if err := checkBusID(busid); err != nil {
		return "", err
	}
	return usbbackRecord(busid), nil
}

// Records lists the busids that have driver records under /libxl/usbback.
func (h *Host) Records(ctx context.Context) ([]string, error) {
	names, err := dirOpt(ctx, h.XS, "/libxl/usbback")
	if err != nil {
		return nil, err
	}
	// The names are encoded busids: "_" stands for "." (a busid has no "_").
	out := make([]string, 0, len(names))
	for _, n := range names {
		b := decodeBusID(n)
		if checkBusID(b) == nil {
			out = append(out, b)
		}
	}
	return out, nil
}

func decodeBusID(s string) string {
	b := []byte(s)
	for i, c := range b {
		if c == '_' {
			b[i] = '.'
		}
	}
	return string(b)
}

// PortPath is the node that holds a's port (of a pv or qusb controller),
// for callers that confirm a remembered assignment with one read; false
// for a port or controller that cannot be. The busid is not looked at.
func PortPath(a Assignment) (string, bool) {
	if a.Port < 1 || a.Controller < 0 {
		return "", false
	}
	c := Controller{Type: a.Type, libxl: libxlPath(a.Domid, a.Controller)}
	switch a.Type {
	case policy.TypeQUSB:
		c.backend = backendPath("qusb", a.Domid, a.Controller)
	default:
		c.backend = backendPath("vusb", a.Domid, a.Controller)
	}
	return c.portPath(a.Port), true
}

// ReadDevice finds the device spec names and reads it once, for a
// command's guard and its attach both: the spec then names it by busid
// and the options (for AttachWith) carry the read. A device that cannot be
// found or read is left to the attach, which says why as xl does.
func (h *Host) ReadDevice(spec policy.DevSpec) (policy.DevSpec, AttachOptions) {
	opts := AttachOptions{PreferController: -1}
	busid := spec.BusID
	if busid == "" {
		b, err := h.Sys.BusIDByAddr(spec.HostBus, spec.HostAddr)
		if err != nil {
			return spec, opts
		}
		busid = b
	}
	dev, err := h.Sys.Device(busid)
	if err != nil {
		return spec, opts
	}
	spec.BusID = busid
	opts.Device = &dev
	return spec, opts
}
