package replay

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/rs/zerolog"

	"github.com/usbhotplugd/usbhotplugd/internal/agent"
	"github.com/usbhotplugd/usbhotplugd/internal/assign"
	"github.com/usbhotplugd/usbhotplugd/internal/fakekernel"
	"github.com/usbhotplugd/usbhotplugd/internal/safetext"
	"github.com/usbhotplugd/usbhotplugd/internal/sim"
	"github.com/usbhotplugd/usbhotplugd/internal/uevent"
	"github.com/usbhotplugd/usbhotplugd/internal/usbsysfs"
	"github.com/usbhotplugd/usbhotplugd/internal/xenstore"
	"github.com/usbhotplugd/usbhotplugd/policy"
)

// Options configure a replay.
type Options struct {
	Policy *policy.Policy
	// Dial opens a dom0 connection to an empty store (the embedded one, or
	// a real xenstored in tests); it is called three times.
	Dial func(ctx context.Context) (*xenstore.Conn, error)
	// Root is an empty directory for the simulated sysfs.
	Root string
	Log  zerolog.Logger
}

// A Line of the timeline.
type Line struct {
	At    agent.Millis `json:"at_ms"`
	Text  string       `json:"text"`
	Audit *agent.Audit `json:"audit,omitempty"`
}

// Result is a replay's timeline and the final usb-list of each domain.
type Result struct {
	Timeline []Line                               `json:"timeline"`
	Lists    map[string][]assign.ListedController `json:"lists"`               // by domain name
	ListText map[string]string                    `json:"list_text"`           // xl usb-list text by domain name
	Domains  []string                             `json:"domains"`             // names, in start order
	Start    time.Time                            `json:"started_at,omitzero"` // the trace's first time, if it has times: at_ms counts from it
	Stats    agent.Stats                          `json:"stats"`               // in JSON only: the passes depend on timing
}

type source chan uevent.Message

func (s source) Receive(ctx context.Context) (uevent.Message, error) {
	select {
	case m := <-s:
		return m, nil
	case <-ctx.Done():
		return uevent.Message{}, ctx.Err()
	}
}

// A world is a simulated dom0 with the agent running in it: a store with
// simulated backends, a sysfs tree under the fake kernel, and domains.
type world struct {
	xs, simXS, agentXS *xenstore.Conn
	backends           *sim.Backends
	run                *sim.Running
	host               *Host
	h                  *assign.Host
	a                  *agent.Agent
	agentDone          chan error

	dmMu sync.Mutex
	dms  map[uint32]*sim.DeviceModel

	mu     sync.Mutex // now and the timeline: the agent's goroutine audits
	now    time.Duration
	res    *Result
	domids map[string]sim.Domain
}

// newWorld makes the world, starts the domains running before the agent
// (pre), and starts the agent in it; close stops it.
func newWorld(ctx context.Context, o Options, pre ...uevent.DomainChange) (w *world, err error) {
	w = &world{dms: map[uint32]*sim.DeviceModel{}, domids: map[string]sim.Domain{},
		res: &Result{Lists: map[string][]assign.ListedController{}, ListText: map[string]string{}}}
	defer func() {
		if err != nil {
			w.close()
		}
	}()
	if w.xs, err = o.Dial(ctx); err != nil {
		return w, err
	}
	if err := sim.SeedDom0(ctx, w.xs); err != nil {
		return w, err
	}
	if w.simXS, err = o.Dial(ctx); err != nil {
		return w, err
	}
	w.backends = &sim.Backends{XS: w.simXS}
	if w.run, err = w.backends.Start(ctx); err != nil {
		return w, err
	}
	if w.agentXS, err = o.Dial(ctx); err != nil {
		return w, err
	}
	if w.host, err = NewHost(o.Root); err != nil {
		return w, err
	}
	kernel := fakekernel.NewKernel(o.Root)
	// Every driver takes back what the trace bound to it, and usbback
	// takes what is in its backends' ports, as the real one does.
	w.host.Kernel = kernel
	kernel.UsbbackPorts = fakekernel.StorePorts(ctx, w.simXS)
	sys := usbsysfs.NewFS(o.Root).WithWriter(kernel)
	short := 2 * time.Second
	w.h = &assign.Host{XS: w.agentXS, Sys: sys, InitTimeout: short, DestroyTimeout: short}
	// HVM guests get a simulated QEMU, for emulated controllers.
	w.h.DialQMP = func(ctx context.Context, domid uint32) (assign.QMP, func(), error) {
		w.dmMu.Lock()
		defer w.dmMu.Unlock()
		dm, ok := w.dms[domid]
		if !ok {
			return nil, nil, fmt.Errorf("domain %d has no device model (it is not an HVM guest)", domid)
		}
		return dm, func() {}, nil
	}
	for i := range pre {
		if err := w.startDomain(ctx, i, &pre[i]); err != nil {
			return w, err
		}
	}
	return w, w.startAgent(ctx, o)
}

func (w *world) startAgent(ctx context.Context, o Options) error {
	// The mounts are the simulated host's, which mounts nothing: this
	// host's own are no business of the trace's disks.
	w.a = agent.New(agent.Config{Host: w.h, Policy: o.Policy, Log: o.Log, NoWatches: true, Mountinfo: os.DevNull, OnAudit: func(r agent.Audit) {
		w.add(Line{Text: auditText(r), Audit: &r})
	}})
	w.agentDone = make(chan error, 1)
	ready := make(chan struct{})
	go func() { w.agentDone <- w.a.Run(ctx, make(source), func() { close(ready) }) }()
	select {
	case <-ready:
		return nil
	case err := <-w.agentDone:
		w.agentDone <- err
		return fmt.Errorf("replay: the agent stopped: %w", err)
	}
}

// close stops the agent (its context must be cancelled first) and the
// simulation.
func (w *world) close() {
	if w.agentDone != nil {
		<-w.agentDone
	}
	if w.run != nil {
		w.run.Stop()
	}
	for _, c := range []*xenstore.Conn{w.agentXS, w.simXS, w.xs} {
		if c != nil {
			c.Close()
		}
	}
}

func (w *world) add(l Line) {
	w.mu.Lock()
	l.At = agent.Millis(w.now)
	w.res.Timeline = append(w.res.Timeline, l)
	w.mu.Unlock()
}

func (w *world) setNow(d time.Duration) {
	w.mu.Lock()
	w.now = d
	w.mu.Unlock()
}

// settle waits until the agent and the backends have nothing left to do.
func (w *world) settle(ctx context.Context) error {
	c, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	if err := w.a.WaitIdle(c); err != nil {
		return fmt.Errorf("replay: the agent did not settle: %w", err)
	}
	return w.backends.WaitIdle(c)
}

// domain starts or destroys a domain, then has the agent look again.
func (w *world) domain(ctx context.Context, i int, d *uevent.DomainChange) error {
	switch d.Action {
	case "start":
		if err := w.startDomain(ctx, i, d); err != nil {
			return err
		}
	case "destroy":
		sd, ok := w.domids[d.Name]
		if !ok {
			return fmt.Errorf("replay: record %d destroys %s, which is not running", i+1, d.Name)
		}
		if err := Destroy(ctx, w.h, w.xs, sd); err != nil {
			return err
		}
		delete(w.domids, d.Name)
		w.dmMu.Lock()
		delete(w.dms, sd.ID)
		w.dmMu.Unlock()
		w.add(Line{Text: fmt.Sprintf("domain %s destroyed (domid %d)", d.Name, sd.ID)})
	}
	return w.a.Rescan(ctx, "domain "+d.Name+" "+d.Action+"ed")
}

// startDomain seeds a domain as xl create leaves it.
func (w *world) startDomain(ctx context.Context, i int, d *uevent.DomainChange) error {
	sd := sim.Domain{ID: d.Domid, Name: d.Name, Type: d.Type, UUID: fmt.Sprintf("00000000-0000-4000-8000-%012x", i+1)}
	if err := sim.SeedDomain(ctx, w.xs, sd); err != nil {
		return err
	}
	if err := w.xs.Introduce(ctx, d.Domid, 1, 1); err != nil {
		return fmt.Errorf("replay: introducing %s: %w", d.Name, err)
	}
	w.domids[d.Name] = sd
	if d.Type == "hvm" {
		w.dmMu.Lock()
		w.dms[d.Domid] = sim.NewDeviceModel()
		w.dmMu.Unlock()
	}
	w.res.Domains = appendOnce(w.res.Domains, d.Name)
	w.add(Line{Text: fmt.Sprintf("domain %s started (domid %d)", d.Name, d.Domid)})
	return nil
}

// Run replays recs and returns what happened.
func Run(ctx context.Context, recs []uevent.Record, o Options) (*Result, error) {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	w, err := newWorld(ctx, o)
	if err != nil {
		return nil, err
	}
	defer w.close()
	defer cancel()
	var t0 time.Time
	var batch []uevent.Message
	var probing probingDevice
	noBinds := withoutBinds(recs)
	for i, r := range recs {
		if !r.Time.IsZero() {
			if t0.IsZero() {
				t0 = r.Time
				w.res.Start = t0
			}
			w.setNow(r.Time.Sub(t0))
		}
		switch {
		case r.Domain != nil:
			if err := w.domain(ctx, i, r.Domain); err != nil {
				return nil, err
			}
		case r.Overrun:
			batch = append(batch, uevent.Message{Overrun: true})
		case r.Event != nil:
			if err := w.host.Apply(*r.Event, r.Sysfs); err != nil {
				return nil, fmt.Errorf("replay: record %d: %w", i+1, err)
			}
			batch = append(batch, uevent.Message{Event: *r.Event, Coldplug: r.Coldplug})
			if noBinds {
				m, err := probing.next(w.host, *r.Event, recs[i+1:])
				if err != nil {
					return nil, fmt.Errorf("replay: record %d: %w", i+1, err)
				}
				if m != nil {
					batch = append(batch, *m)
				}
			}
		}
		if i+1 < len(recs) && together(r, recs[i+1]) {
			continue
		}
		for _, m := range batch {
			w.a.Handle(ctx, m)
		}
		batch = batch[:0]
		if err := w.settle(ctx); err != nil {
			return nil, err
		}
	}
	return w.result(ctx)
}

// withoutBinds says recs are a kernel's before 4.14, which sends no bind
// or unbind event: not one is there.
func withoutBinds(recs []uevent.Record) bool {
	for _, r := range recs {
		if e := r.Event; e != nil && e.Subsystem == "usb" && (e.Action == "bind" || e.Action == "unbind") {
			return false
		}
	}
	return true
}

// A probingDevice is, in a trace without bind events, the device whose
// add came last, not yet bound to usb. Such a kernel binds it all the
// same, and its sysfs shows it bound once the generic driver's probe has
// made and probed its interfaces (the agent's read waits for that, on
// the device's lock): in the trace, once the events of the device, of its
// interfaces and of what their drivers make end. Its add is then heard
// again, as the pass the live agent made once the kernel let go.
type probingDevice struct {
	add    *uevent.Event
	prefix string // of its interfaces' devpaths: ".../1-3/1-3:", ".../usb1/1-0:"
}

// next notes e, applied, and binds the device it waits for if the record
// after it (the first of rest) is no longer of that device; it returns
// the device's add to hear again, or nil.
func (p *probingDevice) next(h *Host, e uevent.Event, rest []uevent.Record) (*uevent.Message, error) {
	if e.IsUSBDevice() && e.Action == "add" && e.Driver() == "" && !e.Synthetic() {
		intf := e.Name() + ":"
		if bus, ok := strings.CutPrefix(e.Name(), "usb"); ok {
			intf = bus + "-0:"
		}
		p.add, p.prefix = &e, e.DevPath+"/"+intf
	}
	if p.add == nil {
		return nil, nil
	}
	if len(rest) > 0 && rest[0].Event != nil {
		n := rest[0].Event
		if (n.DevPath == p.add.DevPath || strings.HasPrefix(n.DevPath, p.prefix)) && n.Action != "remove" {
			return nil, nil // its interfaces, and what their drivers make, still come
		}
	}
	add := *p.add
	*p = probingDevice{}
	bound, err := h.bindGeneric(add.DevPath, add.Name())
	if err != nil || !bound {
		return nil, err
	}
	return &uevent.Message{Event: add}, nil
}

// together reports whether the agent gets two records at once: events of
// one instant, as in a storm, which the agent sees only once the host has
// moved on; and the events of a coldplug scan, which it reads all at its
// start, whatever their times.
func together(r, next uevent.Record) bool {
	if r.Domain != nil || next.Domain != nil {
		return false
	}
	return r.Coldplug && next.Coldplug || !r.Time.IsZero() && next.Time.Equal(r.Time)
}

// result reads each domain's usb-list.
func (w *world) result(ctx context.Context) (*Result, error) {
	res := w.res
	for _, name := range res.Domains {
		sd, ok := w.domids[name]
		if !ok {
			continue
		}
		l, err := w.h.List(ctx, sd.ID)
		if err != nil {
			return nil, err
		}
		res.Lists[name] = l
		var b strings.Builder
		assign.WriteList(&b, l)
		res.ListText[name] = b.String()
	}
	res.Stats = w.a.Stats()
	return res, nil
}

func appendOnce(s []string, v string) []string {
	for _, x := range s {
		if x == v {
			return s
		}
	}
	return append(s, v)
}

// Destroy does what `xl destroy` does for USB: every controller is removed
// (its devices given back to dom0), then the domain's nodes go and the
// store is told it was released.
func Destroy(ctx context.Context, h *assign.Host, xs *xenstore.Conn, d sim.Domain) error {
	ctrls, err := h.Controllers(ctx, d.ID)
	if err != nil {
		return err
	}
	// Like libxl's destroy, a device that cannot be removed cleanly does
	// not keep the domain alive: the error is reported after the rest.
	var errs []error
	for _, c := range ctrls {
		if err := h.RemoveController(ctx, d.ID, c.DevID); err != nil {
			errs = append(errs, fmt.Errorf("replay: destroying %s: %w", d.Name, err))
		}
	}
	for _, p := range []string{fmt.Sprintf("/local/domain/%d", d.ID), fmt.Sprintf("/libxl/%d", d.ID), "/vm/" + d.UUID,
		fmt.Sprintf("/local/domain/0/backend/vusb/%d", d.ID)} {
		if err := xs.Rm(ctx, p); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return err
		}
	}
	if err := xs.Release(ctx, d.ID); err != nil {
		return err
	}
	return errors.Join(errs...)
}

func auditText(r agent.Audit) string {
	var b strings.Builder
	fmt.Fprintf(&b, "%-7s %-9s %s", r.BusID, r.ID, r.Action)
	if r.Domain != "" && (r.Action == "attached" || r.Action == "kept" || r.Action == "pending" || r.Action == "held") {
		fmt.Fprintf(&b, " → %s", r.Domain)
		if r.Domid > 0 {
			fmt.Fprintf(&b, " (domid %d)", r.Domid)
		}
	}
	if r.Port > 0 {
		fmt.Fprintf(&b, " port %d:%d", r.Ctrl, r.Port)
	}
	fmt.Fprintf(&b, ": %s", r.Reason)
	return b.String()
}

// WriteText prints a result: the timeline, then each domain's usb-list.
func (r *Result) WriteText(w io.Writer) error {
	for _, l := range r.Timeline {
		at := fmt.Sprintf("%8.3fs", time.Duration(l.At).Seconds())
		if !r.Start.IsZero() {
			at = r.Start.Add(time.Duration(l.At)).UTC().Format(time.TimeOnly)
		}
		// A trace carries the recorded devices' own strings: never raw.
		if _, err := fmt.Fprintf(w, "%s  %s\n", at, safetext.Line(l.Text)); err != nil {
			return err
		}
	}
	names := append([]string(nil), r.Domains...)
	sort.Strings(names)
	for _, n := range names {
		t, ok := r.ListText[n]
		if !ok {
			continue
		}
		fmt.Fprintf(w, "\n$ xl usb-list %s\n%s", n, t)
	}
	return nil
}
