package agent_test

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/usbhotplugd/usbhotplugd/internal/agent"
	"github.com/usbhotplugd/usbhotplugd/internal/assign"
	"github.com/usbhotplugd/usbhotplugd/internal/fakekernel"
	"github.com/usbhotplugd/usbhotplugd/internal/replay"
	"github.com/usbhotplugd/usbhotplugd/internal/sim"
	"github.com/usbhotplugd/usbhotplugd/internal/uevent"
	"github.com/usbhotplugd/usbhotplugd/internal/usbsysfs"
	"github.com/usbhotplugd/usbhotplugd/internal/xenstore"
	"github.com/usbhotplugd/usbhotplugd/internal/xenstore/xenstoretest"
	"github.com/usbhotplugd/usbhotplugd/policy"
)

const testPolicy = `
[[rule]]
name = "no-storage"
action = "deny"
match = { interface = "storage" }

[[rule]]
name = "audio"
action = "attach"
match = { id = "0d8c:0014" }
target = { domain = "kiosk" }

[[rule]]
name = "mouse-a"
action = "attach"
match = { serial = "MOUSE-A" }
target = { domain = "desk" }

[[rule]]
name = "mouse-b"
action = "attach"
match = { serial = "MOUSE-B" }
target = { domain = "desk" }
takeover = true
`

// env is a dom0 with the standard fixture host, two guests and sim
// backends; the agent's audits arrive on a channel.
type env struct {
	t      testing.TB
	ctx    context.Context
	s      xenstoretest.Store
	xs     *xenstore.Conn
	h      *assign.Host // the admin's (xl's) view
	root   string
	doms   map[string]sim.Domain
	audits chan agent.Audit
	a      *agent.Agent
	backs  *sim.Backends
	nextID uint32
	// stop stops the agent run started last and waits for it.
	stop  func()
	log   bytes.Buffer
	logMu sync.Mutex
	// count makes run give the agent a connection that counts its
	// requests, in counter.
	count   bool
	counter *xenstoretest.Counting
	// kernel is the fake kernel the agent writes to; with count,
	// kernelTime adds up the nanoseconds its writes took.
	kernel     *fakekernel.Kernel
	kernelTime atomic.Int64
	// hooks and hookTimeout are the agent's Config.Hooks and HookTimeout.
	hooks       bool
	hookTimeout time.Duration
	// logged is signalled at each log write.
	logged chan struct{}
	// mountinfo is the agent's Config.Mountinfo: dom0's mounts.
	mountinfo string
	// status is the agent's last status.
	status atomic.Pointer[agent.Status]
	// dialQMP is the agent's Host.DialQMP (nil: libxl's socket).
	dialQMP func(ctx context.Context, domid uint32) (assign.QMP, func(), error)
	// wrapKernel, when set, wraps the kernel writer the agent is given;
	// onAudit, when set, hears each audit on the agent's worker, before
	// the pass goes on.
	wrapKernel func(usbsysfs.Writer) usbsysfs.Writer
	onAudit    func(agent.Audit)
	// noWatches is the agent's Config.NoWatches: it hears of no store
	// change (a port xl writes) but through its own reads.
	noWatches bool
}

func (e *env) Write(p []byte) (int, error) {
	e.logMu.Lock()
	defer e.logMu.Unlock()
	select {
	case e.logged <- struct{}{}:
	default:
	}
	return e.log.Write(p)
}

// awaitLog waits until the log holds s.
func (e *env) awaitLog(s string) {
	e.t.Helper()
	for !strings.Contains(e.logText(), s) {
		select {
		case <-e.logged:
		case <-e.ctx.Done():
			e.t.Fatalf("the log never said %q:\n%s", s, e.logText())
		}
	}
}

func newEnv(t testing.TB, s xenstoretest.Store) *env { return newEnvWith(t, s, nil) }

// newEnvWith is newEnv with the simulated backends set up by setup (when
// not nil) before they start.
func newEnvWith(t testing.TB, s xenstoretest.Store, setup func(*sim.Backends)) *env {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	t.Cleanup(cancel)
	root := fakekernel.TempDir(t)
	if err := fakekernel.Standard(root); err != nil {
		t.Fatal(err)
	}
	if err := fakekernel.AddDriver(root, "usbback"); err != nil {
		t.Fatal(err)
	}
	e := &env{t: t, ctx: ctx, s: s, xs: s.Dial(t), root: root, doms: map[string]sim.Domain{}, audits: make(chan agent.Audit, 1000), nextID: 1, logged: make(chan struct{}, 1)}
	if err := sim.SeedDom0(ctx, e.xs); err != nil {
		t.Fatal(err)
	}
	e.backs = &sim.Backends{XS: s.Dial(t)}
	if setup != nil {
		setup(e.backs)
	}
	run, err := e.backs.Start(ctx)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { run.Stop() })
	e.h = &assign.Host{XS: e.xs, Sys: usbsysfs.NewFS(root).WithWriter(fakekernel.NewKernel(root)), InitTimeout: 5 * time.Second, DestroyTimeout: 5 * time.Second}
	e.start("kiosk")
	e.start("desk")
	return e
}

func (e *env) start(name string) sim.Domain {
	e.t.Helper()
	return e.startAs(name, "pv")
}

// startHVM starts an HVM guest: its USB is emulated in its QEMU.
func (e *env) startHVM(name string) sim.Domain {
	e.t.Helper()
	return e.startAs(name, "hvm")
}

func (e *env) startAs(name, typ string) sim.Domain {
	e.t.Helper()
	d := sim.Domain{ID: e.nextID, Name: name, Type: typ, UUID: fmt.Sprintf("00000000-0000-4000-8000-%012x", e.nextID)}
	e.nextID++
	if err := sim.SeedDomain(e.ctx, e.xs, d); err != nil {
		e.t.Fatal(err)
	}
	if err := e.xs.Introduce(e.ctx, d.ID, 1, 1); err != nil {
		e.t.Fatal(err)
	}
	e.doms[name] = d
	return d
}

func (e *env) reboot(name string) sim.Domain {
	e.t.Helper()
	if err := replay.Destroy(e.ctx, e.h, e.xs, e.doms[name]); err != nil {
		e.t.Fatal(err)
	}
	return e.start(name)
}

// A timedWriter times the writes of the fake kernel, which stands in for
// the real kernel's own work (moving an interface between drivers).
type timedWriter struct {
	w  usbsysfs.Writer
	ns *atomic.Int64
}

func (t timedWriter) WriteAttr(path string, data []byte) error {
	t0 := time.Now()
	err := t.w.WriteAttr(path, data)
	t.ns.Add(int64(time.Since(t0)))
	return err
}

// A lockingWriter is a wrapped kernel writer that still takes the fake
// kernel's device locks: a wrapper alone would hide them from the FS.
type lockingWriter struct {
	usbsysfs.Writer
	usbsysfs.DeviceLocker
}

type never struct{}

func (never) Receive(ctx context.Context) (uevent.Message, error) {
	<-ctx.Done()
	return uevent.Message{}, ctx.Err()
}

// run starts the agent and waits until it is ready.
func (e *env) run(pol string, dryRun bool) {
	e.t.Helper()
	p, err := policy.Parse("test.toml", []byte(pol), nil)
	if err != nil {
		e.t.Fatal(err)
	}
	e.kernel = fakekernel.NewKernel(e.root)
	var kw usbsysfs.Writer = e.kernel
	if e.wrapKernel != nil {
		kw = lockingWriter{e.wrapKernel(kw), e.kernel}
	}
	sys := usbsysfs.NewFS(e.root).WithWriter(kw).WithLockWait(usbsysfs.DefaultLockWait)
	xs := e.s.Dial(e.t)
	if e.count {
		sys = usbsysfs.NewFS(e.root).WithWriter(lockingWriter{timedWriter{e.kernel, &e.kernelTime}, e.kernel}).WithLockWait(usbsysfs.DefaultLockWait)
		xs, e.counter = xenstoretest.DialCounting(e.t, e.s)
	}
	h := &assign.Host{XS: xs, Sys: sys, InitTimeout: 5 * time.Second, DestroyTimeout: 5 * time.Second, DialQMP: e.dialQMP}
	if e.mountinfo == "" {
		// The host's mounts are no business of the fixture's disks.
		e.mountinfo = filepath.Join(e.t.TempDir(), "mountinfo")
		if err := os.WriteFile(e.mountinfo, []byte(rootMount), 0o644); err != nil {
			e.t.Fatal(err)
		}
	}
	e.a = agent.New(agent.Config{Host: h, Policy: p, DryRun: dryRun, Log: zerolog.New(e), Hooks: e.hooks, HookTimeout: e.hookTimeout, Mountinfo: e.mountinfo, NoWatches: e.noWatches,
		OnAudit: func(r agent.Audit) {
			if e.onAudit != nil {
				e.onAudit(r)
			}
			e.audits <- r
		}, OnStatus: func(st agent.Status) { e.status.Store(&st) }})
	ctx, cancel := context.WithCancel(e.ctx)
	ready := make(chan struct{})
	stopped := make(chan error, 1)
	go func() { stopped <- e.a.Run(ctx, never{}, func() { close(ready) }) }()
	e.stop = sync.OnceFunc(func() {
		cancel()
		if err := <-stopped; err != nil {
			e.t.Errorf("agent: %v", err)
		}
	})
	e.t.Cleanup(e.stop)
	select {
	case <-ready:
	case err := <-stopped:
		stopped <- err // for e.stop, which the cleanup calls
		e.t.Fatalf("agent stopped: %v", err)
	case <-e.ctx.Done():
		e.t.Fatal("agent not ready")
	}
	e.settle()
	// What follows waits for what happens next.
	for len(e.audits) > 0 {
		<-e.audits
	}
}

func (e *env) settle() {
	e.t.Helper()
	if err := e.a.WaitIdle(e.ctx); err != nil {
		e.t.Fatal(err)
	}
	if err := e.backs.WaitIdle(e.ctx); err != nil {
		e.t.Fatal(err)
	}
}

// await waits for an audit of busid with action, returning it.
func (e *env) await(busid string, action agent.Action) agent.Audit {
	e.t.Helper()
	for {
		select {
		case r := <-e.audits:
			if r.BusID == busid && r.Action == action {
				return r
			}
		case <-e.ctx.Done():
			e.t.Fatalf("no %q audit for %s\nlog:\n%s", action, busid, e.logText())
		}
	}
}

func (e *env) logText() string {
	e.logMu.Lock()
	defer e.logMu.Unlock()
	return e.log.String()
}

func (e *env) at(busid string) (assign.Assignment, bool) {
	e.t.Helper()
	all, err := e.h.Assigned(e.ctx)
	if err != nil {
		e.t.Fatal(err)
	}
	for _, a := range all {
		if a.BusID == busid {
			return a, true
		}
	}
	return assign.Assignment{}, false
}

func (e *env) driverOf(intf string) string {
	d, _ := e.h.Sys.Driver(intf)
	return d
}

func TestAgentAttachesDeniesAndRespectsXL(t *testing.T) {
	xenstoretest.ForEach(t, func(t *testing.T, s xenstoretest.Store) {
		e := newEnv(t, s)
		// An admin put both mice on the kiosk with xl before the agent ran.
		for _, b := range []string{"1-4", "1-5"} {
			if _, err := e.h.Attach(e.ctx, e.doms["kiosk"].ID, policy.DevSpec{BusID: b, Controller: -1}); err != nil {
				t.Fatal(err)
			}
		}
		e.run(testPolicy, false)
		kiosk, desk := e.doms["kiosk"].ID, e.doms["desk"].ID
		if a, ok := e.at("1-2"); !ok || a.Domid != kiosk {
			t.Errorf("audio: %+v %v", a, ok)
		}
		if e.driverOf("1-2:1.0") != "usbback" || e.driverOf("1-2:1.3") != "usbback" {
			t.Errorf("audio interfaces not in usbback")
		}
		// I6: mouse A stays where the admin put it; mouse B's rule says takeover.
		if a, ok := e.at("1-4"); !ok || a.Domid != kiosk {
			t.Errorf("mouse A (the admin's) moved: %+v %v", a, ok)
		}
		if a, ok := e.at("1-5"); !ok || a.Domid != desk {
			t.Errorf("mouse B (takeover) not moved to desk: %+v %v", a, ok)
		}
		// I5: storage and hubs stay.
		for _, b := range []string{"1-3", "1-1", "usb1"} {
			if _, ok := e.at(b); ok {
				t.Errorf("%s attached", b)
			}
		}
		if e.driverOf("1-3:1.0") != "usb-storage" {
			t.Errorf("storage driver: %q", e.driverOf("1-3:1.0"))
		}
		log := e.logText()
		for _, want := range []string{`"action":"left"`, `"busid":"1-4"`, `attached by someone else: left there`, `"action":"denied"`} {
			if !strings.Contains(log, want) {
				t.Errorf("log lacks %s", want)
			}
		}
	})
}

// An admin's xl usbdev-detach of what the agent attached is respected
// until the guest restarts; then the device goes back, to the same port.
func TestAgentHoldsAfterAdminDetachAndFollowsReboot(t *testing.T) {
	xenstoretest.ForEach(t, func(t *testing.T, s xenstoretest.Store) {
		e := newEnv(t, s)
		e.run(testPolicy, false)
		a, ok := e.at("1-2")
		if !ok {
			t.Fatal("audio not attached")
		}
		if err := e.h.Detach(e.ctx, a.Domid, a.Controller, a.Port); err != nil {
			t.Fatalf("%v\nlog:\n%s", err, e.logText())
		}
		held := e.await("1-2", "held")
		if !strings.Contains(held.Reason, "detached from kiosk") {
			t.Errorf("held: %s", held.Reason)
		}
		e.settle()
		if _, ok := e.at("1-2"); ok {
			t.Fatal("the agent undid the admin's detach")
		}
		if e.driverOf("1-2:1.0") != "snd-usb-audio" {
			t.Errorf("audio not given back to dom0: %q", e.driverOf("1-2:1.0"))
		}
		k := e.reboot("kiosk")
		r := e.await("1-2", "attached")
		if r.Domid != int(k.ID) || r.Ctrl != a.Controller || r.Port != a.Port {
			t.Errorf("after the reboot: %+v, want domid %d port %d:%d", r, k.ID, a.Controller, a.Port)
		}
	})
}

// What a crash leaves: interfaces in usbback at no port, driver records at
// no port, a port naming a device that left. One pass repairs it all.
func TestAgentFinishesWhatACrashLeft(t *testing.T) {
	xenstoretest.ForEach(t, func(t *testing.T, s xenstoretest.Store) {
		e := newEnv(t, s)
		kiosk := e.doms["kiosk"].ID
		// The keyboard (no rule: stays in dom0) was attached and the port
		// cleared, then the agent died before the rebind.
		if _, err := e.h.Attach(e.ctx, kiosk, policy.DevSpec{BusID: "1-1.6", Controller: -1}); err != nil {
			t.Fatal(err)
		}
		a, _ := e.at("1-1.6")
		if err := e.xs.Write(e.ctx, fmt.Sprintf("/local/domain/0/backend/vusb/%d/%d/port/%d", kiosk, a.Controller, a.Port), nil); err != nil {
			t.Fatal(err)
		}
		if err := e.xs.Write(e.ctx, fmt.Sprintf("/libxl/%d/device/vusb/%d/port/%d", kiosk, a.Controller, a.Port), nil); err != nil {
			t.Fatal(err)
		}
		// A port names 1-7, which left while the agent was down.
		if err := e.xs.Write(e.ctx, fmt.Sprintf("/local/domain/0/backend/vusb/%d/%d/port/%d", kiosk, a.Controller, a.Port+1), []byte("1-7")); err != nil {
			t.Fatal(err)
		}
		if err := e.xs.Write(e.ctx, fmt.Sprintf("/libxl/%d/device/vusb/%d/port/%d", kiosk, a.Controller, a.Port+1), []byte("1-7")); err != nil {
			t.Fatal(err)
		}
		e.run(testPolicy, false)
		if e.driverOf("1-1.6:1.0") != "usbhid" {
			t.Errorf("keyboard not given back: %q", e.driverOf("1-1.6:1.0"))
		}
		if has, _ := e.h.HasRecord(e.ctx, "1-1.6"); has {
			t.Error("keyboard's driver records left")
		}
		if _, ok := e.at("1-7"); ok {
			t.Error("the port of 1-7 (gone) was not cleared")
		}
	})
}

// --dry-run decides and logs, and writes nothing anywhere.
func TestAgentDryRunChangesNothing(t *testing.T) {
	s := xenstoretest.Embedded(t)
	e := newEnv(t, s)
	var before bytes.Buffer
	if err := e.xs.Dump(e.ctx, &before, "/"); err != nil {
		t.Fatal(err)
	}
	e.run(testPolicy, true)
	var after bytes.Buffer
	if err := e.xs.Dump(e.ctx, &after, "/"); err != nil {
		t.Fatal(err)
	}
	if before.String() != after.String() {
		t.Errorf("the store changed in a dry run:\n%s\n---\n%s", before.String(), after.String())
	}
	if e.driverOf("1-2:1.0") != "snd-usb-audio" {
		t.Error("a dry run moved a driver")
	}
	if !strings.Contains(e.logText(), `"dry_run":true`) || !strings.Contains(e.logText(), "dry run: nothing done") {
		t.Errorf("dry run not said:\n%s", e.logText())
	}
}

// A reload moves what the agent owns and nothing the admin owns.
func TestAgentReloadMovesOnlyItsOwn(t *testing.T) {
	xenstoretest.ForEach(t, func(t *testing.T, s xenstoretest.Store) {
		e := newEnv(t, s)
		if _, err := e.h.Attach(e.ctx, e.doms["kiosk"].ID, policy.DevSpec{BusID: "1-4", Controller: -1}); err != nil {
			t.Fatal(err)
		}
		e.run(testPolicy, false)
		p, err := policy.Parse("new.toml", []byte(strings.ReplaceAll(testPolicy, `target = { domain = "kiosk" }`, `target = { domain = "desk" }`)+
			strings.ReplaceAll(`[[rule]]
name = "mice-to-lab"
action = "attach"
match = { id = "046d:c077" }
target = { domain = "lab" }
`, "\t", "")), nil)
		if err != nil {
			t.Fatal(err)
		}
		e.a.Reload(p)
		r := e.await("1-2", "attached")
		if r.Domid != int(e.doms["desk"].ID) {
			t.Errorf("audio after reload: %+v", r)
		}
		e.settle()
		if a, ok := e.at("1-4"); !ok || a.Domid != e.doms["kiosk"].ID {
			t.Errorf("the admin's mouse moved on reload: %+v", a)
		}
	})
}

func TestOwnershipRecordsAreDom0Only(t *testing.T) {
	s := xenstoretest.Embedded(t)
	e := newEnv(t, s)
	e.run(testPolicy, false)
	owned, err := agent.ListOwned(e.ctx, e.xs)
	if err != nil || owned["1-2"].Domain != "kiosk" {
		t.Fatalf("owned: %+v %v", owned, err)
	}
	guest := s.Guest(t, e.doms["kiosk"].ID)
	if _, err := guest.Read(e.ctx, agent.RecordRoot+"/1-2"); err == nil {
		t.Error("a guest read the ownership records")
	}
	if err := guest.Write(e.ctx, agent.RecordRoot+"/1-2", []byte("{}")); err == nil {
		t.Error("a guest wrote an ownership record")
	}
}

// removeEvent is the device's remove uevent, as the kernel sends it.
func removeEvent(tb testing.TB, busid string) uevent.Message {
	path := "/devices/pci0000:00/0000:00:14.0/usb1/" + busid
	e, err := uevent.Parse(fmt.Appendf(nil, "remove@%s\x00ACTION=remove\x00DEVPATH=%s\x00SUBSYSTEM=usb\x00DEVTYPE=usb_device\x00SEQNUM=2\x00", path, path))
	if err != nil {
		tb.Fatal(err)
	}
	return uevent.Message{Event: e}
}

// Kernel events lost to a receive-buffer overrun: the device that came
// meanwhile is found by the rescan the overrun triggers.
func TestAgentRescansAfterOverrun(t *testing.T) {
	xenstoretest.ForEach(t, func(t *testing.T, s xenstoretest.Store) {
		e := newEnv(t, s)
		e.run(benchPolicy(4), false)
		if err := (&fakekernel.Builder{Root: e.root}).Add(benchDev("1-6", 1)).Err(); err != nil {
			t.Fatal(err)
		}
		passes := e.a.Stats().Passes
		e.a.Handle(e.ctx, uevent.Message{Overrun: true})
		r := e.await("1-6", "attached")
		if r.Domain != "kiosk" || r.Trigger == "" {
			t.Errorf("after the overrun: %+v", r)
		}
		if !strings.Contains(e.logText(), "rescanning everything") {
			t.Error("the overrun was not logged")
		}
		if e.a.Stats().Passes == passes {
			t.Error("no pass counted")
		}
	})
}

// A device unplugged while attached: its port and every record go at
// once, and nothing is written to its (gone) interfaces.
func TestAgentDeviceLeavesClearsAtOnce(t *testing.T) {
	xenstoretest.ForEach(t, func(t *testing.T, s xenstoretest.Store) {
		e := newEnv(t, s)
		e.run(testPolicy, false)
		if _, ok := e.at("1-2"); !ok {
			t.Fatal("audio not attached")
		}
		before := len(e.kernel.Writes())
		if err := e.kernel.Unplug("1-2"); err != nil {
			t.Fatal(err)
		}
		e.a.Handle(e.ctx, removeEvent(t, "1-2"))
		e.await("1-2", "cleared")
		e.settle()
		if _, ok := e.at("1-2"); ok {
			t.Error("the port still names 1-2")
		}
		if has, _ := e.h.HasRecord(e.ctx, "1-2"); has {
			t.Error("driver records of 1-2 left")
		}
		owned, err := agent.ListOwned(e.ctx, e.xs)
		if err != nil {
			t.Fatal(err)
		}
		if _, ok := owned["1-2"]; ok {
			t.Error("ownership record of 1-2 left")
		}
		for _, w := range e.kernel.Writes()[before:] {
			if strings.Contains(string(w.Data), "1-2:") {
				t.Errorf("wrote %q to %s for a device that left", w.Data, w.Path)
			}
		}
	})
}

// A guest that dies without its toolstack cleaning up (its nodes removed,
// its domain released, the interfaces left in usbback): the agent gives
// the interfaces back to dom0, and the device returns when the guest does.
func TestAgentGivesBackWhatAVanishedGuestHeld(t *testing.T) {
	xenstoretest.ForEach(t, func(t *testing.T, s xenstoretest.Store) {
		e := newEnv(t, s)
		e.run(testPolicy, false)
		d := e.doms["kiosk"]
		if a, ok := e.at("1-2"); !ok || a.Domid != d.ID {
			t.Fatal("audio not attached to the kiosk")
		}
		if err := sim.ForceDestroy(e.ctx, e.xs, d); err != nil {
			t.Fatal(err)
		}
		if r := e.await("1-2", "released"); !strings.Contains(r.Reason, "(its guest kiosk, domid 1, whose port 0:1 it had, is gone)") {
			t.Errorf("released: %s", r.Reason)
		}
		e.settle()
		for _, intf := range []string{"1-2:1.0", "1-2:1.3"} {
			if drv := e.driverOf(intf); drv == "usbback" || drv == "" {
				t.Errorf("%s left with driver %q", intf, drv)
			}
		}
		k := e.start("kiosk")
		if r := e.await("1-2", "attached"); r.Domid != int(k.ID) {
			t.Errorf("after the guest came back: %+v", r)
		}
	})
}
