package agent

import (
	"fmt"
	"slices"
	"strconv"
	"strings"

	"github.com/usbhotplugd/usbhotplugd/internal/assign"
	"github.com/usbhotplugd/usbhotplugd/internal/uevent"
	"github.com/usbhotplugd/usbhotplugd/internal/usbsysfs"
	"github.com/usbhotplugd/usbhotplugd/policy"
)

// An observation is one device's whole state, read at once by observe.
type observation struct {
	busid   string
	trigger Trigger
	pol     *policy.Policy // what the pass decides by
	present bool
	dev     usbsysfs.Device // when present and not busy
	probed  bool            // the kernel is done probing it
	busy    bool            // present, its device lock held (usbsysfs.ErrBusy): not read
	port    *assign.Assignment
	owned   *Owned
	record  bool // /libxl/usbback holds driver records for it
	last    Audit
	known   bool     // last is set: it has a status entry
	twinOf  []string // devices whose last decision names it as their twin
	left    *leftPort
	// A root hub's: its interface_authorized_default is 1, and the agent
	// set it to 0 (this run or one before it).
	hubDefault, hubOurs bool
	// badOwned: its ownership record is there but cannot be read
	// (another version's, or written by hand): ignored, and removed
	// when the device leaves.
	badOwned bool
	// giving: a pass began giving it to dom0 and may not have finished
	// (its giving record says so).
	giving bool
	// refusedBy: usbback refused this plug of it (why).
	refusedBy string
	// portAfter: a dom0 driver has an interface of it, and its port,
	// read again after the drivers were, still holds it.
	portAfter bool
	// ours: the agent attached it (its ownership record), or saw it at a
	// port or in usbback since it was plugged. Only then is an interface
	// of it without a driver the agent's (or xl's) to give back.
	ours bool
	// displacedBy: at no port, its ownership record's port holds this
	// other device (xl, which picks its port before its transaction,
	// wrote over the agent's attach).
	displacedBy string
	// ownedPortEmpty: at no port, still in usbback, and its ownership
	// record's port is there, empty.
	ownedPortEmpty bool
	// backoff: its last attempt failed, the retry is not due yet, and
	// this pass comes of a driver's bind or unbind or its port cleared
	// (what the failed attach's own rollback makes): it is not tried
	// again before the retry.
	backoff bool
}

// nameOf is the name of the running domain domid ("" when none runs
// with that id).
func (w world) nameOf(domid uint32) string {
	for name, ids := range w.domains {
		if slices.Contains(ids, domid) {
			return name
		}
	}
	return ""
}

// migratedAway ends the name xl gives the sending host's copy of a guest
// that migrated, until it destroys that copy.
const migratedAway = "--migratedaway"

// The world is what a plan needs beside the device: the running domains
// by name (two entries when two domains share a name) and the mode.
type world struct {
	domains   map[string][]uint32
	dryRun    bool
	authorize bool // [agent] authorize = "before-probe"
}

// A plan is the steps of one pass and the state they leave the device in.
type plan struct {
	state State
	steps []step
}

func (p *plan) add(s step) { p.steps = append(p.steps, s) }

// audit adds r as a record when it differs from the device's last one
// (or when the plan has recorded something already), so that a rescan
// repeats nothing.
func (p *plan) audit(o observation, r Audit) {
	for _, s := range p.steps {
		if s.kind == stepAudit {
			p.add(step{kind: stepAudit, rec: r})
			return
		}
	}
	if o.known && sameDecision(o.last, r) {
		return
	}
	p.add(step{kind: stepAudit, rec: r})
	// Its twins' reasons name what it is (attached, refused, at which
	// port): when that changes they are looked at again. A change of its
	// reason alone tells them nothing, so twins never wake each other up
	// for ever.
	moved := !o.known || o.last.Action != r.Action || o.last.Domid != r.Domid || o.last.Port != r.Port || o.last.Ctrl != r.Ctrl
	if twins := twinsToTell(o, r); moved && len(twins) > 0 {
		p.add(step{kind: stepRequeue, busids: twins, trigger: TrigTwinChanged})
	}
}

func sameDecision(last, r Audit) bool {
	same := last.Action == r.Action || last.Action == ActAttached && r.Action == ActKept
	return same && last.Reason == r.Reason && last.Domid == r.Domid && last.Ctrl == r.Ctrl && last.Port == r.Port
}

func twinsToTell(o observation, r Audit) []string {
	out := slices.Clone(o.twinOf)
	for _, b := range r.Twins {
		if !slices.Contains(out, b) {
			out = append(out, b)
		}
	}
	sortBusIDs(out)
	return out
}

// makePlan is the pass over one device: a pure function of what observe
// read, the policy's decision and the domains. It does no I/O.
func makePlan(o observation, dec policy.Decision, w world) plan {
	if !o.present {
		return planGone(o, w)
	}
	if !o.probed {
		return planProbing(o, w)
	}
	rec := baseRecord(o, dec)
	t := resolveTarget(dec, w)
	var p plan
	planRootHub(&p, o, w)
	if o.port != nil {
		if done := planAtPort(&p, o, dec, t, rec, w); done {
			return p
		}
		reinert(&rec, o, dec, w)
	} else if (o.record || anyUsbback(o.dev) || o.ours && unbound(o.dev)) && !backToItsGuest(o, dec, t) {
		// At no port, yet something of it is in usbback, or an interface
		// of a device that was attached has no driver: a detach cut short,
		// or xl (or libxl's destroy) in the middle of giving it back:
		// looked at again shortly rather than raced. The first pass after
		// a start repairs at once: readiness promises the invariants.
		if !w.dryRun && o.trigger != TrigStart && o.trigger != TrigAfterCleared {
			return plan{state: StSettling, steps: []step{{kind: stepLookLater, trigger: TrigAfterCleared}}}
		}
		if !w.dryRun {
			gone := guestGone(o, w)
			why := o.busid + " was left in usbback, with driver records or, once attached, without a driver at no port" + gone + ": given back to its dom0 drivers"
			if reinert(&rec, o, dec, w) {
				p.add(step{kind: stepBlock})
				why = o.busid + " was left in usbback at no port" + gone + ": made inert again, since the policy sends it to a guest (authorization before probe)"
			} else {
				markGiving(&p, dec)
			}
			p.add(step{kind: stepRelease, unbound: o.ours})
			p.add(step{kind: stepAudit, rec: Audit{BusID: o.busid, ID: rec.ID, Trigger: o.trigger, Action: ActReleased, Reason: why}})
		}
	}
	if o.port == nil && !o.dev.IsRootHub() && o.dev.Unconfigured {
		planUnconfigured(&p, o, rec)
		return p
	}
	planDecision(&p, o, dec, t, rec, w)
	return p
}

// backToItsGuest says o is an own device that nobody detached, which
// goes back to its guest without passing through dom0: at no port, all of
// it still in usbback, its guest running under the same name, the policy
// still sending it there, and its ownership record's port now holding
// another device or nothing. xl's detach and the agent's give a device
// back to dom0 before they clear its port; what takes a port from a device
// that stays in usbback is xl's attach, which picks its port outside its
// transaction and writes its device over (and, when its bind fails, writes
// the port empty again). A port gone with its controller (a guest being
// destroyed) is none of these.
func backToItsGuest(o observation, dec policy.Decision, t target) bool {
	w := o.owned
	return o.port == nil && w != nil && (o.displacedBy != "" || o.ownedPortEmpty) &&
		dec.Action == policy.Attach && t.running && len(t.several) == 0 &&
		w.Domain == t.name && w.Domid == t.domid && w.of(o.dev) &&
		len(o.dev.Interfaces) > 0 && allUsbback(o.dev)
}

// planDisplaced plans for an own device that backToItsGuest sends back:
// to its port again if that is free, else to another.
func planDisplaced(p *plan, o observation, dec policy.Decision, t target, rec Audit, w world) {
	if o.displacedBy != "" {
		rec.Reason += fmt.Sprintf("; its port %d:%d at %s was written over with %s by someone else (xl chooses its port before its transaction): attached again",
			o.owned.Controller, o.owned.Port, t.name, o.displacedBy)
	} else {
		rec.Reason += fmt.Sprintf("; its port %d:%d at %s was emptied while it stayed in usbback, which no detach does (xl's and the agent's give a device back to dom0 first; an xl usbdev-attach that wrote over the port and then failed does): attached again",
			o.owned.Controller, o.owned.Port, t.name)
	}
	planAttach(p, o, dec, t, o.owned, rec, w)
}

// guestGone says, of a device the agent attached to a guest that no
// longer runs, that the guest is gone: what left it in usbback (a destroy
// gives no USB device back), which the admin would otherwise take for a
// crash of the agent's.
func guestGone(o observation, w world) string {
	if o.owned == nil || w.nameOf(o.owned.Domid) != "" {
		return ""
	}
	return fmt.Sprintf(" (its guest %s, domid %d, whose port %d:%d it had, is gone)", o.owned.Domain, o.owned.Domid, o.owned.Controller, o.owned.Port)
}

// planUnconfigured plans for a device at no port that the kernel has not
// configured: not authorized (its root hub's authorized_default is 0, as
// USBGuard or usbcore.authorized_default=0 set it, or 0 was written to its
// authorized), none of its configurations could be chosen, or 0 was
// written to bConfigurationValue. It has no interfaces, so a rule that
// looks at them (a deny of storage) cannot be told, and usbback would have
// nothing to bind: nothing is decided. It waits, said once; its
// configuration's interfaces' add events bring it back.
func planUnconfigured(p *plan, o observation, rec Audit) {
	rec.Rule, rec.RuleNo, rec.RuleAt, rec.Domain, rec.Twins, rec.Deauthorized = "", 0, "", "", nil, nil
	why := "it has no active configuration (bConfigurationValue is empty)"
	if !o.dev.Authorized {
		why = "it is not authorized (authorized is 0: its root hub's authorized_default, USBGuard or an admin)"
	}
	rec.Action, p.state = ActPending, StPending
	rec.Reason = fmt.Sprintf("%s waits: %s, so the kernel has made none of its interfaces and the policy cannot be applied; it is decided once it is configured", o.busid, why)
	p.audit(o, rec)
}

// planProbing plans for a device the kernel has not finished probing (or
// whose lock it holds): nothing is decided. A device with a status entry
// keeps it: its bind (or the kernel letting go) brings it back. One
// without would be missing from status for as long as that takes, or for
// good when the usb bus's drivers_autoprobe is 0: it is recorded as
// waiting, why, and what binds it, except at a kernel event of the probe
// itself, which is looked at again a little later instead.
func planProbing(o observation, w world) plan {
	p := plan{state: StProbing}
	if o.known {
		return p
	}
	if isKernelTrigger(o.trigger) {
		p.add(step{kind: stepLookLater, trigger: TrigProbeLook, probe: true})
		return p
	}
	d := o.dev
	rec := Audit{BusID: o.busid, Trigger: o.trigger, Action: ActPending}
	var why string
	switch {
	case o.busy:
		why = "the kernel holds its device lock (a driver's probe or a reset is taking long), so it cannot be read; it is read and decided once the kernel lets go"
	default:
		rec.ID, rec.Serial, rec.PortPath, rec.Name = d.ID(), d.Serial, d.PortPath, strings.TrimSpace(d.Manufacturer+" "+d.ProductName)
		why = fmt.Sprintf("the kernel has bound it to no driver (its probe is under way, or %s is 0), so the policy is not applied yet; it is decided once it is bound (echo %s > %s)",
			"/sys/bus/usb/drivers_autoprobe", o.busid, "/sys/bus/usb/drivers_probe")
		if len(d.Interfaces) < d.NumInterfaces {
			why = fmt.Sprintf("the kernel has made %d of its %d interfaces so far, so the policy is not applied yet; it is decided once its probe ends", len(d.Interfaces), d.NumInterfaces)
		}
	}
	if x := o.port; x != nil {
		rec.Domid, rec.Ctrl, rec.Port, rec.Domain = int(x.Domid), x.Controller, x.Port, w.nameOf(x.Domid)
		why += fmt.Sprintf("; it is at domain %d port %d:%d", x.Domid, x.Controller, x.Port)
	}
	name := o.busid
	if rec.ID != "" {
		name += " (" + rec.ID + ")"
	}
	rec.Reason = name + " waits: " + why
	p.audit(o, rec)
	return p
}

// isKernelTrigger says t is a kernel event's (kernelTrigger).
func isKernelTrigger(t Trigger) bool { return uevent.KnownAction(string(t)) }

// baseRecord is the audit record of the pass before its action.
func baseRecord(o observation, dec policy.Decision) Audit {
	d := o.dev
	rec := Audit{BusID: o.busid, Trigger: o.trigger, ID: d.ID(), Serial: d.Serial, PortPath: d.PortPath, Name: strings.TrimSpace(d.Manufacturer + " " + d.ProductName),
		Reason: dec.Reason, Twins: dec.Twins, Deauthorized: deauthorized(d)}
	if dec.Rule != nil {
		rec.Rule, rec.RuleNo = dec.Rule.Name, dec.Rule.Index
		rec.RuleAt = fmt.Sprintf("%s:%d", dec.Rule.File, dec.Rule.Line)
	}
	if dec.Action == policy.Attach {
		rec.Domain = dec.Target.Domain
	}
	return rec
}

// A target is the decision's domain as the world has it.
type target struct {
	name    string
	domid   uint32
	running bool     // exactly one domain of that name runs
	several []uint32 // the domids, when more than one runs with the name
}

func resolveTarget(dec policy.Decision, w world) target {
	if dec.Action != policy.Attach {
		return target{}
	}
	t := target{name: dec.Target.Domain}
	switch ids := w.domains[t.name]; len(ids) {
	case 0:
	case 1:
		t.domid, t.running = ids[0], true
	default:
		t.several = slices.Sorted(slices.Values(ids))
	}
	return t
}

// planAtPort plans for a device found at a port; true when the pass ends
// there.
func planAtPort(p *plan, o observation, dec policy.Decision, t target, rec Audit, w world) bool {
	x := *o.port
	mine := o.owned != nil && o.owned.Domid == x.Domid && o.owned.Controller == x.Controller && o.owned.Port == x.Port
	rec.Domid, rec.Ctrl, rec.Port = int(x.Domid), x.Controller, x.Port
	// The record tells where it is: the domain of that port, whatever
	// the policy's target (said in the reason); a guest migrating away
	// keeps its own name.
	if n := w.nameOf(x.Domid); !strings.HasSuffix(n, migratedAway) {
		rec.Domain = n
	}
	if t.running && x.Domid == t.domid || slices.Contains(t.several, x.Domid) {
		planKept(p, o, t, rec, mine, w)
		return true
	}
	if !mine && (dec.Rule == nil || !dec.Rule.Takeover) {
		rec.Action = ActLeft
		rec.Reason = fmt.Sprintf("%s is at domain %d port %d:%d, attached by someone else: left there (the policy says: %s; a rule with takeover = true would move it)",
			o.busid, x.Domid, x.Controller, x.Port, dec.Reason)
		p.state = StForeign
		p.audit(o, rec)
		return true
	}
	if mine && slices.Contains(w.domains[o.owned.Domain+migratedAway], x.Domid) {
		// xl has sent the guest to another host and will destroy this
		// copy, or rename it back if the migration fails: nothing is
		// raced with either; the device is given back when the copy goes.
		rec.Action, p.state = ActKept, StAttached
		rec.Reason = fmt.Sprintf("%s stays at domain %d port %d:%d while %s migrates away (the domain is %s%s): given back to dom0 when it is gone",
			o.busid, x.Domid, x.Controller, x.Port, o.owned.Domain, o.owned.Domain, migratedAway)
		p.audit(o, rec)
		return true
	}
	if !w.dryRun {
		if w.authorize && dec.Action == policy.Attach {
			p.add(step{kind: stepBlock}) // inert again, not dom0's meanwhile
		}
		markGiving(p, dec)
		p.add(step{kind: stepDetach, at: x})
	}
	det := rec
	det.Action, det.Domain, det.Twins = ActDetached, w.nameOf(x.Domid), nil
	det.Reason = fmt.Sprintf("%s detached from %s port %d:%d: %s", o.busid, portDomain(x.Domid, o.owned, mine, w), x.Controller, x.Port, dec.Reason)
	p.add(step{kind: stepAudit, rec: det})
	return false
}

// portDomain names the domain of a port a device is detached from, by its
// name now: a domain renamed since the agent attached the device there
// says so, or the reason would name a rule's target it seems to be.
func portDomain(domid uint32, owned *Owned, mine bool, w world) string {
	n := w.nameOf(domid)
	switch {
	case n == "":
		return fmt.Sprintf("domain %d", domid)
	case mine && owned.Domain != "" && owned.Domain != n:
		return fmt.Sprintf("%s (domid %d, named %s when the agent attached it)", n, domid, owned.Domain)
	}
	return fmt.Sprintf("%s (domid %d)", n, domid)
}

// planKept plans for a device at a port of its target: kept there, with
// what is out of place around it put back.
func planKept(p *plan, o observation, t target, rec Audit, mine bool, w world) {
	x := *o.port
	// Bound already (the common case): nothing is written, so a
	// detach xl starts meanwhile is not raced.
	moved := false // dom0 had it: told each time (after a resume, its drivers probe first)
	own := ownUnbound(o)
	take, left := outOfUsbback(o.dev, own)
	if !w.dryRun && x.Type == policy.TypePV && lookFirst(o, take, left) {
		p.state = StSettling
		p.add(step{kind: stepLookLater, trigger: TrigAfterUnbound})
		return
	}
	rewriteRecords(p, &rec, o, x, mine, w)
	if !w.dryRun && x.Type == policy.TypePV && len(take) > 0 {
		p.add(step{kind: stepEnsureBound, held: !own})
		rec.Reason += fmt.Sprintf("; %s: moved back to usbback", heldByDom0(take))
		moved = true
	}
	if x.Type == policy.TypePV {
		rec.Reason += notInUsbback(o, rec, left)
	}
	if !w.dryRun && x.Type == policy.TypeDeviceModel && mine && (o.trigger == TrigStart || o.trigger == TrigRetry) {
		// The port is written before QEMU's device_add: a crash in
		// between left the port set and the guest without it. A
		// check QEMU did not answer is its failure, and retried.
		p.add(step{kind: stepEnsureInQEMU})
	}
	rec.Action = ActKept
	if !mine {
		rec.Reason += " (attached there by someone else; left as it is)"
	} else if !o.owned.of(o.dev) && !w.dryRun {
		// The port stays the agent's; its record now names the device
		// there, so that a later detach by someone else holds this
		// one, and not the one that was plugged here before.
		p.add(step{kind: stepReOwn, rec: rec})
		rec.Reason += fmt.Sprintf("; its ownership record named another device at %s (%s): it names this one now", o.busid, ownedIdentity(*o.owned))
	}
	if len(t.several) > 0 {
		rec.Reason += "; " + severalDomains(t) + fmt.Sprintf(", and leaves it at domid %d, where it is", x.Domid)
	}
	if o.giving && !w.dryRun {
		// A give-back to dom0 a kill cut short, and the policy sends it
		// here again: nothing is given to dom0 now, and a later one
		// records itself anew.
		p.add(step{kind: stepRmGiving})
	}
	p.state = StAttached
	if moved {
		p.add(step{kind: stepAudit, rec: rec})
	} else {
		p.audit(o, rec)
	}
}

// rewriteRecords writes again the driver records of a device the agent
// attached at x, when they are gone: another toolstack's detach of the
// port it left, ended after this attach, removes them whatever device
// they are now of (as libxl does), and without them its dom0 drivers
// never come back. Before ensure-bound, which records the drivers of
// interfaces not in usbback as they are now.
func rewriteRecords(p *plan, rec *Audit, o observation, x assign.Assignment, mine bool, w world) {
	if w.dryRun || x.Type != policy.TypePV || !mine || o.record || len(o.owned.Drivers) == 0 {
		return
	}
	p.add(step{kind: stepReRecord})
	rec.Reason += "; its driver records were gone (removed by a detach of the port it left, ended late): written again from its ownership record"
}

// ownedIdentity is the device an ownership record names, for a reason.
func ownedIdentity(o Owned) string {
	if o.Serial == "" {
		return o.ID
	}
	return fmt.Sprintf("%s serial %q", o.ID, o.Serial)
}

func severalDomains(t target) string {
	ids := make([]string, len(t.several))
	for i, id := range t.several {
		ids[i] = strconv.FormatUint(uint64(id), 10)
	}
	return fmt.Sprintf("%d running domains are named %s (domids %s): the agent does not guess which is meant", len(ids), t.name, strings.Join(ids, ", "))
}

// planDecision plans what the policy says for a device at no port (or
// just detached from one).
func planDecision(p *plan, o observation, dec policy.Decision, t target, rec Audit, w world) {
	owned := o.owned
	if o.port != nil {
		owned = nil // detached above, with its record
	}
	switch dec.Action {
	case policy.Deny:
		rec.Action, p.state = ActDenied, StDenied
		planToDom0(p, o, &rec, w)
	case policy.Refuse:
		rec.Action, p.state = ActRefused, StRefused
		keptInert(o, &rec, w)
	case policy.None:
		rec.Action, p.state = ActUnmatched, StWithDom0
		planToDom0(p, o, &rec, w)
	case policy.Block:
		rec.Action, p.state = ActBlocked, StBlocked
		planBlock(p, o, w)
	case policy.Attach:
		switch {
		case len(t.several) > 0:
			rec.Action, p.state = ActPending, StPending
			rec.Reason += "; " + severalDomains(t) + ": it waits until one domain has that name"
		case !t.running:
			rec.Action, p.state = ActPending, StPending
			rec.Reason += fmt.Sprintf("; %s is not running: attached when it starts", t.name)
			keptInert(o, &rec, w)
		case backToItsGuest(o, dec, t):
			planDisplaced(p, o, dec, t, rec, w)
			return
		case owned != nil && owned.Domain == t.name && owned.Domid == t.domid && owned.of(o.dev):
			// The agent put it there, and someone took it away while the
			// domain kept running (xl usbdev-detach, usbctrl-detach, or
			// the domain going down): that is respected, not undone.
			rec.Action, p.state = ActHeld, StHeld
			rec.Domid, rec.Ctrl, rec.Port = int(t.domid), owned.Controller, owned.Port
			// Which of them cannot be told: a guest going down has its
			// ports emptied first too, before it is gone.
			rec.Reason += fmt.Sprintf("; it was detached from %s (domid %d) port %d:%d by someone else (xl usbdev-detach or usbctrl-detach, or %s going down): it stays in dom0 until it is plugged again or %s restarts",
				t.name, t.domid, owned.Controller, owned.Port, t.name, t.name)
		case o.refusedBy != "":
			rec.Action, p.state = ActRefused, StRefused
			rec.Reason += "; " + o.refusedBy + ": not tried again until it is plugged again or the policy is reloaded"
		case o.backoff:
			// Its failure stands as said, and its retry comes: an attach
			// tried at each of these would fail and roll back again, each
			// time moving dom0's drivers.
			p.state = StPending
			return
		default:
			planAttach(p, o, dec, t, owned, rec, w)
			return
		}
	}
	if owned != nil && !w.dryRun && dec.Action != policy.Attach {
		p.add(step{kind: stepRmOwned})
	}
	p.audit(o, rec)
}

// planAttach plans the attach to a running target.
func planAttach(p *plan, o observation, dec policy.Decision, t target, owned *Owned, rec Audit, w world) {
	tg := dec.Target
	opts := assign.AttachOptions{PreferController: tg.Controller, PreferPort: tg.Port, NewController: tg.Ctrl}
	switch {
	case owned != nil && owned.Domain == tg.Domain:
		// Back where it was before the domain rebooted or the agent restarted.
		opts.PreferController, opts.PreferPort = owned.Controller, owned.Port
	case o.left != nil && o.left.domain == tg.Domain && tg.Port == 0:
		// Plugged back: to the port it left, if that is free.
		opts.PreferController, opts.PreferPort = o.left.at.Controller, o.left.at.Port
	}
	pinned := tg.Port > 0 && opts.PreferController == tg.Controller && opts.PreferPort == tg.Port
	rec.Action, rec.Domid = ActAttached, int(t.domid)
	p.state = StAttaching
	if w.dryRun {
		rec.Reason += " (dry run: nothing done)"
		p.add(step{kind: stepAudit, rec: rec})
		return
	}
	own := Owned{Domain: tg.Domain, Domid: t.domid, Rule: dec.Rule.Name, ID: o.dev.ID(), Serial: o.dev.Serial}
	p.add(step{kind: stepAttach, rec: rec, attach: attachPlan{domid: t.domid, domain: tg.Domain, opts: opts, pinned: pinned, owned: own}})
}

// planGone plans for a device that has left the host: its port (libxl
// never clears it), its driver records, its ownership record and its
// giving record go at once, and its twins are looked at again (they may
// be told apart now).
func planGone(o observation, w world) plan {
	p := plan{state: StAbsent, steps: []step{{kind: stepForget}}}
	rec := Audit{BusID: o.busid, ID: o.last.ID, Serial: o.last.Serial, PortPath: o.last.PortPath, Name: o.last.Name, Trigger: o.trigger}
	if (o.record || o.port != nil) && !w.dryRun {
		// Its driver records name the interfaces of the plug that left.
		// The next plug at its busid (the same device plugged back, or
		// another product after a mode switch, which usb_modeswitch makes
		// within a second) has interfaces of the same names, and may be
		// there by the time the detach below binds by the records: it must
		// not get the old plug's drivers (nor fail binding them, when they
		// do not match it or it is inert). They go first.
		p.add(step{kind: stepDropRecords})
	}
	if x := o.port; x != nil {
		if !w.dryRun {
			p.add(step{kind: stepDetach, at: *x})
		}
		if o.owned != nil && rec.ID != "" {
			p.add(step{kind: stepRememberLeft, key: identity(rec.ID, rec.Serial, o.busid), domain: o.owned.Domain, at: *x})
		}
		c := rec
		c.Action, c.Domid, c.Ctrl, c.Port = ActCleared, int(x.Domid), x.Controller, x.Port
		if o.owned != nil { // the rule that attached it hears it left
			c.Rule, c.Domain = o.owned.Rule, o.owned.Domain
		}
		c.Reason = fmt.Sprintf("%s left the host: its port %d:%d of domain %d is cleared", o.busid, x.Controller, x.Port, x.Domid)
		p.add(step{kind: stepAudit, rec: c})
	}
	if !w.dryRun {
		p.add(step{kind: stepRelease, lenient: true})
		if o.owned != nil || o.badOwned {
			p.add(step{kind: stepRmOwned})
		}
		if o.giving {
			// It left in the middle of a give-back: nothing is left to
			// give, and the next plug at its busid must not be taken
			// for one cut short.
			p.add(step{kind: stepRmGiving})
		}
	}
	if len(o.twinOf) > 0 {
		p.add(step{kind: stepRequeue, busids: o.twinOf, trigger: twinLeft(o.busid)})
	}
	// Its cleared record is a status entry too: one the agent never knew
	// (its port found at a start) would stay there, of a device not on
	// the host, until some later pass over its busid.
	if o.known || o.port != nil {
		g := rec
		g.Action, g.Reason = ActGone, o.busid+" left the host"
		p.add(step{kind: stepAudit, rec: g})
	}
	return p
}

// dom0Driver says a driver other than usbback has an interface of d.
func dom0Driver(d usbsysfs.Device) bool {
	return slices.ContainsFunc(d.Interfaces, func(in usbsysfs.Interface) bool { return in.Driver != "" && in.Driver != "usbback" })
}

// heldByDom0 names interfaces out of usbback and where they are:
// "1-2:1.0 was with usbhid, 1-2:1.1 had no driver".
func heldByDom0(intfs []usbsysfs.Interface) string {
	var s []string
	for _, in := range intfs {
		switch in.Driver {
		case "usbback":
		case "":
			s = append(s, in.Name+" had no driver")
		default:
			s = append(s, in.Name+" was with "+in.Driver)
		}
	}
	return strings.Join(s, ", ")
}

// ownUnbound says an interface without a driver, of a device at its
// port, is the agent's own to bind: at a start (a bind a kill cut short)
// and while its passes fail (its own bind's rollback, retried).
func ownUnbound(o observation) bool {
	return o.trigger == TrigStart || o.trigger == TrigRetry || o.known && o.last.Action == ActFailed
}

// outOfUsbback sorts the interfaces of a device at its port that are not
// in usbback: take, what the agent moves back (a dom0 driver's, which
// took the guest's device after a resume or a reset; an inert one, which
// no driver probes; without a driver, when own), and left, what someone
// else unbound from usbback (an authorized interface without a driver),
// which stays so: binding it again would fight the admin who unbound it,
// at each unbind.
func outOfUsbback(d usbsysfs.Device, own bool) (take, left []usbsysfs.Interface) {
	for _, in := range d.Interfaces {
		switch {
		case in.Driver == "usbback":
		case in.Driver == "" && in.Authorized && !own:
			left = append(left, in)
		default:
			take = append(take, in)
		}
	}
	return take, left
}

// lookFirst says a device at its pv port with interfaces out of usbback
// is looked at again before anything: xl detaches by unbinding from
// usbback first and clearing the port after, and binding back now would
// undo its detach. A port still set at the second look is no detach. (A
// dom0 driver under a port still set is no detach either: dom0 took the
// guest's device, after a resume. It is moved back at once; so is an
// interface deauthorized, which no detach does, and which, authorized
// again, would be probed by nothing.)
func lookFirst(o observation, take, left []usbsysfs.Interface) bool {
	if len(take)+len(left) == 0 || allInert(take, left) {
		return false
	}
	return o.trigger != TrigAfterUnbound && o.trigger != TrigStart && !o.portAfter
}

// allInert says every interface out of usbback is deauthorized (with no
// driver, which none may probe).
func allInert(take, left []usbsysfs.Interface) bool {
	return len(left) == 0 && !slices.ContainsFunc(take, func(in usbsysfs.Interface) bool { return in.Driver != "" || in.Authorized })
}

// notInUsbback says, of a device kept at its port, what of it the guest
// does not have: no interface at all (unconfigured), or the ones someone
// else unbound from usbback (left).
func notInUsbback(o observation, rec Audit, left []usbsysfs.Interface) string {
	where := rec.Domain
	if where == "" {
		where = fmt.Sprintf("domain %d", rec.Domid)
	}
	where += fmt.Sprintf(" at port %d:%d", rec.Ctrl, rec.Port)
	if o.dev.Unconfigured {
		why := "bConfigurationValue is empty"
		if !o.dev.Authorized {
			why = "authorized is 0"
		}
		return fmt.Sprintf("; attached to %s, unconfigured: the guest sees no interfaces (%s; configured again, they go to usbback)", where, why)
	}
	if len(left) == 0 {
		return ""
	}
	names := make([]string, len(left))
	for i, in := range left {
		names[i] = in.Name
	}
	verb := "interface %s is"
	if len(names) > 1 {
		verb = "interfaces %s are"
	}
	return fmt.Sprintf("; attached to %s, but "+verb+" not in usbback: unbound by someone else, and left so (the guest has no use of it until it is bound to usbback again)",
		where, strings.Join(names, ", "))
}

// unbound says an interface of d has no driver.
func unbound(d usbsysfs.Device) bool {
	for _, in := range d.Interfaces {
		if in.Driver == "" {
			return true
		}
	}
	return false
}

// allUsbback says every interface of d is bound to usbback.
func allUsbback(d usbsysfs.Device) bool {
	for _, in := range d.Interfaces {
		if in.Driver != "usbback" {
			return false
		}
	}
	return true
}

// anyUsbback says an interface of d is bound to usbback.
func anyUsbback(d usbsysfs.Device) bool {
	for _, in := range d.Interfaces {
		if in.Driver == "usbback" {
			return true
		}
	}
	return false
}

func sortBusIDs(s []string) { slices.SortFunc(s, compareBusIDs) }

// compareBusIDs orders busids as sysfs lists them (1-2 before 1-10).
func compareBusIDs(a, b string) int {
	switch {
	case usbsysfs.BusIDLess(a, b):
		return -1
	case usbsysfs.BusIDLess(b, a):
		return 1
	}
	return 0
}
