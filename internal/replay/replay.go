package replay

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/rs/zerolog"

	"github.com/usbhotplugd/usbhotplugd/internal/agent"
	"github.com/usbhotplugd/usbhotplugd/internal/assign"
	"github.com/usbhotplugd/usbhotplugd/internal/fakekernel"
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
	Lists    map[string][]assign.ListedController `json:"lists"`     // by domain name
	ListText map[string]string                    `json:"list_text"` // xl usb-list text by domain name
	Domains  []string                             `json:"domains"`   // names, in start order
	Start    time.Time                            `json:"start"`     // the trace's first time, if it has times
	Stats    agent.Stats                          `json:"stats"`     // in JSON only: the passes depend on timing
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

// Run replays recs and returns what happened.
func Run(ctx context.Context, recs []uevent.Record, o Options) (*Result, error) {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	xs, err := o.Dial(ctx)
	if err != nil {
		return nil, err
	}
	defer xs.Close()
	if err := sim.SeedDom0(ctx, xs); err != nil {
		return nil, err
	}
	simXS, err := o.Dial(ctx)
	if err != nil {
		return nil, err
	}
	defer simXS.Close()
	backends := &sim.Backends{XS: simXS}
	run, err := backends.Start(ctx)
	if err != nil {
		return nil, err
	}
	defer run.Stop()
	agentXS, err := o.Dial(ctx)
	if err != nil {
		return nil, err
	}
	defer agentXS.Close()

	host, err := NewHost(o.Root)
	if err != nil {
		return nil, err
	}
	kernel := fakekernel.NewKernel(o.Root)
	// Every driver takes back what it had: the trace bound it there.
	kernel.Accept = func(driver, intf string) bool { return true }
	sys := usbsysfs.NewFS(o.Root).WithWriter(kernel)
	short := 2 * time.Second
	h := &assign.Host{XS: agentXS, Sys: sys, InitTimeout: short, DestroyTimeout: short}
	// HVM guests get a simulated QEMU, for emulated controllers.
	var dmMu sync.Mutex
	dms := map[uint32]*sim.DeviceModel{}
	h.DialQMP = func(ctx context.Context, domid uint32) (assign.QMP, func(), error) {
		dmMu.Lock()
		defer dmMu.Unlock()
		dm, ok := dms[domid]
		if !ok {
			return nil, nil, fmt.Errorf("domain %d has no device model (it is not an HVM guest)", domid)
		}
		return dm, func() {}, nil
	}
	res := &Result{Lists: map[string][]assign.ListedController{}, ListText: map[string]string{}}
	var t0 time.Time
	var mu sync.Mutex // now and the timeline: the agent's goroutine audits
	var now time.Duration
	at := func(r uevent.Record) time.Duration {
		if r.Time.IsZero() {
			return now
		}
		if t0.IsZero() {
			t0 = r.Time
			res.Start = t0
		}
		return r.Time.Sub(t0)
	}
	add := func(l Line) {
		mu.Lock()
		l.At = agent.Millis(now)
		res.Timeline = append(res.Timeline, l)
		mu.Unlock()
	}
	a := agent.New(agent.Config{Host: h, Policy: o.Policy, Log: o.Log, NoWatches: true, OnAudit: func(r agent.Audit) {
		add(Line{Text: auditText(r), Audit: &r})
	}})
	src := make(source)
	agentDone := make(chan error, 1)
	ready := make(chan struct{})
	go func() { agentDone <- a.Run(ctx, src, func() { close(ready) }) }()
	select {
	case <-ready:
	case err := <-agentDone:
		return nil, fmt.Errorf("replay: the agent stopped: %w", err)
	}
	settle := func() error {
		c, cancel := context.WithTimeout(ctx, 30*time.Second)
		defer cancel()
		if err := a.WaitIdle(c); err != nil {
			return fmt.Errorf("replay: the agent did not settle: %w", err)
		}
		return backends.WaitIdle(c)
	}
	domids := map[string]sim.Domain{}
	var batch []uevent.Message
	for i, r := range recs {
		mu.Lock()
		now = at(r)
		mu.Unlock()
		switch {
		case r.Domain != nil:
			d := r.Domain
			switch d.Action {
			case "start":
				sd := sim.Domain{ID: d.Domid, Name: d.Name, Type: d.Type, UUID: fmt.Sprintf("00000000-0000-4000-8000-%012x", i+1)}
				if err := sim.SeedDomain(ctx, xs, sd); err != nil {
					return nil, err
				}
				if err := xs.Introduce(ctx, d.Domid, 1, 1); err != nil {
					return nil, fmt.Errorf("replay: introducing %s: %w", d.Name, err)
				}
				domids[d.Name] = sd
				if d.Type == "hvm" {
					dmMu.Lock()
					dms[d.Domid] = sim.NewDeviceModel()
					dmMu.Unlock()
				}
				res.Domains = appendOnce(res.Domains, d.Name)
				add(Line{Text: fmt.Sprintf("domain %s started (domid %d)", d.Name, d.Domid)})
			case "destroy":
				sd, ok := domids[d.Name]
				if !ok {
					return nil, fmt.Errorf("replay: record %d destroys %s, which is not running", i+1, d.Name)
				}
				if err := Destroy(ctx, h, xs, sd); err != nil {
					return nil, err
				}
				delete(domids, d.Name)
				dmMu.Lock()
				delete(dms, sd.ID)
				dmMu.Unlock()
				add(Line{Text: fmt.Sprintf("domain %s destroyed (domid %d)", d.Name, sd.ID)})
			}
			if err := a.Rescan(ctx, "domain "+d.Name+" "+d.Action+"ed"); err != nil {
				return nil, err
			}
		case r.Overrun:
			batch = append(batch, uevent.Message{Overrun: true})
		case r.Event != nil:
			if err := host.Apply(*r.Event, r.Sysfs); err != nil {
				return nil, fmt.Errorf("replay: record %d: %w", i+1, err)
			}
			batch = append(batch, uevent.Message{Event: *r.Event, Coldplug: r.Coldplug})
		}
		// Events of one instant arrive together, as a storm does: the
		// agent sees them only once the host has moved on.
		if i+1 < len(recs) && r.Domain == nil && recs[i+1].Domain == nil && !r.Time.IsZero() && recs[i+1].Time.Equal(r.Time) {
			continue
		}
		for _, m := range batch {
			a.Handle(ctx, m)
		}
		batch = batch[:0]
		if err := settle(); err != nil {
			return nil, err
		}
	}
	for _, name := range res.Domains {
		sd, ok := domids[name]
		if !ok {
			continue
		}
		l, err := h.List(ctx, sd.ID)
		if err != nil {
			return nil, err
		}
		res.Lists[name] = l
		var b strings.Builder
		assign.WriteList(&b, l)
		res.ListText[name] = b.String()
	}
	res.Stats = a.Stats()
	cancel()
	<-agentDone
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
		if _, err := fmt.Fprintf(w, "%s  %s\n", at, l.Text); err != nil {
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
