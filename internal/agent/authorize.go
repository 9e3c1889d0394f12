package agent

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"slices"
	"strings"
	"syscall"
	"time"

	"github.com/usbhotplugd/usbhotplugd/internal/usbsysfs"
	"github.com/usbhotplugd/usbhotplugd/policy"
)

// Authorization before probe ([agent] authorize = "before-probe"): each
// root hub's interface_authorized_default is 0, so the kernel creates a
// new device's interfaces deauthorized and no dom0 driver probes them.
// The pass decides first: to a guest, the interfaces are authorized and
// bound to usbback (or left for QEMU) by the attach; to dom0 (a deny rule,
// no rule, a guard), they are authorized and offered to dom0's drivers;
// a device waiting for its guest, or one the policy refuses, stays inert;
// a block rule keeps it inert for good. Devices present before the mode
// was on keep their drivers.
//
// InertRoot records, by root hub, that the agent set its default to 0,
// so that a restart after a crash (the host stays safe: new devices stay
// inert) knows the defaults are its own to give back when the mode is
// turned off; a clean stop gives them back at once.
const InertRoot = "/tool/usbhotplugd/inert"

func inertPath(hub string) string { return InertRoot + "/" + hub }

// deauthorized lists the interfaces of d no driver may probe.
func deauthorized(d usbsysfs.Device) []string {
	var out []string
	for _, in := range d.Interfaces {
		if !in.Authorized {
			out = append(out, in.Name)
		}
	}
	return out
}

// reconcileRootHub is the pass over a root hub. It is never decided (a hub
// never goes to a guest) and has no audit record; it keeps the root hub's
// interface_authorized_default as the mode says. A root hub comes while
// the agent runs when a host controller does (a Thunderbolt dock's xHCI, a
// PCIe card, a controller whose driver was bound again): its add is when
// it is made inert, before the devices on its ports are enumerated (the
// hub driver waits for each connection to be stable for 100 ms first,
// hub.c's HUB_DEBOUNCE_STABLE), so that they come inert as on the
// controllers present at the start. A reload that turns the mode on or
// off sets or gives back every root hub's default; a root hub that left
// takes its record with it.
func (a *Agent) reconcileRootHub(ctx context.Context, hub string, trig Trigger) {
	start := time.Now()
	o := observation{busid: hub, trigger: trig}
	dev, err := a.h.Sys.Device(hub)
	// Its lock is held while any device on its ports is enumerated and
	// probed; what the pass needs of it, its default, needs none, and
	// must be set before the next device on it is enumerated.
	busy := errors.Is(err, usbsysfs.ErrBusy)
	if busy {
		dev, err = usbsysfs.Device{BusID: hub}, nil
	}
	if err == nil {
		o.hubDefault, err = a.h.Sys.InterfaceAuthorizedDefault(hub)
	}
	switch {
	case errors.Is(err, fs.ErrNotExist) || errors.Is(err, syscall.ENODEV):
		a.rootHubGone(ctx, hub, start)
		return
	case err != nil:
		a.fail(ctx, Audit{BusID: hub, Trigger: trig}, "observe", err, start)
		return
	}
	if !busy {
		a.remember(hub, dev, true)
	}
	o.present, o.probed, o.dev = true, true, dev
	a.mu.Lock()
	o.hubOurs = a.inert[hub]
	o.last, o.known = a.status[hub]
	a.mu.Unlock()
	var p plan
	planRootHub(&p, o, a.world())
	for _, s := range p.steps {
		if err := a.do(ctx, o, s, &start); err != nil {
			a.fail(ctx, Audit{BusID: hub, Trigger: trig, ID: dev.ID(), Name: strings.TrimSpace(dev.Manufacturer + " " + dev.ProductName)}, s.kind.String(), err, start)
			return
		}
	}
	a.rootHubDone(hub, o.known)
}

// rootHubGone forgets a root hub that left the host (its controller
// removed), and its record: a root hub that comes with its bus number
// later starts with the kernel's default.
func (a *Agent) rootHubGone(ctx context.Context, hub string, start time.Time) {
	a.remember(hub, usbsysfs.Device{}, false)
	a.forgetPlugged(hub)
	a.mu.Lock()
	ours := a.inert[hub]
	delete(a.inert, hub)
	_, known := a.status[hub]
	a.mu.Unlock()
	if ours && !a.cfg.DryRun {
		if err := rmOpt(ctx, a, inertPath(hub)); err != nil {
			a.fail(ctx, Audit{BusID: hub, Trigger: Trigger(hub + " left")}, "rm-inert", err, start)
			return
		}
	}
	a.rootHubDone(hub, known)
}

// rootHubDone ends a root hub's pass that did what it had to: a failure
// it had recorded (its only kind of record) is over.
func (a *Agent) rootHubDone(hub string, known bool) {
	a.succeeded(hub)
	if !known {
		return
	}
	a.mu.Lock()
	delete(a.status, hub)
	a.dirty = true
	a.mu.Unlock()
}

// planRootHub keeps a root hub's default as the mode says.
func planRootHub(p *plan, o observation, w world) {
	if !o.dev.IsRootHub() || w.dryRun {
		return
	}
	switch {
	case w.authorize && o.hubDefault:
		p.add(step{kind: stepHubInert})
	case !w.authorize && o.hubOurs && !o.hubDefault:
		p.add(step{kind: stepHubRestore})
	}
}

// planToDom0: with the mode on, a device the policy leaves to dom0 has
// its deauthorized interfaces authorized and offered to dom0's drivers (a
// hub at once, or its children never appear).
//
// With the mode off, so is a device the agent itself kept inert (its last
// record, made while the mode was on or by a block rule, says so) that the
// policy now leaves to dom0: a reload that turns the mode off or drops
// the block rule does not leave it without drivers for good. So is one
// whose giving record a pass before (of either mode) left.
func planToDom0(p *plan, o observation, rec *Audit, w world) {
	keptInert := o.known && len(o.last.Deauthorized) > 0 &&
		(o.last.Action == ActPending || o.last.Action == ActRefused || o.last.Action == ActBlocked)
	marked := slices.ContainsFunc(p.steps, func(s step) bool { return s.kind == stepMarkGiving })
	// A give-back a kill cut short (o.giving) is finished in either mode:
	// the mode may have been turned off since, and what it left has no
	// driver and nothing else that says it is dom0's.
	if !o.giving && !marked && (!w.authorize && !keptInert || len(rec.Deauthorized) == 0) {
		return
	}
	if w.authorize || keptInert {
		rec.Reason += "; its interfaces are authorized and offered to dom0's drivers"
	}
	if !w.dryRun {
		p.add(step{kind: stepToDom0, fresh: marked})
	}
}

// keptInert says that a device the policy does not give dom0 yet stays
// inert meanwhile.
func keptInert(o observation, rec *Audit, w world) {
	if w.authorize && len(rec.Deauthorized) > 0 {
		rec.Reason += "; it stays inert meanwhile (its interfaces deauthorized: no driver in dom0 probes it)"
	}
}

// planBlock deauthorizes what of a blocked device is authorized (its
// drivers are unbound by the kernel then).
func planBlock(p *plan, o observation, w world) {
	if w.dryRun {
		return
	}
	if len(deauthorized(o.dev)) < len(o.dev.Interfaces) {
		p.add(step{kind: stepBlock})
	}
}

// An authorizer is what the steps need of sysfs.
type authorizer interface {
	SetInterfaceAuthorized(intf string, on bool) error
	Probe(intf string) error
}

// givingPath is the record of a device being given to dom0: written
// before its interfaces are authorized and removed once they were offered
// to dom0's drivers, so that a crash between the two (authorized, never
// probed, and so without a driver for good) is finished by the next pass.
func givingPath(busid string) string { return GivingRoot + "/" + nodeName(busid) }

// GivingRoot holds the records of devices being given to dom0.
const GivingRoot = "/tool/usbhotplugd/giving"

// markGiving records that a device the policy leaves to dom0 is being
// given to it, before a detach or release takes it from usbback: an
// interface there may have no driver record (it went there inert, with
// the mode on, and no dom0 driver ever had it; or usbback bound it by
// itself, at a plug while its port was set), and a crash after it left
// usbback and before it was offered to dom0's drivers would leave it
// without one for good. Either mode: the record is read in every pass
// anyway. The to-dom0 step that ends the pass offers it and drops the
// record.
func markGiving(p *plan, dec policy.Decision) {
	if dec.Action == policy.Deny || dec.Action == policy.None {
		p.add(step{kind: stepMarkGiving})
	}
}

// writeGiving writes busid's giving record.
func (a *Agent) writeGiving(ctx context.Context, busid string) error {
	if err := a.h.XS.Write(ctx, givingPath(busid), []byte("1")); err != nil {
		return fmt.Errorf("recording that %s goes to dom0: %w", busid, err)
	}
	return nil
}

// giveToDom0 authorizes o's deauthorized interfaces and offers them to
// dom0's drivers; after a crash half-way (o.giving), the authorized ones
// still without a driver are offered again. fresh: a step before it took
// the device from usbback, so it is read again, and what has no driver
// is offered.
func (a *Agent) giveToDom0(ctx context.Context, o observation, fresh bool) error {
	if fresh {
		dev, err := a.h.Sys.Device(o.busid)
		if errors.Is(err, fs.ErrNotExist) {
			return rmOpt(ctx, a, givingPath(o.busid)) // it left: nothing to give
		}
		if err != nil {
			return err
		}
		o.dev, o.giving = dev, true
	}
	// Fresh: the mark-giving step before the detach wrote it already.
	if !fresh {
		if err := a.writeGiving(ctx, o.busid); err != nil {
			return err
		}
	}
	if err := toDom0(a.h.Sys, o.dev, o.giving); err != nil {
		return err
	}
	return rmOpt(ctx, a, givingPath(o.busid))
}

func toDom0(sys authorizer, d usbsysfs.Device, again bool) error {
	var errs []error
	for _, in := range d.Interfaces {
		if in.Authorized && (!again || in.Driver != "") {
			continue
		}
		// One a give-back cut short left authorized is only offered.
		if !in.Authorized {
			if err := sys.SetInterfaceAuthorized(in.Name, true); err != nil {
				errs = append(errs, err)
				continue
			}
		}
		// No driver matching it is no failure: it stays without one.
		if err := sys.Probe(in.Name); err != nil && !errors.Is(err, syscall.ENODEV) {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

func block(sys authorizer, d usbsysfs.Device) error {
	var errs []error
	for _, in := range d.Interfaces {
		if in.Authorized {
			errs = append(errs, sys.SetInterfaceAuthorized(in.Name, false))
		}
	}
	return errors.Join(errs...)
}

// setHubDefault sets a root hub's interface_authorized_default and keeps
// the record of it.
func (a *Agent) setHubDefault(ctx context.Context, hub string, on bool) error {
	if on {
		if err := a.h.Sys.SetInterfaceAuthorizedDefault(hub, true); err != nil {
			return err
		}
		a.mu.Lock()
		delete(a.inert, hub)
		a.mu.Unlock()
		a.cfg.Log.Info().Str("root_hub", hub).Msg("authorization before probe is off: " + hub + "'s new interfaces are authorized again")
		return rmOpt(ctx, a, inertPath(hub))
	}
	// The record first: a crash right after leaves a record of a default
	// that may still be 1, which a later pass finds and repairs.
	if err := a.h.XS.Write(ctx, inertPath(hub), []byte("0")); err != nil {
		return fmt.Errorf("recording %s's authorization default: %w", hub, err)
	}
	if err := a.h.Sys.SetInterfaceAuthorizedDefault(hub, false); err != nil {
		return err
	}
	a.mu.Lock()
	a.inert[hub] = true
	a.mu.Unlock()
	a.cfg.Log.Info().Str("root_hub", hub).Msg("authorization before probe: the interfaces of devices plugged into " + hub + " come deauthorized until the policy decides")
	return nil
}

// loadInert reads the records of root hubs the agent made inert, and,
// with the mode on, makes every root hub inert before the first pass, so
// nothing plugged from now on reaches a dom0 driver undecided.
func (a *Agent) loadInert(ctx context.Context) error {
	hubs, err := a.h.XS.Directory(ctx, InertRoot)
	if err != nil && !errors.Is(err, fs.ErrNotExist) && !errors.Is(err, syscall.ENOENT) {
		return fmt.Errorf("agent: reading %s: %w", InertRoot, err)
	}
	a.mu.Lock()
	for _, h := range hubs {
		if usbsysfs.ValidBusID(h) == nil && strings.HasPrefix(h, "usb") {
			a.inert[h] = true
		}
	}
	a.mu.Unlock()
	if !a.pol.Load().AuthorizesBeforeProbe() || a.cfg.DryRun {
		return nil
	}
	devs, err := a.h.Sys.Devices()
	unread, err := usbsysfs.Partial(err)
	if err != nil {
		return fmt.Errorf("agent: listing the root hubs: %w", err)
	}
	var roots []string
	for _, d := range devs {
		if d.IsRootHub() {
			roots = append(roots, d.BusID)
		}
	}
	// A root hub whose attributes could not be read is made inert all
	// the same: that takes only its default.
	for _, u := range unread {
		if strings.HasPrefix(u.BusID, "usb") {
			roots = append(roots, u.BusID)
		}
	}
	for _, hub := range roots {
		if on, err := a.h.Sys.InterfaceAuthorizedDefault(hub); err == nil && !on {
			a.mu.Lock()
			a.inert[hub] = true
			a.mu.Unlock()
			continue
		}
		if err := a.setHubDefault(ctx, hub, false); err != nil {
			return fmt.Errorf("agent: authorization before probe: %w", err)
		}
	}
	return nil
}

// RestoreAuthorization gives back, on a clean stop, the root hubs' defaults
// the agent changed: new devices are probed by dom0's drivers again, as
// without the agent. It writes sysfs only (the store may be gone by then);
// the records left are found and dropped by the next start. A crash skips
// it, and the host stays safe.
func (a *Agent) RestoreAuthorization() error {
	a.mu.Lock()
	hubs := make([]string, 0, len(a.inert))
	for h := range a.inert {
		hubs = append(hubs, h)
	}
	a.mu.Unlock()
	var errs []error
	for _, h := range hubs {
		if err := a.h.Sys.SetInterfaceAuthorizedDefault(h, true); err != nil && !errors.Is(err, fs.ErrNotExist) {
			errs = append(errs, err)
			continue
		}
		a.mu.Lock()
		delete(a.inert, h)
		a.mu.Unlock()
	}
	if len(hubs) > 0 {
		a.cfg.Log.Info().Strs("root_hubs", hubs).Msg("stopping: new devices are probed by dom0's drivers again")
	}
	return errors.Join(errs...)
}

// reinert: with the mode on, a device taken from a guest (it is gone, or
// the device goes to another) that the policy still sends to a guest is
// made inert again before it is taken, not given to dom0's drivers
// meanwhile. rec then names its interfaces as the pass leaves them.
func reinert(rec *Audit, o observation, dec policy.Decision, w world) bool {
	if !w.authorize || w.dryRun || dec.Action != policy.Attach {
		return false
	}
	rec.Deauthorized = rec.Deauthorized[:0]
	for _, in := range o.dev.Interfaces {
		rec.Deauthorized = append(rec.Deauthorized, in.Name)
	}
	return true
}
