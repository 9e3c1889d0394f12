package assign

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"sync"

	"github.com/usbhotplugd/usbhotplugd/internal/usbsysfs"
	"github.com/usbhotplugd/usbhotplugd/internal/xenstore"
	"github.com/usbhotplugd/usbhotplugd/policy"
)

// An AttachItem is one device of AttachMany, with its options.
type AttachItem struct {
	BusID string
	// Controller and Port name the port as xl's controller= and port= do:
	// -1 and 0 for libxl's choice (then Opts may prefer one).
	Controller, Port int
	Opts             AttachOptions
}

// An AttachResult is what became of one AttachItem.
type AttachResult struct {
	Assignment
	Err error
	// Preferred, when the item preferred a port (Opts) and did not get
	// it, says why: what holds that port, or that it does not exist.
	Preferred string
}

// A prepared item: its index and its interfaces' moves to usbback.
type prepared struct {
	i     int
	plan  []planned
	speed string // the device's, as sysfs gives it
}

// AttachMany attaches devices to one guest as `xl usbdev-attach` does,
// deciding all their ports in one transaction: a storm of devices costs
// one read of every domain's ports instead of one per device. For each,
// the port is chosen as libxl chooses it (a controller added when none
// has a free port), the busid written to it with the interfaces' drivers
// recorded under /libxl/usbback, then for pv each interface is moved to
// usbback, with libxl's rollback when that fails. Each item succeeds or
// fails (and is rolled back) on its own.
func (h *Host) AttachMany(ctx context.Context, domid uint32, items []AttachItem) []AttachResult {
	res := make([]AttachResult, len(items))
	todo := h.prepare(items, res)
	for try := 0; len(todo) > 0; try++ {
		placed, need, err := h.place(ctx, domid, items, todo, res)
		if err != nil {
			for _, p := range todo {
				if res[p.i].Err == nil {
					res[p.i] = AttachResult{Err: err}
				}
			}
			return res
		}
		h.finish(ctx, domid, items, placed, res)
		if len(need) == 0 || try >= 4 {
			for _, p := range need {
				res[p.i].Err = fmt.Errorf("domain %d has no free port for %s: %w", domid, items[p.i].BusID, ErrNoFreePort)
			}
			break
		}
		// libxl adds a default controller when none has a free port
		// (xenstore part only, no wait).
		if _, err := h.AddController(ctx, domid, items[need[0].i].Opts.NewController, false); err != nil {
			for _, p := range need {
				res[p.i].Err = err
			}
			break
		}
		todo = need
	}
	return res
}

// prepare reads each item's device (or takes the caller's read) and plans
// its interfaces' moves; an item that cannot be attached fails here.
func (h *Host) prepare(items []AttachItem, res []AttachResult) []prepared {
	var todo []prepared
	for i, it := range items {
		var dev usbsysfs.Device
		var err error
		if it.Opts.Device != nil && it.Opts.Device.BusID == it.BusID {
			dev = *it.Opts.Device
			// The caller read it a moment ago: the busid may be another
			// device's by now (a replug, a mode switch), whose address
			// (no lock needed to read it) differs.
			switch _, devnum, aerr := h.Sys.Addr(it.BusID); {
			case aerr != nil:
				err = fmt.Errorf("%s: gone since it was read: %v: %w", it.BusID, aerr, ErrNoDevice)
			case devnum != dev.DevNum:
				err = fmt.Errorf("%s: another device since it was read (address %d, now %d): %w", it.BusID, dev.DevNum, devnum, ErrNoDevice)
			}
		} else if dev, err = h.Sys.Device(it.BusID); errors.Is(err, fs.ErrNotExist) {
			err = fmt.Errorf("%s: %w", it.BusID, ErrNoDevice)
		}
		if err == nil && (dev.IsHub() || dev.IsRootHub()) {
			err = fmt.Errorf("%s is a hub: %w", it.BusID, ErrNotAssignable)
		}
		var plan []planned
		if err == nil {
			plan, err = h.usbbackPlan(it.BusID)
		}
		if err != nil {
			res[i].Err = err
			continue
		}
		todo = append(todo, prepared{i, plan, dev.Speed})
	}
	return todo
}

// place decides and writes the ports of todo in one transaction: it reads
// every domain's ports inside it (a device must be at none of them),
// picks each port as libxl picks it, and writes the busids there with
// the driver records and the caller's records. A concurrent attach makes
// the commit fail and the whole decision is taken again, so no port is
// ever given twice. need are the items no controller had a port for.
func (h *Host) place(ctx context.Context, domid uint32, items []AttachItem, todo []prepared, res []AttachResult) (placed, need []prepared, err error) {
	err = h.XS.Update(ctx, func(ctx context.Context, tx *xenstore.Tx) error {
		placed, need = placed[:0], need[:0]
		snap, err := h.snapshot(ctx, tx)
		if err != nil {
			return err
		}
		at := map[string]Assignment{}
		for _, d := range snap.order {
			for _, x := range h.assignmentsOf(snap.ctrls[d]) {
				at[x.BusID] = x
			}
		}
		ctrls := snap.ctrls[domid]
		var writes [][2]string
		for _, p := range todo {
			it := items[p.i]
			res[p.i] = AttachResult{}
			if x, ok := at[it.BusID]; ok {
				res[p.i].Err = fmt.Errorf("%s is at domain %d controller %d port %d: %w", it.BusID, x.Domid, x.Controller, x.Port, ErrAssigned)
				continue
			}
			c, port, err := choosePort(ctrls, domid, policy.DevSpec{BusID: it.BusID, Controller: it.Controller, Port: it.Port}, p.speed, it.Opts)
			if errors.Is(err, errNeedController) {
				need = append(need, p)
				continue
			}
			if err != nil {
				res[p.i].Err = err
				continue
			}
			res[p.i].Preferred = preferredMissed(ctrls, it.Opts, c.DevID, port, p.speed)
			c.Port[port-1] = it.BusID // taken, for the next items
			a := Assignment{Domid: domid, Controller: c.DevID, Port: port, BusID: it.BusID, Type: c.Type}
			res[p.i].Assignment, at[it.BusID] = a, a
			writes = append(writes, portWrites(c, port, it, p.plan, a)...)
			placed = append(placed, p)
		}
		// All the writes go out together.
		return tx.WriteMany(ctx, writes)
	})
	return placed, need, err
}

// portWrites are the nodes one placed item writes: its port, then its
// interfaces' drivers (pv), then the caller's records.
func portWrites(c *Controller, port int, it AttachItem, plan []planned, a Assignment) [][2]string {
	w := [][2]string{{c.portPath(port), it.BusID}}
	var drivers map[string]string
	if c.Type == policy.TypePV {
		for _, pl := range plan {
			if pl.driver != "" {
				w = append(w, [2]string{driverPathKey(it.BusID, pl.intf), sysDrivers + pl.driver})
				if drivers == nil {
					drivers = map[string]string{}
				}
				drivers[pl.intf] = pl.driver
			}
		}
	}
	if it.Opts.Record != nil {
		w = append(w, it.Opts.Record(a, drivers)...)
	}
	return w
}

// preferredMissed says why the preferred port of opts was not the one
// chosen (ctrl:port): "" when it was, or when none was preferred.
func preferredMissed(ctrls []Controller, opts AttachOptions, ctrl, port int, speed string) string {
	if opts.PreferPort <= 0 || opts.PreferController == ctrl && opts.PreferPort == port {
		return ""
	}
	for _, c := range ctrls {
		if c.DevID != opts.PreferController {
			continue
		}
		switch p := opts.PreferPort; {
		case p > len(c.Port) || c.Missing[p-1]:
			return fmt.Sprintf("controller %d has no port %d", c.DevID, p)
		case c.Port[p-1] != "":
			return fmt.Sprintf("port %d:%d holds %s", c.DevID, p, portValue(c.Port[p-1]))
		case !carries(&c, speed):
			return fmt.Sprintf("controller %d is USB 1.1, which cannot carry a high-speed device", c.DevID)
		}
		return ""
	}
	return fmt.Sprintf("the domain has no controller %d", opts.PreferController)
}

// finish does the non-store part of each placed item: QEMU's device_add
// for an emulated controller, the moves to usbback for pv; a failure
// rolls the item back.
func (h *Host) finish(ctx context.Context, domid uint32, items []AttachItem, placed []prepared, res []AttachResult) {
	settle := settleBy() // one wait for usbback, shared by the devices placed together
	for _, p := range placed {
		it, a := items[p.i], res[p.i].Assignment
		if a.Type != policy.TypePV {
			// QEMU claims the interfaces itself through usbfs: a
			// deauthorized one is authorized for it, and left unbound.
			if err := h.authorizeFor(p.plan); err != nil {
				h.deauthorizeAgain(p.plan)
				c := Controller{Type: a.Type, backend: backendPath("qusb", domid, a.Controller), libxl: libxlPath(domid, a.Controller)}
				res[p.i] = AttachResult{Err: rolledBack(it.BusID, err, h.clearPort(ctx, c.portPath(a.Port), a, it.Opts))}
				continue
			}
		}
		switch a.Type {
		case policy.TypeDeviceModel:
			if err := h.dmAttach(ctx, a, it.Opts); err != nil {
				h.deauthorizeAgain(p.plan)
				res[p.i] = AttachResult{Err: err}
			}
		case policy.TypePV:
			// Asked only once usbback refused it, and then once.
			may := sync.OnceValues(func() (serves, connected bool) {
				return h.usbbackMayTake(ctx, domid, a.Controller, it.BusID)
			})
			// Wait for usbback's port table only where it may yet take
			// the device.
			waits := func() bool { s, c := may(); return s && c }
			if err := h.bindUsbback(ctx, p.plan, settle, waits); err != nil {
				if errors.Is(err, ErrUsbbackRefused) {
					if serves, connected := may(); serves && !connected {
						// usbback watches a backend's ports only once the
						// guest's frontend (xen-hcd) has connected to it:
						// a guest still booting is not ready, and its
						// device is tried again later.
						err = fmt.Errorf("controller %d of domain %d is not connected: its guest's frontend has not connected, and usbback serves its ports only then (%v): %w",
							a.Controller, domid, err, ErrNotReady)
					}
				}
				h.rollback(ctx, it.BusID)
				h.deauthorizeAgain(p.plan)
				c := Controller{Type: a.Type, backend: backendPath("vusb", domid, a.Controller)}
				res[p.i] = AttachResult{Err: rolledBack(it.BusID, err, h.clearPort(ctx, c.portPath(a.Port), a, it.Opts))}
			}
		}
	}
}

// usbbackMayTake says whether usbback may ever serve busid at a pv
// controller (not a hub or a SuperSpeed device, nor a high-speed one at a
// USB 1.1 controller), and whether the controller's backend is Connected
// (4), or may be: one whose state cannot be read is taken as connected,
// so that what usbback says of the device stands.
func (h *Host) usbbackMayTake(ctx context.Context, domid uint32, devid int, busid string) (serves, connected bool) {
	bp := backendPath("vusb", domid, devid)
	v, errs := h.XS.ReadMany(ctx, []string{bp + "/state", bp + "/usb-ver"})
	connected = errs[0] != nil || string(v[0]) == "4"
	if !h.usbbackMayServe(busid) {
		return false, connected
	}
	_, speed, err := h.Sys.ClassSpeed(busid)
	return err != nil || speed != "480" || errs[1] != nil || string(v[1]) != "1", connected
}
