package assign

import (
	"context"
	"errors"
	"fmt"
	"io/fs"

	"github.com/usbhotplugd/usbhotplugd/internal/usbsysfs"
	"github.com/usbhotplugd/usbhotplugd/internal/xenstore"
	"github.com/usbhotplugd/usbhotplugd/policy"
)

// An AttachItem is one device of AttachMany, with its options.
type AttachItem struct {
	BusID string
	Opts  AttachOptions
}

// An AttachResult is what became of one AttachItem.
type AttachResult struct {
	Assignment
	Err error
}

// AttachMany attaches several devices to one guest as AttachWith does,
// deciding all their ports in one transaction: a storm of devices costs
// one read of every domain's ports instead of one per device. Each item
// succeeds or fails (and is rolled back) on its own.
func (h *Host) AttachMany(ctx context.Context, domid uint32, items []AttachItem) []AttachResult {
	res := make([]AttachResult, len(items))
	type prep struct {
		i    int
		plan []planned
	}
	var todo []prep
	for i, it := range items {
		var dev usbsysfs.Device
		var err error
		if it.Opts.Device != nil && it.Opts.Device.BusID == it.BusID {
			dev = *it.Opts.Device
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
		todo = append(todo, prep{i, plan})
	}
	for try := 0; len(todo) > 0; try++ {
		var need []prep
		var placed []prep
		err := h.XS.Update(ctx, func(ctx context.Context, tx *xenstore.Tx) error {
			need, placed = need[:0], placed[:0]
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
				res[p.i].Err = nil
				if x, ok := at[it.BusID]; ok {
					res[p.i].Err = fmt.Errorf("%s is at domain %d controller %d port %d: %w", it.BusID, x.Domid, x.Controller, x.Port, ErrAssigned)
					continue
				}
				c, port, err := choosePort(ctrls, domid, policy.DevSpec{BusID: it.BusID, Controller: -1}, it.Opts)
				if errors.Is(err, errNeedController) {
					need = append(need, p)
					continue
				}
				if err != nil {
					res[p.i].Err = err
					continue
				}
				c.Port[port-1] = it.BusID // taken, for the next items
				a := Assignment{Domid: domid, Controller: c.DevID, Port: port, BusID: it.BusID, Type: c.Type}
				res[p.i].Assignment = a
				at[it.BusID] = a
				writes = append(writes, [2]string{c.portPath(port), it.BusID})
				if c.Type == policy.TypePV {
					for _, pl := range p.plan {
						if pl.driver != "" {
							writes = append(writes, [2]string{driverPathKey(it.BusID, pl.intf), sysDrivers + pl.driver})
						}
					}
				}
				if it.Opts.Record != nil {
					writes = append(writes, it.Opts.Record(a)...)
				}
				placed = append(placed, p)
			}
			// All the writes go out together.
			return tx.WriteMany(ctx, writes)
		})
		if err != nil {
			for _, p := range todo {
				if res[p.i].Err == nil {
					res[p.i] = AttachResult{Err: err}
				}
			}
			return res
		}
		for _, p := range placed {
			it, a := items[p.i], res[p.i].Assignment
			switch a.Type {
			case policy.TypeDeviceModel:
				if err := h.dmAttach(ctx, a, it.Opts); err != nil {
					res[p.i] = AttachResult{Err: err}
				}
			case policy.TypePV:
				if err := h.bindUsbback(p.plan); err != nil {
					h.rollback(ctx, it.BusID)
					c := Controller{Type: a.Type, backend: backendPath("vusb", domid, a.Controller)}
					err = errors.Join(err, h.clearPort(ctx, c.portPath(a.Port), a, it.Opts))
					res[p.i] = AttachResult{Err: fmt.Errorf("%s not attached (rolled back): %w", it.BusID, err)}
				}
			}
		}
		if len(need) == 0 || try >= 4 {
			for _, p := range need {
				res[p.i].Err = fmt.Errorf("domain %d has no free port for %s: %w", domid, items[p.i].BusID, ErrNoFreePort)
			}
			break
		}
		// libxl adds a default controller when none has a free port.
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
