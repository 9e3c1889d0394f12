package agent

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"slices"
	"sort"
	"strings"
	"syscall"
	"time"

	"github.com/rs/zerolog"

	"github.com/usbhotplugd/usbhotplugd/internal/assign"
	"github.com/usbhotplugd/usbhotplugd/internal/inventory"
	"github.com/usbhotplugd/usbhotplugd/internal/usbsysfs"
	"github.com/usbhotplugd/usbhotplugd/policy"
)

// An Audit record is one decision about one device.
type Audit struct {
	Time     time.Time     `json:"time"`
	BusID    string        `json:"busid"`
	ID       string        `json:"id,omitempty"`
	Serial   string        `json:"serial,omitempty"`
	Name     string        `json:"name,omitempty"`
	Trigger  string        `json:"trigger"`
	Action   string        `json:"action"` // attached, detached, kept, held, denied, refused, pending, unmatched, cleared, released, left, gone, failed
	Rule     string        `json:"rule,omitempty"`
	RuleNo   int           `json:"rule_index,omitempty"`
	Domain   string        `json:"domain,omitempty"`
	Domid    int           `json:"domid,omitempty"`
	Ctrl     int           `json:"controller,omitempty"`
	Port     int           `json:"port,omitempty"`
	Reason   string        `json:"reason"`
	Twins    []string      `json:"twins,omitempty"`
	Duration time.Duration `json:"duration_ns"`
	DryRun   bool          `json:"dry_run,omitempty"`
}

// Status is what `usbhotplugd status` shows: the last decision for each
// device, by busid.
type Status struct {
	Updated time.Time `json:"updated"`
	Devices []Audit   `json:"devices"`
}

func (a *Agent) audit(ctx context.Context, r Audit, start time.Time) {
	if r.Action != "failed" {
		a.succeeded(r.BusID)
	}
	r.Time = a.cfg.Now()
	r.Duration = time.Since(start)
	r.DryRun = a.cfg.DryRun
	var ev *zerolog.Event
	switch r.Action {
	case "failed":
		ev = a.cfg.Log.Error()
	default:
		ev = a.cfg.Log.Info()
	}
	ev = ev.Str("busid", r.BusID).Str("id", r.ID).Str("trigger", r.Trigger).Str("action", r.Action)
	if r.Serial != "" {
		ev = ev.Str("serial", r.Serial)
	}
	if r.Rule != "" {
		ev = ev.Str("rule", r.Rule).Int("rule_index", r.RuleNo)
	}
	if r.Domain != "" {
		ev = ev.Str("domain", r.Domain)
		if r.Domid > 0 {
			ev = ev.Int("domid", r.Domid)
		}
	}
	if r.Port > 0 {
		ev = ev.Str("port", fmt.Sprintf("%d:%d", r.Ctrl, r.Port))
	}
	if len(r.Twins) > 0 {
		ev = ev.Strs("twins", r.Twins)
	}
	ev.Bool("audit", true).Dur("duration", r.Duration).Bool("dry_run", r.DryRun).Msg(r.Reason)
	a.mu.Lock()
	if r.Action == "gone" {
		delete(a.status, r.BusID)
	} else {
		a.status[r.BusID] = r
	}
	a.dirty = true
	a.mu.Unlock()
	a.hook(r)
	if a.cfg.OnAudit != nil {
		a.cfg.OnAudit(r)
	}
}

func (a *Agent) flushStatus() {
	a.mu.Lock()
	if !a.dirty || a.cfg.OnStatus == nil {
		a.mu.Unlock()
		return
	}
	a.dirty = false
	st := Status{Updated: a.cfg.Now()}
	for _, r := range a.status {
		st.Devices = append(st.Devices, r)
	}
	a.mu.Unlock()
	sort.Slice(st.Devices, func(i, j int) bool { return usbsysfs.BusIDLess(st.Devices[i].BusID, st.Devices[j].BusID) })
	a.cfg.OnStatus(st)
}

// reconcile converges one device; see the package doc.
func (a *Agent) reconcile(ctx context.Context, busid, why string) {
	start := time.Now()
	rec := Audit{BusID: busid, Trigger: why}
	fail := func(err error) {
		rec.Action, rec.Reason = "failed", err.Error()
		a.audit(ctx, rec, start)
		a.retryLater(busid)
	}
	h := a.h
	dev, derr := h.Sys.Device(busid)
	present := derr == nil
	if derr != nil && !errors.Is(derr, fs.ErrNotExist) {
		fail(derr)
		return
	}
	// The ownership record, the driver records and the remembered port
	// are read together: one round trip. The remembered port is confirmed
	// by that one read; a device remembered at no port is taken as at
	// none (the attach checks every domain inside its transaction, and
	// the store watch tells of ports that xl writes).
	var (
		all       []assign.Assignment
		owned     *Owned
		hasRecord bool
		oerr      error
		asg       *assign.Assignment
	)
	recPath, err := assign.RecordPath(busid)
	if err != nil {
		fail(err)
		return
	}
	paths := []string{ownedPath(busid), recPath}
	hint, hinted := a.portOf(busid)
	if hinted {
		p, ok := assign.PortPath(hint)
		if hinted = ok && usbsysfs.ValidBusID(hint.BusID) == nil; hinted {
			paths = append(paths, p)
		}
	}
	vals, errs := h.XS.ReadMany(ctx, paths)
	owned, oerr = parseOwned(busid, vals[0], errs[0])
	hasRecord = errs[1] == nil
	if err := errs[1]; err != nil && !errors.Is(err, syscall.ENOENT) {
		fail(err)
		return
	}
	all = a.portList()
	if hinted {
		err := errs[2]
		if err != nil && !errors.Is(err, syscall.ENOENT) {
			fail(err)
			return
		}
		if err == nil && string(vals[2]) == hint.BusID {
			asg = &hint
		} else {
			all, err = h.Assigned(ctx)
			if err != nil {
				fail(err)
				return
			}
			a.noteAssigned(all)
			for i := range all {
				if all[i].BusID == busid {
					asg = &all[i]
					break
				}
			}
		}
	}
	if err := oerr; err != nil {
		a.warn.Warn().Err(err).Msg("ignoring it")
		owned = nil
	}
	mine := func(x *assign.Assignment) bool {
		return owned != nil && x != nil && owned.Domid == x.Domid && owned.Controller == x.Controller && owned.Port == x.Port
	}
	if present {
		rec.ID, rec.Serial, rec.Name = dev.ID(), dev.Serial, strings.TrimSpace(dev.Manufacturer+" "+dev.ProductName)
	} else {
		a.mu.Lock()
		last := a.status[busid]
		a.mu.Unlock()
		rec.ID, rec.Serial, rec.Name = last.ID, last.Serial, last.Name
	}

	// The device has left: its port (libxl never clears it), its driver
	// records and its ownership record go at once.
	if !present {
		a.dropPresent(ctx, busid)
		a.forgetPlugged(busid)
		a.remember(busid, usbsysfs.Device{}, false)
		did := false
		if asg != nil {
			if !a.cfg.DryRun {
				if err := h.DetachForget(ctx, asg.Domid, asg.Controller, asg.Port, ownedPath(busid)); err != nil {
					fail(err)
					return
				}
				a.setPort(*asg, false)
			}
			if owned != nil && rec.ID != "" {
				a.rememberLeft(identity(rec.ID, rec.Serial, busid), owned.Domain, *asg)
			}
			rec.Action, rec.Domid, rec.Ctrl, rec.Port = "cleared", int(asg.Domid), asg.Controller, asg.Port
			if owned != nil { // the rule that attached it hears it left
				rec.Rule, rec.Domain = owned.Rule, owned.Domain
			}
			rec.Reason = fmt.Sprintf("%s left the host: its port %d:%d of domain %d is cleared", busid, asg.Controller, asg.Port, asg.Domid)
			did = true
		}
		if !a.cfg.DryRun {
			if err := h.Release(ctx, busid); err != nil && !errors.Is(err, fs.ErrNotExist) {
				a.cfg.Log.Debug().Err(err).Str("busid", busid).Msg("release of a gone device")
			}
			if owned != nil {
				if err := rmOpt(ctx, a, ownedPath(busid)); err != nil {
					fail(err)
					return
				}
			}
		}
		if did {
			a.audit(ctx, rec, start)
		}
		a.mu.Lock()
		_, known := a.status[busid]
		// Its twins may now be told apart: they are looked at again.
		var twins []string
		for b, st := range a.status {
			if slices.Contains(st.Twins, busid) {
				twins = append(twins, b)
			}
		}
		a.mu.Unlock()
		sort.Slice(twins, func(i, j int) bool { return usbsysfs.BusIDLess(twins[i], twins[j]) })
		for _, b := range twins {
			a.enqueue(b, busid+" left")
		}
		if known {
			a.audit(ctx, Audit{BusID: busid, ID: rec.ID, Serial: rec.Serial, Name: rec.Name, Trigger: why, Action: "gone", Reason: busid + " left the host"}, start)
		}
		return
	}

	// Wait until the kernel has probed the device: its driver link is
	// made after its interfaces exist and were offered to their drivers.
	if drv, _ := h.Sys.Driver(busid); drv == "" || len(dev.Interfaces) < dev.NumInterfaces {
		return // its bind event will bring it back
	}

	inv := a.inventory(a.remember(busid, dev, true))
	var me *policy.Device
	for i := range inv {
		if inv[i].BusID == busid {
			me = &inv[i]
		}
	}
	if me == nil {
		return // left meanwhile: its remove event follows
	}
	me.InUse = inventory.InUse(h.Sys, dev, a.cfg.Mountinfo)
	// Twins (same vendor:product) need to know which of them is attached.
	for i := range inv {
		t := &inv[i]
		if t.Vendor != me.Vendor || t.Product != me.Product {
			continue
		}
		for j := range all {
			if all[j].BusID == t.BusID {
				t.Attached = true
			}
		}
		if !t.Attached {
			o := owned
			if t.BusID != busid {
				o, _ = readOwned(ctx, h.XS, t.BusID)
			}
			t.Attached = o != nil
		}
	}
	dec := a.Policy().Match(me, inv)
	if dec.Rule != nil {
		rec.Rule, rec.RuleNo = dec.Rule.Name, dec.Rule.Index
	}
	rec.Reason, rec.Twins = dec.Reason, dec.Twins
	var target string
	var domid uint32
	running := false
	if dec.Action == policy.Attach {
		target = dec.Target.Domain
		domid, running = a.domid(target)
		rec.Domain = target
	}

	// Already at a port.
	if asg != nil {
		if dec.Action == policy.Attach && running && asg.Domid == domid {
			// Bound already (the common case): nothing is written, so a
			// detach xl starts meanwhile is not raced.
			if !a.cfg.DryRun && asg.Type == policy.TypePV && !allUsbback(dev) {
				if why != afterUnbound && why != startTrigger {
					// xl detaches by unbinding from usbback first and
					// clearing the port after: binding back now would
					// undo its detach. Look again shortly; a port still
					// set then is a bind cut short, finished here. The
					// first pass after a start repairs at once: readiness
					// promises the invariants.
					a.lookLater(busid, 200*time.Millisecond, afterUnbound)
					return
				}
				if err := h.EnsureBound(ctx, busid); err != nil {
					fail(err)
					return
				}
			}
			rec.Action, rec.Domid, rec.Ctrl, rec.Port = "kept", int(domid), asg.Controller, asg.Port
			if !mine(asg) {
				rec.Reason += " (attached there by someone else; left as it is)"
			}
			a.auditIfChanged(ctx, rec, start)
			return
		}
		takeover := dec.Rule != nil && dec.Rule.Takeover
		if !mine(asg) && !takeover {
			rec.Action, rec.Domid, rec.Ctrl, rec.Port = "left", int(asg.Domid), asg.Controller, asg.Port
			rec.Reason = fmt.Sprintf("%s is at domain %d port %d:%d, attached by someone else: left there (the policy says: %s; a rule with takeover = true would move it)",
				busid, asg.Domid, asg.Controller, asg.Port, dec.Reason)
			a.auditIfChanged(ctx, rec, start)
			return
		}
		if !a.cfg.DryRun {
			if err := h.DetachForget(ctx, asg.Domid, asg.Controller, asg.Port, ownedPath(busid)); err != nil {
				fail(err)
				return
			}
			a.setPort(*asg, false)
		}
		owned = nil
		a.audit(ctx, Audit{BusID: busid, ID: rec.ID, Serial: rec.Serial, Name: rec.Name, Trigger: why, Action: "detached", Rule: rec.Rule, RuleNo: rec.RuleNo,
			Domid: int(asg.Domid), Ctrl: asg.Controller, Port: asg.Port,
			Reason: fmt.Sprintf("%s detached from domain %d port %d:%d: %s", busid, asg.Domid, asg.Controller, asg.Port, dec.Reason)}, start)
		start = time.Now()
	}

	// At no port: nothing of it may stay in usbback (a detach cut short).
	// xl (or libxl's destroy) may be in the middle of giving it back:
	// look again shortly instead of racing it. The first pass after a
	// start repairs at once: readiness promises the invariants.
	if !a.cfg.DryRun && asg == nil && why != startTrigger && why != afterCleared && (hasRecord || anyUsbback(h, dev) || unbound(dev)) {
		a.lookLater(busid, 200*time.Millisecond, afterCleared)
		return
	}
	if !a.cfg.DryRun {
		if hasRecord || anyUsbback(h, dev) || unbound(dev) {
			if err := h.Release(ctx, busid); err != nil {
				fail(err)
				return
			}
			a.audit(ctx, Audit{BusID: busid, ID: rec.ID, Trigger: why, Action: "released", Reason: busid + " was left in usbback, unbound or with driver records at no port: given back to its dom0 drivers"}, start)
			start = time.Now()
		}
	}

	switch dec.Action {
	case policy.Deny:
		rec.Action = "denied"
	case policy.Refuse:
		rec.Action = "refused"
	case policy.None:
		rec.Action = "unmatched"
	case policy.Attach:
		if !running {
			rec.Action = "pending"
			rec.Reason += fmt.Sprintf("; %s is not running: attached when it starts", target)
			break
		}
		if owned != nil && owned.Domain == target && owned.Domid == domid {
			// The agent put it there, and someone took it away while the
			// domain kept running (xl usbdev-detach, usbctrl-detach, or the
			// domain going down): that is respected, not undone.
			rec.Action, rec.Domid, rec.Ctrl, rec.Port = "held", int(domid), owned.Controller, owned.Port
			rec.Reason += fmt.Sprintf("; it was detached from %s (domid %d) port %d:%d by someone else: it stays in dom0 until it is plugged again or %s restarts",
				target, domid, owned.Controller, owned.Port, target)
			break
		}
		a.attach(ctx, busid, dev, dec, domid, owned, rec, start)
		return
	}
	if owned != nil && !a.cfg.DryRun && dec.Action != policy.Attach && rec.Action != "held" {
		if err := rmOpt(ctx, a, ownedPath(busid)); err != nil {
			fail(err)
			return
		}
	}
	a.auditIfChanged(ctx, rec, start)
}

// auditIfChanged records decisions that did nothing only when they differ
// from the last one for the device, so a rescan does not repeat them.
func (a *Agent) auditIfChanged(ctx context.Context, r Audit, start time.Time) {
	a.mu.Lock()
	last, ok := a.status[r.BusID]
	a.mu.Unlock()
	same := last.Action == r.Action || last.Action == "attached" && r.Action == "kept"
	if ok && same && last.Reason == r.Reason && last.Domid == r.Domid && last.Ctrl == r.Ctrl && last.Port == r.Port {
		return
	}
	a.audit(ctx, r, start)
}

// startTrigger is the trigger of the passes a run starts with.
const startTrigger = "start"

// afterCleared is the trigger of the second look at a device at no port
// with something of it left in usbback.
const afterCleared = "after its port was cleared"

// afterUnbound is the trigger of the second look at a device found at a
// port with interfaces out of usbback.
const afterUnbound = "after its interfaces left usbback"

// allUsbback says every interface of d is bound to usbback.
func allUsbback(d usbsysfs.Device) bool {
	for _, in := range d.Interfaces {
		if in.Driver != "usbback" {
			return false
		}
	}
	return true
}

func unbound(d usbsysfs.Device) bool {
	for _, in := range d.Interfaces {
		if in.Driver == "" {
			return true
		}
	}
	return false
}

func anyUsbback(h *assign.Host, d usbsysfs.Device) bool {
	for _, in := range d.Interfaces {
		if in.Driver == "usbback" {
			return true
		}
	}
	return false
}

// An intent is an attach decided by a pass and not yet done: intents are
// done together (one transaction for their ports) when the queue runs dry
// or enough have gathered, so a storm of devices costs one read of every
// domain's ports per batch instead of one per device.
type intent struct {
	busid  string
	domain string
	domid  uint32
	opts   assign.AttachOptions
	rec    Audit
	start  time.Time
}

// maxBatch bounds how many attaches share one transaction.
const maxBatch = 32

func (a *Agent) attach(ctx context.Context, busid string, dev usbsysfs.Device, dec policy.Decision, domid uint32, owned *Owned, rec Audit, start time.Time) {
	t := dec.Target
	opts := assign.AttachOptions{PreferController: t.Controller, PreferPort: t.Port, NewController: t.Ctrl, Device: &dev}
	if owned != nil && owned.Domain == t.Domain {
		// Back where it was before the domain rebooted or the agent restarted.
		opts.PreferController, opts.PreferPort = owned.Controller, owned.Port
	} else if at, ok := a.leftAt(identity(dev.ID(), dev.Serial, busid), t.Domain); ok && t.Port == 0 {
		// Plugged back: to the port it left, if that is free.
		opts.PreferController, opts.PreferPort = at.Controller, at.Port
	}
	rec.Action, rec.Domid = "attached", int(domid)
	if a.cfg.DryRun {
		rec.Reason += " (dry run: nothing done)"
		a.audit(ctx, rec, start)
		return
	}
	opts.Record = func(x assign.Assignment) [][2]string {
		return [][2]string{{ownedPath(busid), ownedValue(Owned{Domain: t.Domain, Domid: domid, Controller: x.Controller, Port: x.Port,
			Rule: dec.Rule.Name, ID: dev.ID(), Serial: dev.Serial})}}
	}
	a.intents = append(a.intents, intent{busid: busid, domain: t.Domain, domid: domid, opts: opts, rec: rec, start: start})
}

// hasIntent says busid waits in the batch (its next pass must see the
// batch done first).
func (a *Agent) hasIntent(busid string) bool {
	for _, in := range a.intents {
		if in.busid == busid {
			return true
		}
	}
	return false
}

// flush does the batched attaches, by domain, and audits each.
func (a *Agent) flush(ctx context.Context) {
	batch := a.intents
	a.intents = nil
	for len(batch) > 0 {
		domid, domain := batch[0].domid, batch[0].domain
		var mine, rest []intent
		for _, in := range batch {
			if in.domid == domid && in.domain == domain {
				mine = append(mine, in)
			} else {
				rest = append(rest, in)
			}
		}
		batch = rest
		fail := func(in intent, err error) {
			in.rec.Action, in.rec.Reason = "failed", err.Error()
			a.audit(ctx, in.rec, in.start)
			a.retryLater(in.busid)
		}
		if err := a.ensureControllers(ctx, domain, domid); err != nil {
			for _, in := range mine {
				fail(in, err)
			}
			continue
		}
		items := make([]assign.AttachItem, len(mine))
		for i, in := range mine {
			items[i] = assign.AttachItem{BusID: in.busid, Opts: in.opts}
		}
		for i, r := range a.h.AttachMany(ctx, domid, items) {
			in := mine[i]
			switch {
			case r.Err == nil:
				a.setPort(r.Assignment, true)
				in.rec.Ctrl, in.rec.Port = r.Controller, r.Port
				a.audit(ctx, in.rec, in.start)
			case errors.Is(r.Err, assign.ErrAssigned):
				// At a port after all (written by xl a moment ago): read
				// the ports again and look at it once more.
				if all, err := a.h.Assigned(ctx); err == nil {
					a.noteAssigned(all)
				}
				a.enqueue(in.busid, "its port changed")
			case errors.Is(r.Err, assign.ErrNoDevice) || errors.Is(r.Err, fs.ErrNotExist):
				// Unplugged while it was being attached (nothing of it
				// stays): its remove event brings it back here.
				a.cfg.Log.Debug().Err(r.Err).Str("busid", in.busid).Msg("left during the attach")
			default:
				fail(in, r.Err)
			}
		}
	}
}

// ensureControllers adds the controllers a [domain] section declares, when
// the domain has none yet.
func (a *Agent) ensureControllers(ctx context.Context, name string, domid uint32) error {
	d, ok := a.Policy().Domains[name]
	if !ok || len(d.Controllers) == 0 {
		return nil
	}
	a.mu.Lock()
	done := a.ensured[domid]
	a.mu.Unlock()
	if done {
		return nil // a domid is never reused while its domain lives
	}
	have, err := a.h.Controllers(ctx, domid)
	if err != nil {
		return err
	}
	if len(have) > 0 {
		a.mu.Lock()
		a.ensured[domid] = true
		a.mu.Unlock()
		return nil
	}
	for _, spec := range d.Controllers {
		if _, err := a.h.AddController(ctx, domid, spec, false); err != nil {
			return fmt.Errorf("adding the controllers declared for %s: %w", name, err)
		}
	}
	a.mu.Lock()
	a.ensured[domid] = true
	a.mu.Unlock()
	return nil
}

// rmOpt removes a node, a missing one included.
func rmOpt(ctx context.Context, a *Agent, path string) error {
	err := a.h.XS.Rm(ctx, path)
	if err != nil && errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	return err
}
