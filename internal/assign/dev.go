package assign

import (
	"context"
	"errors"
	"fmt"
	"io/fs"

	"github.com/usbhotplugd/usbhotplugd/internal/xenstore"
	"github.com/usbhotplugd/usbhotplugd/policy"
)

// An Assignment is a host device at a guest's controller port.
type Assignment struct {
	Domid      uint32 `json:"domid"`
	Controller int    `json:"controller"`
	Port       int    `json:"port"`
	BusID      string `json:"busid"`
	Type       string `json:"type"`
	// Stale is set when the device is no longer on the host.
	Stale bool `json:"stale,omitempty"`
}

// Assigned lists every port of every domain's controllers that names a
// device. Unlike libxl, a port naming a device that has left the host is
// listed as Stale instead of failing the whole scan, and a busid that is
// not a busid is reported and skipped.
func (h *Host) Assigned(ctx context.Context) ([]Assignment, error) {
	doms, err := dirOpt(ctx, h.XS, "/libxl")
	if err != nil {
		return nil, err
	}
	var out []Assignment
	for _, s := range doms {
		d, ok := atoiStrict(s)
		if !ok {
			continue // /libxl/usbback and such
		}
		ctrls, err := h.Controllers(ctx, uint32(d))
		if err != nil {
			return nil, err
		}
		out = append(out, h.assignmentsOf(ctrls)...)
	}
	return out, nil
}

func (h *Host) assignmentsOf(ctrls []Controller) []Assignment {
	var out []Assignment
	for _, c := range ctrls {
		for i, b := range c.Port {
			if b == "" {
				continue
			}
			if err := checkBusID(b); err != nil {
				h.warn("domain %d controller %d port %d: %v; ignored", c.Domid, c.DevID, i+1, err)
				continue
			}
			a := Assignment{Domid: c.Domid, Controller: c.DevID, Port: i + 1, BusID: b, Type: c.Type}
			if _, err := h.Sys.Device(b); errors.Is(err, fs.ErrNotExist) {
				a.Stale = true
			}
			out = append(out, a)
		}
	}
	return out
}

// resolveBusID finds the device a DevSpec names: by busid, or by bus and
// address the way libxl does (the first bus/usb/devices entry in readdir
// order with that busnum and devnum).
func (h *Host) resolveBusID(spec policy.DevSpec) (string, error) {
	if spec.BusID != "" {
		if err := checkBusID(spec.BusID); err != nil {
			return "", fmt.Errorf("%v: %w", err, ErrNoDevice)
		}
		return spec.BusID, nil
	}
	b, err := h.Sys.BusIDByAddr(spec.HostBus, spec.HostAddr)
	if err != nil {
		return "", fmt.Errorf("bus %d addr %d: %w (%v)", spec.HostBus, spec.HostAddr, ErrNoDevice, err)
	}
	return b, nil
}

// Attach attaches a host device to a guest as `xl usbdev-attach` does:
// the port chosen as libxl chooses it (a controller created when none has
// a free port), the busid written to the port, then for pv each interface
// unbound from its driver (recorded under /libxl/usbback) and bound to
// usbback, with libxl's rollback when that fails.
func (h *Host) Attach(ctx context.Context, domid uint32, spec policy.DevSpec) (Assignment, error) {
	busid, err := h.resolveBusID(spec)
	if err != nil {
		return Assignment{}, err
	}
	dev, err := h.Sys.Device(busid)
	if errors.Is(err, fs.ErrNotExist) {
		return Assignment{}, fmt.Errorf("%s: %w", busid, ErrNoDevice)
	}
	if err != nil {
		return Assignment{}, err
	}
	if dev.IsHub() || dev.IsRootHub() {
		return Assignment{}, fmt.Errorf("%s is a hub: %w", busid, ErrNotAssignable)
	}
	if spec.Controller < 0 && spec.Port != 0 {
		return Assignment{}, fmt.Errorf("a port needs a controller: %w", ErrNoController)
	}
	all, err := h.Assigned(ctx)
	if err != nil {
		return Assignment{}, err
	}
	for _, a := range all {
		if a.BusID == busid {
			return Assignment{}, fmt.Errorf("%s is at domain %d controller %d port %d: %w", busid, a.Domid, a.Controller, a.Port, ErrAssigned)
		}
	}
	var a Assignment
	for try := 0; ; try++ {
		a, err = h.placePort(ctx, domid, busid, spec)
		// Another attach took the port between our read and our
		// transaction: choose again, unless the port was named.
		if errors.Is(err, ErrPortBusy) && spec.Port == 0 && try < 8 {
			continue
		}
		if err != nil {
			return Assignment{}, err
		}
		break
	}
	if a.Type != policy.TypePV {
		return a, nil
	}
	if err := h.bindUsbback(ctx, busid); err != nil {
		h.rollback(ctx, busid)
		c := Controller{Type: a.Type, backend: backendPath("vusb", domid, a.Controller)}
		if werr := write(context.WithoutCancel(ctx), h.XS, c.portPath(a.Port), ""); werr != nil {
			err = errors.Join(err, werr)
		}
		return Assignment{}, fmt.Errorf("%s not attached (rolled back): %w", busid, err)
	}
	return a, nil
}

// placePort picks a controller and port and writes the busid there in one
// transaction that checks the port is still free.
func (h *Host) placePort(ctx context.Context, domid uint32, busid string, spec policy.DevSpec) (Assignment, error) {
	var c Controller
	port := 0
	if spec.Controller >= 0 {
		var err error
		if c, err = h.controller(ctx, domid, spec.Controller); err != nil {
			return Assignment{}, err
		}
		if c.Type != policy.TypeDeviceModel && c.BackendDomid != 0 {
			return Assignment{}, fmt.Errorf("controller %d: %w", c.DevID, ErrNotDom0Backend)
		}
		port = spec.Port
		if port == 0 {
			for i, b := range c.Port {
				if b == "" && !c.Missing[i] {
					port = i + 1
					break
				}
			}
			if port == 0 {
				return Assignment{}, fmt.Errorf("controller %d of domain %d has no available port: %w", c.DevID, domid, ErrNoFreePort)
			}
		}
	} else {
		ctrls, err := h.Controllers(ctx, domid)
		if err != nil {
			return Assignment{}, err
		}
	search:
		for _, cc := range ctrls {
			for i, b := range cc.Port {
				if b == "" && !cc.Missing[i] {
					c, port = cc, i+1
					break search
				}
			}
		}
		if port == 0 {
			// libxl adds a default controller, xenstore part only, no wait.
			if c, err = h.AddController(ctx, domid, policy.CtrlSpec{}, false); err != nil {
				return Assignment{}, err
			}
			port = 1
		}
	}
	if c.Type == policy.TypeDeviceModel {
		return Assignment{}, fmt.Errorf("controller %d is an emulated (devicemodel) controller: %w", c.DevID, ErrUnsupported)
	}
	p := c.portPath(port)
	err := h.XS.Update(ctx, func(ctx context.Context, tx *xenstore.Tx) error {
		cur, ok, err := readOpt(ctx, tx, p)
		if err != nil {
			return err
		}
		if ok && cur != "" {
			return fmt.Errorf("controller %d port %d of domain %d holds %s: %w", c.DevID, port, domid, cur, ErrPortBusy)
		}
		return write(ctx, tx, p, busid)
	})
	if err != nil {
		return Assignment{}, err
	}
	return Assignment{Domid: domid, Controller: c.DevID, Port: port, BusID: busid, Type: c.Type}, nil
}

// bindUsbback moves every interface of busid to usbback, recording the
// driver it had, in readdir order, as usbback_dev_assign does.
func (h *Host) bindUsbback(ctx context.Context, busid string) error {
	intfs, err := h.Sys.Interfaces(busid)
	if err != nil {
		return err
	}
	for _, in := range intfs {
		if h.Sys.BoundTo(in.Name, "usbback") {
			continue
		}
		drv, err := h.Sys.Driver(in.Name)
		if err != nil {
			return err
		}
		if drv != "" {
			if err := write(ctx, h.XS, driverPathKey(busid, in.Name), sysDrivers+drv); err != nil {
				return err
			}
			if err := h.Sys.Unbind(in.Name); err != nil {
				return err
			}
		}
		if !h.Sys.BoundTo(in.Name, "usbback") {
			if err := h.Sys.Bind(in.Name, "usbback"); err != nil {
				return err
			}
		}
	}
	return nil
}

// rollback undoes bindUsbback: unbind from usbback, rebind the recorded
// drivers, drop the record.
func (h *Host) rollback(ctx context.Context, busid string) {
	ctx = context.WithoutCancel(ctx)
	if err := h.unbindUsbback(busid); err != nil {
		h.warn("rollback of %s: %v", busid, err)
	}
	if err := h.rebind(ctx, busid); err != nil {
		h.warn("rollback of %s: %v", busid, err)
	}
}

func (h *Host) unbindUsbback(busid string) error {
	intfs, err := h.Sys.Interfaces(busid)
	if err != nil {
		return err
	}
	var errs []error
	for _, in := range intfs {
		if h.Sys.BoundTo(in.Name, "usbback") {
			errs = append(errs, h.Sys.Unbind(in.Name))
		}
	}
	return errors.Join(errs...)
}

// rebind binds each interface to its recorded driver, then removes the
// record whatever happened, as usbdev_rebind does.
func (h *Host) rebind(ctx context.Context, busid string) error {
	intfs, err := h.Sys.Interfaces(busid)
	var errs []error
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		errs = append(errs, err)
	}
	for _, in := range intfs {
		rec, ok, err := readOpt(ctx, h.XS, driverPathKey(busid, in.Name))
		if err != nil || !ok {
			errs = append(errs, err)
			continue
		}
		drv, err := driverFromRecord(rec)
		if err != nil {
			h.warn("%s: %v; left unbound", in.Name, err)
			continue
		}
		if h.Sys.BoundTo(in.Name, drv) {
			continue
		}
		errs = append(errs, h.Sys.Bind(in.Name, drv))
	}
	errs = append(errs, rmOpt(ctx, h.XS, usbbackRecord(busid)))
	return errors.Join(errs...)
}

// Detach gives back the device at a controller port, as `xl usbdev-detach`
// does: unbind from usbback, clear the port, rebind the recorded drivers.
// A device that has left the host has its port cleared and its record
// removed (libxl refuses: "Unknown device").
func (h *Host) Detach(ctx context.Context, domid uint32, devid, port int) error {
	if devid < 0 || port < 1 {
		return fmt.Errorf("controller %d port %d: %w", devid, port, ErrNoController)
	}
	c, err := h.controller(ctx, domid, devid)
	if err != nil {
		return err
	}
	if c.Type == policy.TypeDeviceModel {
		return fmt.Errorf("type devicemodel: %w", ErrUnsupported)
	}
	p := c.portPath(port)
	busid, ok, err := readOpt(ctx, h.XS, p)
	if err != nil {
		return err
	}
	if !ok || busid == "" {
		return fmt.Errorf("controller %d port %d of domain %d: %w", devid, port, domid, ErrPortEmpty)
	}
	if err := checkBusID(busid); err != nil {
		h.warn("controller %d port %d of domain %d: %v; clearing it", devid, port, domid, err)
		return write(ctx, h.XS, p, "")
	}
	if c.Type == policy.TypePV {
		if err := h.unbindUsbback(busid); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return fmt.Errorf("%s: removing it from the guest failed; try again: %w", busid, err)
		}
	}
	if err := write(ctx, h.XS, p, ""); err != nil {
		return err
	}
	if c.Type == policy.TypePV {
		if err := h.rebind(ctx, busid); err != nil {
			return fmt.Errorf("%s removed from the guest, but not bound again to its dom0 driver: %w", busid, err)
		}
	}
	return nil
}

// Repair clears every port that names a device no longer on the host, and
// its /libxl/usbback record: the state after an unplug that libxl never
// cleans up, which makes xl refuse every later attach.
func (h *Host) Repair(ctx context.Context) ([]Assignment, error) {
	all, err := h.Assigned(ctx)
	if err != nil {
		return nil, err
	}
	var fixed []Assignment
	for _, a := range all {
		if !a.Stale {
			continue
		}
		c := Controller{Type: a.Type, libxl: libxlPath(a.Domid, a.Controller)}
		if a.Type != policy.TypeDeviceModel {
			kind := "vusb"
			if a.Type == policy.TypeQUSB {
				kind = "qusb"
			}
			c.backend = backendPath(kind, a.Domid, a.Controller)
		}
		p := c.portPath(a.Port)
		err := h.XS.Update(ctx, func(ctx context.Context, tx *xenstore.Tx) error {
			cur, _, err := readOpt(ctx, tx, p)
			if err != nil || cur != a.BusID {
				return err // changed meanwhile: leave it
			}
			return write(ctx, tx, p, "")
		})
		if err != nil {
			return fixed, err
		}
		if err := rmOpt(ctx, h.XS, usbbackRecord(a.BusID)); err != nil {
			return fixed, err
		}
		fixed = append(fixed, a)
	}
	return fixed, nil
}
