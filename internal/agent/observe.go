package agent

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"slices"
	"syscall"

	"github.com/usbhotplugd/usbhotplugd/internal/assign"
	"github.com/usbhotplugd/usbhotplugd/internal/inventory"
	"github.com/usbhotplugd/usbhotplugd/internal/usbsysfs"
	"github.com/usbhotplugd/usbhotplugd/internal/xenstore"
	"github.com/usbhotplugd/usbhotplugd/policy"
)

// observe reads one device's whole state at once: sysfs, its port, its
// ownership and driver records, and what the agent knows of it.
func (a *Agent) observe(ctx context.Context, busid string, trig Trigger) (observation, error) {
	o := observation{busid: busid, trigger: trig}
	// The store's reads are sent before sysfs is read and their replies
	// taken after: the pass waits for one round trip less, with no
	// goroutine to start (one the scheduler ran only once the worker
	// blocked would overlap nothing).
	q, qerr := a.sendObserveStore(ctx, busid)
	dev, err := a.h.Sys.Device(busid)
	serr := qerr
	if serr == nil {
		// In usbback at no port remembered: what gives it back to dom0
		// rests on the store, not on memory.
		q.suspect = err == nil && anyUsbback(dev)
		serr = a.observeStore(ctx, q, &o)
	}
	switch {
	case err == nil:
		o.present, o.dev = true, dev
	case errors.Is(err, syscall.ENODEV):
		// A device being removed answers its attributes' reads with
		// ENODEV before its directory goes: it is leaving.
	case errors.Is(err, usbsysfs.ErrBusy):
		// The kernel holds it (a driver probing it for long, a reset):
		// probing, looked at again when the kernel lets go (Unlocked).
		o.present, o.busy = true, true
	case !errors.Is(err, fs.ErrNotExist):
		return o, err
	}
	if serr != nil {
		return o, serr
	}
	if o.busy {
		return o, nil // not probed
	}
	if err := a.readPortAfter(ctx, &o); err != nil {
		return o, err
	}
	a.recall(&o)
	if !o.present {
		return o, nil
	}
	// Probed: its driver link is made after its interfaces exist and
	// were offered to their drivers.
	drv, _ := a.h.Sys.Driver(busid)
	o.probed = drv != "" && len(dev.Interfaces) >= dev.NumInterfaces
	if dev.IsRootHub() {
		o.hubDefault, _ = a.h.Sys.InterfaceAuthorizedDefault(busid)
	}
	return o, nil
}

// readPortAfter reads the port of a device at a port with a dom0 driver
// again: xl's detach binds dom0's drivers back only after it has cleared
// the port, so the port still set, read after the drivers were, says no
// detach is under way.
func (a *Agent) readPortAfter(ctx context.Context, o *observation) error {
	if o.port == nil || !o.present || !dom0Driver(o.dev) {
		return nil
	}
	p, ok := assign.PortPath(*o.port)
	if !ok {
		return nil
	}
	v, err := a.h.XS.Read(ctx, p)
	if err != nil && !errors.Is(err, syscall.ENOENT) {
		return err
	}
	o.portAfter = err == nil && string(v) == o.busid
	return nil
}

// recall adds to o what the agent remembers of the device.
func (a *Agent) recall(o *observation) {
	busid, dev := o.busid, o.dev
	a.mu.Lock()
	if o.port != nil || o.record || o.present && anyUsbback(o.dev) {
		a.seenAttached[busid] = true // attached again: its interfaces are ours again
	}
	o.ours = a.seenAttached[busid] || o.owned != nil && (!o.present || o.owned.of(o.dev)) && !a.offered[busid]
	o.last, o.known = a.status[busid]
	o.backoff = rollbackEcho(o.trigger) && a.backingOffLocked(busid)
	for b, st := range a.status {
		if slices.Contains(st.Twins, busid) {
			o.twinOf = append(o.twinOf, b)
		}
	}
	if o.present {
		if l, ok := a.left[identity(dev.ID(), dev.Serial, busid)]; ok {
			o.left = &l
		}
		o.hubOurs = a.inert[busid]
		if r, ok := a.refusedBy[busid]; ok && r.devnum == dev.DevNum {
			o.refusedBy = r.reason
		}
	}
	a.mu.Unlock()
	sortBusIDs(o.twinOf)
}

// A storeQuery is observeStore's reads, sent.
type storeQuery struct {
	pend   *xenstore.PendingReads
	hint   assign.Assignment
	hinted bool // the remembered port is read too (third)
	// suspect: an interface of it is in usbback; at no remembered port,
	// every port is read (a port xl wrote that the watch has not told yet).
	suspect bool
}

// sendObserveStore sends the reads of the ownership record, the driver
// records, the remembered port and the giving record, together: one round
// trip.
func (a *Agent) sendObserveStore(ctx context.Context, busid string) (storeQuery, error) {
	recPath, err := assign.RecordPath(busid)
	if err != nil {
		return storeQuery{}, err
	}
	paths := []string{ownedPath(busid), recPath}
	var q storeQuery
	q.hint, q.hinted = a.portOf(busid)
	if q.hinted {
		p, ok := assign.PortPath(q.hint)
		if q.hinted = ok && usbsysfs.ValidBusID(q.hint.BusID) == nil; q.hinted {
			paths = append(paths, p)
		}
	}
	// The giving record last, whatever the mode: a restart that turned
	// authorization before probe off still finishes a give-back a kill
	// cut short. In the same batch, so no round trip more.
	paths = append(paths, givingPath(busid))
	q.pend = a.h.XS.StartReadMany(ctx, paths)
	return q, nil
}

// observeStore takes the replies of q. A remembered port is confirmed by
// that read; a device remembered at no port is taken as at none (the
// attach checks every domain inside its transaction, and the store watch
// tells of ports that xl writes), unless it has driver records, is in
// usbback or has an ownership record: then every port is read, since such
// a device is given back to dom0 (or taken for held) when it is at none.
func (a *Agent) observeStore(ctx context.Context, q storeQuery, o *observation) error {
	hint, hinted := q.hint, q.hinted
	vals, errs := q.pend.Wait(ctx)
	last := len(vals) - 1
	o.giving = errs[last] == nil
	if err := errs[last]; err != nil && !errors.Is(err, syscall.ENOENT) {
		return err
	}
	vals, errs = vals[:last], errs[:last]
	owned, oerr := parseOwned(o.busid, vals[0], errs[0])
	if errors.Is(oerr, errBadRecord) {
		a.warn.Warn().Err(oerr).Msg("ignoring it")
		owned, oerr, o.badOwned = nil, nil, true
	}
	if oerr != nil {
		return oerr
	}
	o.owned = owned
	o.record = errs[1] == nil
	if err := errs[1]; err != nil && !errors.Is(err, syscall.ENOENT) {
		return err
	}
	switch {
	case hinted:
		if err := errs[2]; err != nil && !errors.Is(err, syscall.ENOENT) {
			return err
		} else if err == nil && string(vals[2]) == hint.BusID {
			o.port = &hint
			return nil
		}
	case !o.record && !q.suspect && o.owned == nil:
		// At no port. An own device is looked for all the same: at an
		// emulated port it has no driver records, and a rescan that read
		// the store between a detach's clear and its write-back may have
		// lost its port (it would be taken for held).
		return nil
	}
	all, err := a.h.Assigned(ctx)
	if err != nil {
		return err
	}
	a.takePorts(o, all)
	return a.readOwnedPort(ctx, o)
}

// readOwnedPort reads, for an own device at no port that is still in
// usbback, whether the port its ownership record names is there and
// empty (emptied while the device stayed in usbback; see backToItsGuest)
// rather than gone with its controller (a guest being destroyed).
func (a *Agent) readOwnedPort(ctx context.Context, o *observation) error {
	w := o.owned
	if o.port != nil || w == nil || o.displacedBy != "" || !allUsbback(o.dev) {
		return nil
	}
	// In usbback: a pv controller's port (usbback serves no other).
	path, ok := assign.PortPath(assign.Assignment{Domid: w.Domid, Controller: w.Controller, Port: w.Port, Type: policy.TypePV})
	if !ok {
		return nil // a record naming no port there can be
	}
	v, err := a.h.XS.Read(ctx, path)
	switch {
	case err == nil:
		o.ownedPortEmpty = len(v) == 0
	case !errors.Is(err, syscall.ENOENT):
		return fmt.Errorf("agent: reading %s: %w", path, err)
	}
	return nil
}

// takePorts finds o's port, or the device at its ownership record's port,
// in a read of every port. A device whose port the read finds another
// holds (xl wrote over it) or none (a detach the watch has not told yet)
// is looked at too: no watch event may be left to tell of it.
func (a *Agent) takePorts(o *observation, all []assign.Assignment) {
	for _, b := range a.noteAssigned(all) {
		if b != o.busid {
			a.enqueue(b, TrigPortChanged)
		}
	}
	for i := range all {
		if all[i].BusID == o.busid {
			o.port = &all[i]
			return
		}
	}
	for _, x := range all {
		if w := o.owned; w != nil && x.Domid == w.Domid && x.Controller == w.Controller && x.Port == w.Port {
			o.displacedBy = x.BusID
		}
	}
}

// policyInput is what the policy decides on: the device among every
// present one, with what dom0 uses of it. nil when it left meanwhile.
func (a *Agent) policyInput(o observation) (*policy.Device, []policy.Device) {
	inv := a.inventory(a.remember(o.busid, o.dev, true))
	var me *policy.Device
	for i := range inv {
		if inv[i].BusID == o.busid {
			me = &inv[i]
		}
	}
	if me == nil {
		return nil, nil
	}
	me.InUse = inventory.InUse(a.h.Sys, o.dev, a.cfg.Mountinfo)
	return me, inv
}

// markAttached tells which of me's twins (same vendor:product) are
// attached, at a port or waiting for their guest: the ownership records
// of those at no port are read in one round trip.
func (a *Agent) markAttached(ctx context.Context, o observation, me *policy.Device, inv []policy.Device) {
	ports := a.portList()
	var ask []*policy.Device
	var paths []string
	for i := range inv {
		t := &inv[i]
		if t.Vendor != me.Vendor || t.Product != me.Product {
			continue
		}
		t.Attached = slices.ContainsFunc(ports, func(x assign.Assignment) bool { return x.BusID == t.BusID })
		switch {
		case t.Attached:
		case t.BusID == o.busid:
			// A record of another device (swapped at this busid while the
			// agent was down) gives this one no place among its twins.
			t.Attached = o.owned != nil && o.owned.of(o.dev)
		default:
			ask = append(ask, t)
			paths = append(paths, ownedPath(t.BusID))
		}
	}
	if len(paths) == 0 {
		return
	}
	vals, errs := a.h.XS.ReadMany(ctx, paths)
	for i, t := range ask {
		ow, _ := parseOwned(t.BusID, vals[i], errs[i])
		t.Attached = ow != nil && ow.ofTwin(t)
	}
}

// world is the domains as last read, and the mode.
func (a *Agent) world() world {
	a.mu.Lock()
	defer a.mu.Unlock()
	return world{domains: a.domains, dryRun: a.cfg.DryRun, authorize: a.pol.Load().AuthorizesBeforeProbe()}
}
