package agent_test

import (
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/usbhotplugd/usbhotplugd/internal/agent"
	"github.com/usbhotplugd/usbhotplugd/internal/fakekernel"
	"github.com/usbhotplugd/usbhotplugd/internal/usbsysfs"
	"github.com/usbhotplugd/usbhotplugd/internal/xenstore/xenstoretest"
)

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
	base := filepath.Base(path)
	if string(data) != s.intf || base != "drivers_probe" && (base != "bind" || strings.HasSuffix(filepath.Dir(path), "usbback")) {
		return s.Writer.WriteAttr(path, data)
	}
	first := false
	s.once.Do(func() { first = true })
	if !first {
		return s.Writer.WriteAttr(path, data)
	}
	busid, _, _ := strings.Cut(s.intf, ":")
	unlock, err := fakekernel.HoldDevice(s.root, busid)
	if err != nil {
		return err
	}
	close(s.entered)
	<-s.release
	unlock()
	defer close(s.finished)
	return s.Writer.WriteAttr(path, data)
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
