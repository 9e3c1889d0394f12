package agent

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"slices"
	"sort"
	"time"

	"github.com/rs/zerolog"

	"github.com/usbhotplugd/usbhotplugd/internal/assign"
	"github.com/usbhotplugd/usbhotplugd/internal/usbsysfs"
	"github.com/usbhotplugd/usbhotplugd/policy"
)

// An Audit record is one decision about one device. Time is when it was
// made (its outcome known); every time in the JSON outputs is RFC 3339
// under a key ending in _at.
type Audit struct {
	Time     time.Time `json:"decided_at"`
	BusID    string    `json:"busid"`
	ID       string    `json:"id,omitempty"`
	Serial   string    `json:"serial,omitempty"`
	PortPath string    `json:"port_path,omitempty"` // the socket, named for good
	Name     string    `json:"name,omitempty"`
	Trigger  Trigger   `json:"trigger"`
	Action   Action    `json:"action"`
	Rule     string    `json:"rule,omitempty"`
	RuleNo   int       `json:"rule_index,omitempty"`
	RuleAt   string    `json:"rule_source,omitempty"` // FILE:LINE of the rule, drop-ins and includes apart
	Domain   string    `json:"domain,omitempty"`
	Domid    int       `json:"domid,omitempty"`
	Ctrl     int       `json:"controller,omitempty"`
	Port     int       `json:"port,omitempty"`
	Reason   string    `json:"reason"`
	// Deauthorized are its interfaces no driver may probe (authorization
	// before probe, or a block rule), as the pass found them.
	Deauthorized []string `json:"deauthorized_interfaces,omitempty"`
	// FailedStep names the step that failed (action failed only).
	FailedStep string   `json:"failed_step,omitempty"`
	Twins      []string `json:"twins,omitempty"`
	Duration   Millis   `json:"duration_ms"`
	DryRun     bool     `json:"dry_run,omitempty"`
}

// MarshalJSON writes r with its controller whenever it names a port, as
// every other output gives a port: controller 0 is a controller like the
// others, which omitempty would leave out.
func (r Audit) MarshalJSON() ([]byte, error) {
	type plain Audit
	var ctrl *int
	if r.Port > 0 {
		ctrl = &r.Ctrl
	}
	return json.Marshal(struct {
		plain
		Ctrl *int `json:"controller,omitempty"`
	}{plain(r), ctrl})
}

// Status is what `usbhotplugd status` shows: the last decision for each
// device, by busid.
type Status struct {
	Updated time.Time `json:"devices_updated_at"`
	Devices []Audit   `json:"devices"`
	// Skipped are the guests' controllers the agent cannot use, and why
	// (a driver domain's backend, nodes libxl would not write).
	Skipped []assign.Skipped `json:"skipped_controllers,omitempty"`
}

func (a *Agent) audit(ctx context.Context, r Audit, start time.Time) {
	if r.Action != ActFailed {
		a.succeeded(r.BusID)
	}
	r.Time = a.cfg.Now()
	r.Duration = Millis(time.Since(start))
	r.DryRun = a.cfg.DryRun
	var ev *zerolog.Event
	switch r.Action {
	case ActFailed:
		ev = a.cfg.Log.Error()
	default:
		ev = a.cfg.Log.Info()
	}
	ev = ev.Str("busid", r.BusID).Str("id", r.ID).Str("trigger", string(r.Trigger)).Str("action", string(r.Action))
	if r.Serial != "" {
		ev = ev.Str("serial", r.Serial)
	}
	if r.PortPath != "" {
		ev = ev.Str("port_path", r.PortPath)
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
		ev = ev.Int("controller", r.Ctrl).Int("port", r.Port)
	}
	if len(r.Twins) > 0 {
		ev = ev.Strs("twins", r.Twins)
	}
	// zerolog writes a duration in milliseconds, as the key says.
	ev.Bool("audit", true).Dur("duration_ms", time.Duration(r.Duration)).Bool("dry_run", r.DryRun).Msg(r.Reason)
	a.mu.Lock()
	if r.Action == ActGone {
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
	if a.cfg.OnStatus == nil {
		return
	}
	skipped := a.h.Skipped()
	a.mu.Lock()
	if !a.dirty && slices.EqualFunc(skipped, a.skipped, func(x, y assign.Skipped) bool {
		return x.Domid == y.Domid && x.DevID == y.DevID && x.Reason == y.Reason
	}) {
		a.mu.Unlock()
		return
	}
	a.dirty, a.skipped = false, skipped
	st := Status{Updated: a.cfg.Now(), Skipped: skipped}
	for _, r := range a.status {
		st.Devices = append(st.Devices, r)
	}
	a.mu.Unlock()
	sort.Slice(st.Devices, func(i, j int) bool { return usbsysfs.BusIDLess(st.Devices[i].BusID, st.Devices[j].BusID) })
	a.cfg.OnStatus(st)
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
	pinned bool // the preferred port is the rule's pin
	rec    Audit
	start  time.Time
	pol    *policy.Policy // what it was decided by
	giving bool           // its pass found a giving record (a give-back to dom0 a kill cut short)
	// release lets go of the device's disks, held since its pass found
	// them free (inventory.Hold), once the attach has been tried.
	release func()
}

// maxBatch bounds how many attaches share one transaction.
const maxBatch = 32

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
	// An attach decided before a reload is decided again under the new
	// policy: it may deny the device or send it elsewhere.
	pol := a.Policy()
	batch = slices.DeleteFunc(batch, func(in intent) bool {
		if in.pol == pol {
			return false
		}
		in.release()
		a.enqueue(in.busid, TrigReload)
		return true
	})
	for len(batch) > 0 {
		var mine, rest []intent
		for _, in := range batch {
			if in.domid == batch[0].domid && in.domain == batch[0].domain {
				mine = append(mine, in)
			} else {
				rest = append(rest, in)
			}
		}
		batch = rest
		a.attachBatch(ctx, mine)
		for _, in := range mine {
			in.release()
		}
	}
}

// attachBatch attaches intents of one domain in one transaction.
func (a *Agent) attachBatch(ctx context.Context, mine []intent) {
	domid, domain := mine[0].domid, mine[0].domain
	if err := a.ensureControllers(ctx, domain, domid); err != nil {
		for _, in := range mine {
			a.attachFailed(ctx, in, err)
		}
		return
	}
	items := make([]assign.AttachItem, len(mine))
	for i, in := range mine {
		items[i] = assign.AttachItem{BusID: in.busid, Controller: -1, Opts: in.opts}
	}
	for i, r := range a.h.AttachMany(ctx, domid, items) {
		a.attachDone(ctx, mine[i], r)
	}
}

// attachDone records what became of one attach.
func (a *Agent) attachDone(ctx context.Context, in intent, r assign.AttachResult) {
	switch {
	case r.Err == nil:
		a.setPort(r.Assignment, true)
		in.rec.Ctrl, in.rec.Port = r.Controller, r.Port
		if in.pinned && r.Preferred != "" {
			in.rec.Reason += fmt.Sprintf("; its pinned port %d:%d could not take it (%s): attached at %d:%d instead",
				in.opts.PreferController, in.opts.PreferPort, r.Preferred, r.Controller, r.Port)
		}
		a.audit(ctx, in.rec, in.start)
		if in.giving {
			// It is the guest's now: nothing is given to dom0. A kill
			// before this leaves it at its port, whose pass removes it.
			if err := rmOpt(ctx, a, givingPath(in.busid)); err != nil {
				a.fail(ctx, in.rec, stepRmGiving.String(), err, in.start)
			}
		}
	case errors.Is(r.Err, assign.ErrAssigned):
		// At a port after all (written by xl a moment ago): read the
		// ports again and look at it once more.
		// A failed read leaves that to the pass, which reads them too.
		if all, err := a.h.Assigned(ctx); err == nil {
			for _, b := range a.noteAssigned(all) {
				a.enqueue(b, TrigPortChanged)
			}
		} else if ctx.Err() == nil {
			a.warn.Warn().Err(err).Str("busid", in.busid).Msg("reading the ports after an attach found the device at one failed")
		}
		a.enqueue(in.busid, TrigPortChanged)
	case errors.Is(r.Err, assign.ErrNoDevice) || errors.Is(r.Err, fs.ErrNotExist) && !a.h.Sys.Present(in.busid):
		// Unplugged while it was being attached (nothing of it stays):
		// its remove event brings it back here. Another device at the
		// busid is looked at as itself.
		a.cfg.Log.Debug().Err(r.Err).Str("busid", in.busid).Msg("left during the attach")
		if a.h.Sys.Present(in.busid) {
			a.enqueue(in.busid, TrigReplugged)
		}
	default:
		a.attachFailed(ctx, in, r.Err)
	}
}

// attachFailed records a failed attach, to be retried. A guest that is not
// ready yet (its QEMU not up) is no failure: the device waits as pending,
// said once, and is retried with backoff.
func (a *Agent) attachFailed(ctx context.Context, in intent, err error) {
	if errors.Is(err, assign.ErrUsbbackRefused) {
		a.usbbackRefused(ctx, in, err)
		return
	}
	if !errors.Is(err, assign.ErrNotReady) {
		a.fail(ctx, in.rec, "attach", err, in.start)
		return
	}
	r := in.rec
	r.Action, r.Ctrl, r.Port = ActPending, 0, 0
	r.Reason += "; " + err.Error() + ": tried again until it is"
	a.mu.Lock()
	last, known := a.status[r.BusID]
	a.mu.Unlock()
	if !known || !sameDecision(last, r) {
		a.audit(ctx, r, in.start)
	}
	a.retryLater(r.BusID)
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
	have, skipped, err := a.h.UsableControllers(ctx, domid)
	if err != nil {
		return err
	}
	if len(have)+len(skipped) > 0 {
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

// usbbackRefused records that usbback refused this plug of a device: it
// is refused, and not tried again (every try would write and clear its
// port, each a new pass) until it is plugged again or the policy reloads.
func (a *Agent) usbbackRefused(ctx context.Context, in intent, err error) {
	a.mu.Lock()
	a.refusedBy[in.busid] = refusal{devnum: in.opts.Device.DevNum, reason: err.Error()}
	a.mu.Unlock()
	r := in.rec
	r.Action, r.Domid, r.Ctrl, r.Port = ActRefused, 0, 0, 0
	r.Reason += "; " + err.Error() + ": not tried again until it is plugged again or the policy is reloaded"
	a.audit(ctx, r, in.start)
}

// A refusal is usbback's no to one plug (devnum) of a device.
type refusal struct {
	devnum int
	reason string
}
