package agent

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"time"

	"github.com/usbhotplugd/usbhotplugd/internal/assign"
	"github.com/usbhotplugd/usbhotplugd/internal/inventory"
	"github.com/usbhotplugd/usbhotplugd/internal/usbname"
	"github.com/usbhotplugd/usbhotplugd/internal/usbsysfs"
	"github.com/usbhotplugd/usbhotplugd/policy"
)

// secondLook is how long a device half-way through someone else's
// detach is left before it is looked at again.
const secondLook = 200 * time.Millisecond

// reconcile converges one device: observe, plan, apply (see the package
// doc).
func (a *Agent) reconcile(ctx context.Context, busid string, trig Trigger) {
	if id, err := usbname.Parse(busid); err == nil && id.IsRootHub() {
		a.reconcileRootHub(ctx, busid, trig)
		return
	}
	start := time.Now()
	o, err := a.observe(ctx, busid, trig)
	if err == nil && a.replugged(o) {
		// The plug that left is planned for first, as a pass that saw it
		// gone would have (its port cleared, remembered for the new plug),
		// then the one now present.
		gone := o
		gone.trigger = TrigReplugged
		gone.present, gone.probed, gone.dev = false, false, usbsysfs.Device{}
		a.apply(ctx, gone, planGone(gone, a.world()), start)
		// The forget dropped its place among arrivals: it was plugged
		// now, after every device present (duplicates = "first").
		a.notePlugged(busid)
		trig = TrigReplugged
		o, err = a.observe(ctx, busid, trig)
		a.replugged(o) // the new plug's address, which the forget dropped
	}
	if err != nil {
		a.fail(ctx, Audit{BusID: busid, Trigger: trig}, "observe", err, start)
		return
	}
	if o.present && !o.busy {
		a.namePlug(ctx, o) // a busy device's plug is named once it is read
	}
	var dec policy.Decision
	o.pol = a.Policy() // one policy for the whole pass, though a reload swaps it meanwhile
	if o.present && o.probed {
		me, inv := a.policyInput(o)
		if me == nil {
			return // left meanwhile: its remove event follows
		}
		dec = o.pol.Match(me, inv)
		a.noteHeld(o.busid, me.InUse != "" && inventory.Stacked(a.h.Sys, o.dev))
		if dec.Action == policy.Attach && me.InUse == "" {
			release, why := a.stillOpen(o)
			// Until the attach has taken the disks from dom0: the
			// batch's, or this pass's end when it queues none.
			a.hold = release
			defer a.dropHold()
			if me.InUse = why; why != "" {
				dec = o.pol.Match(me, inv)
			}
		}
		// Which twins are attached matters only when it has twins: a
		// storm of identical devices under duplicates = "all" reads none.
		if len(dec.Twins) > 0 {
			a.markAttached(ctx, o, me, inv)
			dec = o.pol.Match(me, inv)
		}
	}
	a.apply(ctx, o, makePlan(o, dec, a.world()), start)
}

// apply runs a plan's steps in order and stops at the first failure,
// which is recorded and retried: every step leaves a state that the next
// pass finishes.
func (a *Agent) apply(ctx context.Context, o observation, p plan, start time.Time) {
	givingBack := false
	for _, s := range p.steps {
		if givingBack && s.kind.touchesDevice() {
			continue
		}
		err := a.do(ctx, o, s, &start)
		if errors.Is(err, assign.ErrGivingBack) {
			// Detached. What of the plan is the store's and the
			// agent's memory goes on (its records, a replug's left
			// port, its twins); what needs the device waits for the
			// pass after the kernel lets go of it: an attach elsewhere
			// would wait for the device's lock.
			givingBack = true
			continue
		}
		if err != nil {
			a.fail(ctx, failRecord(o, p), s.kind.String(), err, start)
			return
		}
	}
}

// stillProbing says whether err is the kernel still at the device (a dom0
// driver's probe, run inside the bind the step wrote): no failure. The
// device is looked at again when the kernel lets go (TrigUnlocked), and
// that pass finishes what this one began.
func (a *Agent) stillProbing(busid, step string, err error) bool {
	if !usbsysfs.OnlyBusy(err) {
		return false // a failure beside it is told
	}
	a.cfg.Log.Info().Str("busid", busid).Str("step", step).Err(err).Msg("the kernel is still at it (a driver's probe): looked at again when it lets go")
	return true
}

// failRecord is the record a failure of plan p is told with: the
// decision it was carrying out.
func failRecord(o observation, p plan) Audit {
	r := Audit{BusID: o.busid, Trigger: o.trigger, ID: o.last.ID, Serial: o.last.Serial, PortPath: o.last.PortPath, Name: o.last.Name}
	for _, s := range p.steps {
		if s.kind == stepAudit || s.kind == stepAttach {
			r = s.rec
		}
	}
	return r
}

func (a *Agent) fail(ctx context.Context, r Audit, step string, err error, start time.Time) {
	if a.stillProbing(r.BusID, step, err) {
		return
	}
	// Queued first (the worker runs it only after this record), so the
	// record says when: an admin reading it knows it is not given up.
	d := a.retryLater(r.BusID)
	r.Action, r.Reason, r.FailedStep = ActFailed, fmt.Sprintf("%v; tried again in %s (the delay doubles, to a minute at most)", err, d), step
	a.audit(ctx, r, start)
}

// do runs one step.
func (a *Agent) do(ctx context.Context, o observation, s step, start *time.Time) error {
	h, busid := a.h, o.busid
	switch s.kind {
	case stepForget:
		a.forget(ctx, busid, o.dev)
	case stepDetach:
		return a.detach(ctx, busid, s.at)
	case stepRememberLeft:
		a.rememberLeft(s.key, s.domain, s.at)
	case stepRelease:
		return a.release(ctx, busid, s)
	case stepRmOwned:
		return rmOpt(ctx, a, ownedPath(busid))
	case stepDropRecords:
		p, err := assign.RecordPath(busid)
		if err != nil {
			return err
		}
		return rmOpt(ctx, a, p)
	case stepEnsureBound:
		if s.held {
			return h.EnsureBoundHeld(ctx, busid)
		}
		return h.EnsureBound(ctx, busid)
	case stepReRecord:
		return h.WriteRecords(ctx, busid, o.owned.Drivers)
	case stepReOwn:
		return a.reOwn(ctx, o, s.rec.Rule)
	case stepEnsureInQEMU:
		return a.ensureInQEMU(ctx, busid, *o.port)
	case stepLookLater:
		if s.probe {
			a.lookAfterProbe(busid)
			break
		}
		a.lookLater(busid, secondLook, s.trigger)
	case stepAttach:
		a.queueAttach(o, s, *start)
	case stepAudit:
		a.audit(ctx, s.rec, *start)
		*start = time.Now()
	case stepRequeue:
		for _, b := range s.busids {
			a.enqueue(b, s.trigger)
		}
	case stepHubInert, stepHubRestore:
		return a.setHubDefault(ctx, busid, s.kind == stepHubRestore)
	case stepMarkGiving:
		return a.writeGiving(ctx, busid)
	case stepRmGiving:
		return rmOpt(ctx, a, givingPath(busid))
	case stepToDom0:
		return a.giveToDom0(ctx, o, s.fresh)
	case stepBlock:
		return block(h.Sys, o.dev)
	}
	return nil
}

// detach takes the device off its port at, and out of the guest.
func (a *Agent) detach(ctx context.Context, busid string, at assign.Assignment) error {
	if err := a.h.DetachOwned(ctx, at, ownedPath(busid)); err != nil {
		if errors.Is(err, assign.ErrGivingBack) {
			// Off its port and out of the guest: detached. Its driver
			// records stay until the kernel is done with the dom0
			// driver's probe, and the pass after that finishes.
			a.setPort(at, false)
			a.cfg.Log.Info().Str("busid", busid).Err(err).Msg("detached; its dom0 driver's probe goes on: given back when the kernel is done")
		}
		return err
	}
	a.setPort(at, false)
	return nil
}

// reOwn writes the ownership record again, of the device kept and by the
// rule that keeps it; the dom0 drivers the attach took from the device
// before are not this one's (usbback bound it by its busid at the plug).
func (a *Agent) reOwn(ctx context.Context, o observation, rule string) error {
	rec := *o.owned
	rec.ID, rec.Serial, rec.Rule, rec.Drivers = o.dev.ID(), o.dev.Serial, rule, nil
	return a.h.XS.Write(ctx, ownedPath(o.busid), []byte(ownedValue(rec)))
}

// ensureInQEMU adds the device to the guest's QEMU where its emulated
// port is set but QEMU does not have it.
func (a *Agent) ensureInQEMU(ctx context.Context, busid string, at assign.Assignment) error {
	added, err := a.h.EnsureInDeviceModel(ctx, at)
	if added {
		a.warn.Warn().Str("busid", busid).Uint32("domid", at.Domid).Msg("its emulated port was set, but the guest's QEMU did not have it (an attach cut short): added again")
	}
	return err
}

// forget drops what the agent remembers of a device that left.
func (a *Agent) forget(ctx context.Context, busid string, dev usbsysfs.Device) {
	a.mu.Lock()
	delete(a.refusedBy, busid)
	delete(a.openDisks, busid)
	delete(a.heldDisks, busid)
	delete(a.plugs, busid)
	a.mu.Unlock()
	a.dropPresent(ctx, busid)
	a.forgetPlugged(busid)
	a.h.Sys.ForgetLate(busid)
	a.remember(busid, dev, false)
	a.mu.Lock()
	delete(a.seenAttached, busid)
	delete(a.offered, busid)
	a.mu.Unlock()
}

// release gives back what of the device is in usbback, and its driver
// records (a release step).
func (a *Agent) release(ctx context.Context, busid string, s step) error {
	var err error
	if s.unbound {
		err = a.h.ReleaseUnbound(ctx, busid)
		if !usbsysfs.OnlyBusy(err) {
			// Offered: its interfaces are dom0's now. Not while the
			// kernel still probes it: the pass after that offers the
			// rest as the agent's still.
			a.mu.Lock()
			delete(a.seenAttached, busid)
			a.offered[busid] = true
			a.mu.Unlock()
		}
	} else {
		err = a.h.Release(ctx, busid)
	}
	if s.lenient && err != nil {
		if !errors.Is(err, fs.ErrNotExist) {
			a.cfg.Log.Debug().Err(err).Str("busid", busid).Msg("release of a gone device")
		}
		return nil
	}
	return err
}

// queueAttach turns an attach step into an intent of the batch.
func (a *Agent) queueAttach(o observation, s step, start time.Time) {
	opts, own := s.attach.opts, s.attach.owned
	dev := o.dev
	opts.Device = &dev
	// A controller of the agent's whose add to QEMU a kill cut short.
	opts.AddMissingController = true
	opts.Record = func(x assign.Assignment, drivers map[string]string) [][2]string {
		rec := own
		rec.Controller, rec.Port, rec.Drivers = x.Controller, x.Port, drivers
		return [][2]string{{ownedPath(o.busid), ownedValue(rec)}}
	}
	release := func() {}
	if a.hold != nil {
		release, a.hold = a.hold, nil
	}
	a.intents = append(a.intents, intent{busid: o.busid, domain: s.attach.domain, domid: s.attach.domid, opts: opts, pinned: s.attach.pinned, rec: s.rec, start: start, release: release, pol: o.pol, giving: o.giving})
}

// dropHold lets go of what the pass held (stillOpen) and no attach took.
func (a *Agent) dropHold() {
	if a.hold != nil {
		a.hold()
		a.hold = nil
	}
}
