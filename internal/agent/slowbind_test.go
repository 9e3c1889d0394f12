package agent_test

import (
	"io/fs"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"

	"github.com/usbhotplugd/usbhotplugd/internal/agent"
	"github.com/usbhotplugd/usbhotplugd/internal/fakekernel"
	"github.com/usbhotplugd/usbhotplugd/internal/usbsysfs"
	"github.com/usbhotplugd/usbhotplugd/internal/xenstore/xenstoretest"
	"github.com/usbhotplugd/usbhotplugd/policy"
)

// dom0Probe says whether a write has a dom0 driver probe data's interface:
// a drivers_probe, or a bind to a driver other than usbback.
func dom0Probe(path string) bool {
	base := filepath.Base(path)
	return base == "drivers_probe" || base == "bind" && !strings.HasSuffix(filepath.Dir(path), "usbback")
}

// probing holds the device lock of intf's device, as the kernel does
// through a probe, while wait waits for the test.
func probing(root, intf string, wait func()) error {
	busid, _, _ := strings.Cut(intf, ":")
	unlock, err := fakekernel.HoldDevice(root, busid)
	if err != nil {
		return err
	}
	wait()
	unlock()
	return nil
}

// A slowProbe is a kernel whose bind of one interface to a dom0 driver
// probes it until the test lets go: the real kernel runs the driver's
// probe inside the write, under the device's lock, and a device that
// answers nothing makes it last 5 s per control message.
type slowProbe struct {
	usbsysfs.Writer
	root, intf string
	entered    chan struct{} // closed when the probe began
	release    chan struct{} // the test closes it to end the probe
	finished   chan struct{} // closed when the write returned
	once       *sync.Once
}

func (s slowProbe) WriteAttr(path string, data []byte) error {
	if string(data) != s.intf || !dom0Probe(path) || !first(s.once) {
		return s.Writer.WriteAttr(path, data)
	}
	if err := probing(s.root, s.intf, func() { close(s.entered); <-s.release }); err != nil {
		return err
	}
	defer close(s.finished)
	return s.Writer.WriteAttr(path, data)
}

// first says whether this is the first call with once.
func first(once *sync.Once) (yes bool) {
	once.Do(func() { yes = true })
	return yes
}

// A dom0 driver whose probe of a device takes long (run by the agent's own
// drivers_probe, as it gives a device no rule names back to dom0 under
// authorization before probe) does not hold up any other device: the
// agent goes on while the kernel probes, and looks at the device again
// when the probe ends, with no failure recorded.
func TestAgentSlowDom0ProbeHoldsUpNoOtherDevice(t *testing.T) {
	xenstoretest.ForEach(t, func(t *testing.T, s xenstoretest.Store) {
		e := newEnv(t, s)
		e.noWatches = true
		sp := slowProbe{root: e.root, intf: "1-9:1.0", entered: make(chan struct{}), release: make(chan struct{}), finished: make(chan struct{}), once: &sync.Once{}}
		var releaseOnce sync.Once
		end := func() { releaseOnce.Do(func() { close(sp.release) }) }
		e.wrapKernel = func(w usbsysfs.Writer) usbsysfs.Writer { sp.Writer = w; return sp }
		e.run(authzPolicy, false)
		t.Cleanup(end) // before the agent's stop, which waits for its worker
		if err := (&fakekernel.Builder{Root: e.root}).Add(keyboard("1-9", "0004")).Add(keyboard("1-6", "0001")).Err(); err != nil {
			t.Fatal(err)
		}
		e.a.Handle(e.ctx, addEvent(t, "1-9"))
		select {
		case <-sp.entered:
		case <-e.ctx.Done():
			t.Fatal("1-9 was never offered to dom0's drivers")
		}
		e.a.Handle(e.ctx, addEvent(t, "1-6"))
		if r := e.await("1-6", agent.ActAttached); r.Domid != int(e.doms["kiosk"].ID) {
			t.Errorf("the badge reader: %+v", r)
		}
		end()
		<-sp.finished
		e.settle()
		if drv := e.driverOf("1-9:1.0"); drv != "usbhid" {
			t.Errorf("1-9:1.0 has driver %q after its probe, want usbhid", drv)
		}
		e.awaitLog(`"busid":"1-9","id":"1234:0004","trigger":"the kernel let go of it"`)
		e.settle()
		if log := e.logText(); strings.Contains(log, `"action":"failed"`) {
			t.Errorf("a failure was recorded:\n%s", log)
		}
		if b, err := e.xs.Read(e.ctx, agent.GivingRoot+"/1-9"); err == nil {
			t.Errorf("the record of giving 1-9 to dom0 stays: %q", b)
		}
	})
}

// gatedProbes is a kernel whose every bind of busid's interfaces to a
// dom0 driver, and every drivers_probe of them, probes until the test
// lets it end: a device that answers no driver is slow in each of them.
type gatedProbes struct {
	usbsysfs.Writer
	root, busid string
	entered     chan string   // the interface whose probe began
	release     chan struct{} // a token ends one probe
}

func (g gatedProbes) WriteAttr(path string, data []byte) error {
	if !strings.HasPrefix(string(data), g.busid+":") || !dom0Probe(path) {
		return g.Writer.WriteAttr(path, data)
	}
	if err := probing(g.root, string(data), func() { g.entered <- string(data); <-g.release }); err != nil {
		return err
	}
	return g.Writer.WriteAttr(path, data)
}

// noStoragePolicy keeps storage in dom0 and names no other device: the
// audio device 1-2 that testPolicy attaches is given back under it.
const noStoragePolicy = "[[rule]]\nname = \"no-storage\"\naction = \"deny\"\nmatch = { interface = \"storage\" }\n"

func noStorage(t *testing.T) *policy.Policy {
	t.Helper()
	p, err := policy.Parse("test.toml", []byte(noStoragePolicy), nil)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// audioDrivers are the dom0 drivers of the audio device 1-2's interfaces.
var audioDrivers = map[string]string{"1-2:1.0": "snd-usb-audio", "1-2:1.1": "snd-usb-audio", "1-2:1.2": "snd-usb-audio", "1-2:1.3": "usbhid"}

// awaitLogCount waits until the log says s n times.
func (e *env) awaitLogCount(s string, n int) {
	e.t.Helper()
	for strings.Count(e.logText(), s) < n {
		select {
		case <-e.logged:
		case <-e.ctx.Done():
			e.t.Fatalf("the log never said %q %d times:\n%s", s, n, e.logText())
		}
	}
}

const busyLog = "the kernel is still at it"

// gate lets each probe of g end once the agent has gone on without it
// (its log says so: detached, or still at it), until n have ended.
func (e *env) gate(g gatedProbes, n int) {
	e.t.Helper()
	for i := range n {
		select {
		case <-g.entered:
		case <-e.ctx.Done():
			e.t.Fatalf("%d of %d probes began:\n%s", i, n, e.logText())
		}
		e.awaitLogCount(busyLog, i+1)
		g.release <- struct{}{}
	}
}

// A device given back from a guest whose every dom0 probe is slow: the
// detach is recorded at once, and each interface is bound to its own
// driver, one after another as the kernel ends each probe, none left
// without a driver and no failure recorded.
func TestAgentGiveBackWithSlowProbesBindsEveryInterface(t *testing.T) {
	xenstoretest.ForEach(t, func(t *testing.T, s xenstoretest.Store) {
		e := newEnv(t, s)
		e.noWatches = true
		g := gatedProbes{root: e.root, busid: "1-2", entered: make(chan string), release: make(chan struct{})}
		e.wrapKernel = func(w usbsysfs.Writer) usbsysfs.Writer { g.Writer = w; return g }
		e.run(testPolicy, false)
		if _, ok := e.at("1-2"); !ok {
			t.Fatal("the audio device is not attached")
		}
		e.a.Reload(noStorage(t))
		// The first probe outlasts the wait: the detach is done.
		select {
		case <-g.entered:
		case <-e.ctx.Done():
			t.Fatal("no probe began")
		}
		e.awaitLog("detached; its dom0 driver's probe goes on")
		if r := e.await("1-2", agent.ActDetached); r.Domid != int(e.doms["kiosk"].ID) || r.Port != 1 {
			t.Errorf("detached record: %+v", r)
		}
		if _, ok := e.at("1-2"); ok {
			t.Error("still at its port")
		}
		g.release <- struct{}{}
		e.gate(g, 3) // each of the others, as the kernel lets go of the one before
		e.await("1-2", agent.ActReleased)
		e.settle()
		e.stop()
		for intf, want := range audioDrivers {
			if drv := e.driverOf(intf); drv != want {
				t.Errorf("%s has driver %q, want %s", intf, drv, want)
			}
		}
		if b, err := e.xs.Read(e.ctx, "/libxl/usbback/1-2"); err == nil {
			t.Errorf("its driver records stay: %q", b)
		}
		if log := e.logText(); strings.Contains(log, `"action":"failed"`) {
			t.Errorf("a failure was recorded:\n%s", log)
		}
	})
}

// An attach rolled back (usbback refused an interface with EIO) whose
// give-back of the interfaces it took is slow: the failure is recorded,
// not taken for the kernel being busy, and once the kernel is done the
// interfaces are given back and the attach tried again.
func TestAgentRollbackWithASlowProbeKeepsTheDriverRecords(t *testing.T) {
	xenstoretest.ForEach(t, func(t *testing.T, s xenstoretest.Store) {
		e := newEnv(t, s)
		e.noWatches = true
		sp := slowProbe{root: e.root, intf: "1-2:1.0", entered: make(chan struct{}), release: make(chan struct{}), finished: make(chan struct{}), once: &sync.Once{}}
		var failed sync.Once
		e.wrapKernel = func(w usbsysfs.Writer) usbsysfs.Writer {
			e.kernel.Fail = func(w fakekernel.Write) error {
				var err error
				if w.Path == "bus/usb/drivers/usbback/bind" && w.Data == "1-2:1.2" {
					failed.Do(func() { err = &fs.PathError{Op: "write", Path: w.Path, Err: syscall.EIO} })
				}
				return err
			}
			sp.Writer = w
			return sp
		}
		e.run(noStoragePolicy, false)
		var releaseOnce sync.Once
		end := func() { releaseOnce.Do(func() { close(sp.release) }) }
		t.Cleanup(end)
		p, err := policy.Parse("test.toml", []byte(testPolicy), nil)
		if err != nil {
			t.Fatal(err)
		}
		e.a.Reload(p)
		if r := e.await("1-2", agent.ActFailed); !strings.Contains(r.Reason, "input/output error") {
			t.Errorf("the failure: %s", r.Reason)
		}
		select {
		case <-sp.entered:
		case <-e.ctx.Done():
			t.Fatal("the rollback's give-back never began")
		}
		end()
		<-sp.finished
		if r := e.await("1-2", agent.ActAttached); r.Domid != int(e.doms["kiosk"].ID) {
			t.Errorf("attached again: %+v", r)
		}
		e.settle()
		e.stop()
		// Each interface's dom0 driver is recorded again, as at the first
		// attach: its detach gives every one back.
		for intf, want := range audioDrivers {
			if drv := e.driverOf(intf); drv != "usbback" {
				t.Errorf("%s has driver %q, want usbback", intf, drv)
			}
			if b := e.driverRecord(intf); !strings.HasSuffix(b, "/"+want) {
				t.Errorf("%s's dom0 driver recorded as %q, want %s", intf, b, want)
			}
		}
	})
}

// slowFail is a kernel whose every bind of intf to a dom0 driver, and
// every drivers_probe of it, probes until the test lets it end, then
// fails (EINVAL: the driver refused it).
type slowFail struct {
	usbsysfs.Writer
	root, intf string
	entered    chan struct{}
	release    chan struct{} // a token ends one probe
	done       chan struct{} // closed: every probe ends at once
}

func (g slowFail) WriteAttr(path string, data []byte) error {
	if string(data) != g.intf || !dom0Probe(path) {
		return g.Writer.WriteAttr(path, data)
	}
	err := probing(g.root, g.intf, func() {
		select {
		case g.entered <- struct{}{}:
			select {
			case <-g.release:
			case <-g.done:
			}
		case <-g.done:
		}
	})
	if err != nil {
		return err
	}
	return &fs.PathError{Op: "write", Path: path, Err: syscall.EINVAL}
}

// A dom0 probe that is slow and then fails is told as a failure once the
// kernel ends it, and the other interfaces are given back meanwhile: the
// agent does not try the failing one first again and again, taking the
// device for busy each time.
func TestAgentSlowFailingProbeIsAFailure(t *testing.T) {
	xenstoretest.ForEach(t, func(t *testing.T, s xenstoretest.Store) {
		e := newEnv(t, s)
		e.noWatches = true
		g := slowFail{root: e.root, intf: "1-2:1.0", entered: make(chan struct{}), release: make(chan struct{}), done: make(chan struct{})}
		t.Cleanup(func() { close(g.done) })
		e.wrapKernel = func(w usbsysfs.Writer) usbsysfs.Writer { g.Writer = w; return g }
		e.run(testPolicy, false)
		e.a.Reload(noStorage(t))
		select {
		case <-g.entered:
		case <-e.ctx.Done():
			t.Fatal("no probe began")
		}
		e.awaitLog("detached; its dom0 driver's probe goes on")
		g.release <- struct{}{}
		// Each later try of it is as slow: it ends once the agent has
		// gone on without it (it says it goes on, or records a failure).
		stopped := make(chan struct{})
		went := func() int { l := e.logText(); return strings.Count(l, busyLog) + strings.Count(l, `"action":"failed"`) }
		go func() {
			for n := went(); ; n = went() {
				select {
				case <-g.entered:
				case <-stopped:
					return
				}
				for went() <= n {
					select {
					case <-e.logged:
					case <-stopped:
						return
					}
				}
				g.release <- struct{}{}
			}
		}()
		r := e.await("1-2", agent.ActFailed)
		if !strings.Contains(r.Reason, "invalid argument") {
			t.Errorf("the failure: %s", r.Reason)
		}
		close(stopped)
		e.stop()
		for intf, want := range map[string]string{"1-2:1.1": "snd-usb-audio", "1-2:1.2": "snd-usb-audio", "1-2:1.3": "usbhid"} {
			if drv := e.driverOf(intf); drv != want {
				t.Errorf("%s has driver %q, want %s", intf, drv, want)
			}
		}
	})
}

// A device moved from one guest to another whose give-back is slow: the
// detach is told at once and the worker goes on with other devices (the
// attach elsewhere would wait for the device's lock); once the kernel is
// done, the device is attached to its new guest with its own drivers
// recorded.
func TestAgentMoveWithASlowGiveBackStallsNothing(t *testing.T) {
	xenstoretest.ForEach(t, func(t *testing.T, s xenstoretest.Store) {
		e := newEnv(t, s)
		e.noWatches = true
		sp := slowProbe{root: e.root, intf: "1-2:1.0", entered: make(chan struct{}), release: make(chan struct{}), finished: make(chan struct{}), once: &sync.Once{}}
		var releaseOnce sync.Once
		end := func() { releaseOnce.Do(func() { close(sp.release) }) }
		e.wrapKernel = func(w usbsysfs.Writer) usbsysfs.Writer { sp.Writer = w; return sp }
		e.run(testPolicy, false)
		t.Cleanup(end)
		moved := strings.Replace(testPolicy, "target = { domain = \"kiosk\" }", "target = { domain = \"desk\" }", 1) +
			"[[rule]]\nname = \"sticks\"\naction = \"attach\"\nmatch = { id = \"1234:5678\" }\ntarget = { domain = \"kiosk\" }\n"
		p, err := policy.Parse("test.toml", []byte(moved), nil)
		if err != nil {
			t.Fatal(err)
		}
		e.a.Reload(p)
		select {
		case <-sp.entered:
		case <-e.ctx.Done():
			t.Fatal("no probe began")
		}
		if r := e.await("1-2", agent.ActDetached); r.Domid != int(e.doms["kiosk"].ID) {
			t.Errorf("detached: %+v", r)
		}
		if err := (&fakekernel.Builder{Root: e.root}).Add(benchDev("1-6", 1)).Err(); err != nil {
			t.Fatal(err)
		}
		e.a.Handle(e.ctx, addEvent(t, "1-6"))
		e.await("1-6", agent.ActAttached)
		end()
		<-sp.finished
		if r := e.await("1-2", agent.ActAttached); r.Domid != int(e.doms["desk"].ID) {
			t.Errorf("attached: %+v", r)
		}
		e.settle()
		e.stop()
		for intf, want := range audioDrivers {
			if b := e.driverRecord(intf); e.driverOf(intf) != "usbback" || !strings.HasSuffix(b, "/"+want) {
				t.Errorf("%s: driver %q, record %q, want usbback and %s", intf, e.driverOf(intf), b, want)
			}
		}
	})
}

// A replug seen only as a new address, whose give-back is slow (usbback
// took the new plug's interfaces, as its port still named the busid, and
// their drivers_probe outlasts the wait): the plug that left is still
// told as cleared and gone, though the pass leaves the device itself to
// the pass after the kernel lets go.
func TestAgentReplugWithASlowGiveBackTellsThePlugThatLeft(t *testing.T) {
	disc := fakekernel.Dev{BusID: "1-7", DevNum: 33, Vendor: "12d1", Product: "1446", Class: "00", Serial: "HW1",
		Interfaces: []fakekernel.Intf{{Class: "08", SubClass: "06", Protocol: "50", Driver: "usb-storage"}}}
	modem := fakekernel.Dev{BusID: "1-7", DevNum: 34, Vendor: "12d1", Product: "1506", Class: "00", Serial: "HW1",
		Interfaces: []fakekernel.Intf{{Class: "ff", SubClass: "ff", Protocol: "ff", Driver: "usbback"}, {Class: "ff", SubClass: "ff", Protocol: "ff", Driver: "usbback"}}}
	xenstoretest.ForEach(t, func(t *testing.T, s xenstoretest.Store) {
		e := newEnv(t, s)
		e.noWatches = true
		sp := slowProbe{root: e.root, intf: "1-7:1.0", entered: make(chan struct{}), release: make(chan struct{}), finished: make(chan struct{}), once: &sync.Once{}}
		var releaseOnce sync.Once
		end := func() { releaseOnce.Do(func() { close(sp.release) }) }
		e.wrapKernel = func(w usbsysfs.Writer) usbsysfs.Writer { sp.Writer = w; return sp }
		e.run(modeswitchPolicy, false)
		t.Cleanup(end)
		e.kernel.UsbbackPorts = fakekernel.StorePorts(e.ctx, e.s.Dial(t))
		if err := e.kernel.Plug(disc); err != nil {
			t.Fatal(err)
		}
		e.a.Handle(e.ctx, addEvent(t, "1-7"))
		e.await("1-7", agent.ActAttached)
		e.settle()
		if err := e.kernel.Unplug("1-7"); err != nil {
			t.Fatal(err)
		}
		if err := e.kernel.Plug(modem); err != nil {
			t.Fatal(err)
		}
		e.a.Handle(e.ctx, addEvent(t, "1-7"))
		select {
		case <-sp.entered:
		case <-e.ctx.Done():
			t.Fatalf("no slow probe:\n%s", e.logText())
		}
		e.awaitLog("detached; its dom0 driver's probe goes on")
		end()
		<-sp.finished
		e.await("1-7", agent.ActUnmatched)
		e.settle()
		log := e.logText()
		if !strings.Contains(log, `"action":"cleared"`) {
			t.Errorf("the old plug's port was cleared but no cleared record was written")
		}
		if !strings.Contains(log, `"action":"gone"`) {
			t.Errorf("no gone record for the old plug")
		}
	})
}

// failOnceThenAdmin is a kernel whose first bind of intf to a dom0 driver
// probes until the test lets it end and fails (EINVAL), and an admin
// binds it by hand right after.
type failOnceThenAdmin struct {
	usbsysfs.Writer
	root, intf string
	entered    chan struct{}
	release    chan struct{}
	once       *sync.Once
}

func (g failOnceThenAdmin) WriteAttr(path string, data []byte) error {
	if string(data) != g.intf || filepath.Base(path) != "bind" || !dom0Probe(path) || !first(g.once) {
		return g.Writer.WriteAttr(path, data)
	}
	if err := probing(g.root, g.intf, func() { close(g.entered); <-g.release }); err != nil {
		return err
	}
	// The admin's echo 1-2:1.0 > .../snd-usb-audio/bind, which works.
	if err := g.Writer.WriteAttr(path, data); err != nil {
		return err
	}
	return &fs.PathError{Op: "write", Path: path, Err: syscall.EINVAL}
}

// How a slow bind ended answers only the next write of that interface: an
// attach and a detach later, its bind to its dom0 driver is written, and
// not answered by that old failure.
func TestAgentALateFailureAnswersNoLaterBind(t *testing.T) {
	xenstoretest.ForEach(t, func(t *testing.T, s xenstoretest.Store) {
		e := newEnv(t, s)
		e.noWatches = true
		g := failOnceThenAdmin{root: e.root, intf: "1-2:1.0", entered: make(chan struct{}), release: make(chan struct{}), once: &sync.Once{}}
		var ro sync.Once
		end := func() { ro.Do(func() { close(g.release) }) }
		e.wrapKernel = func(w usbsysfs.Writer) usbsysfs.Writer { g.Writer = w; return g }
		e.run(testPolicy, false)
		t.Cleanup(end)
		deny := noStorage(t)
		attach, err := policy.Parse("test.toml", []byte(testPolicy), nil)
		if err != nil {
			t.Fatal(err)
		}
		e.a.Reload(deny)
		<-g.entered
		e.awaitLog("detached; its dom0 driver's probe goes on")
		end()
		e.await("1-2", agent.ActReleased)
		e.settle()
		if d := e.driverOf("1-2:1.0"); d != "snd-usb-audio" {
			t.Fatalf("1-2:1.0 with %q after the admin's bind", d)
		}
		// Some time later: to the guest and back.
		e.a.Reload(attach)
		e.await("1-2", agent.ActAttached)
		e.settle()
		n := len(e.kernel.Writes())
		e.a.Reload(deny)
		e.await("1-2", agent.ActDetached)
		e.settle()
		var wrote bool
		for _, w := range e.kernel.Writes()[n:] {
			wrote = wrote || w.Data == "1-2:1.0" && strings.HasSuffix(w.Path, "snd-usb-audio/bind")
		}
		if !wrote || e.driverOf("1-2:1.0") != "snd-usb-audio" {
			t.Errorf("the second give-back: bind written %v, 1-2:1.0 with %q", wrote, e.driverOf("1-2:1.0"))
		}
		if log := e.logText(); strings.Contains(log, "after the wait") {
			t.Errorf("an old late failure answered a later bind:\n%s", log)
		}
	})
}
