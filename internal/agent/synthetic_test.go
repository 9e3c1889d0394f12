package agent_test

import (
	"path/filepath"
	"testing"

	"github.com/usbhotplugd/usbhotplugd/internal/xenstore/xenstoretest"
)

// Synthetic events (udevadm trigger, echo ACTION > uevent) change nothing
// on the host, and nothing of what the agent did: a synthetic remove of an
// attached device, an unbind of its interface and an add leave it at its
// port, in usbback.
func TestAgentSyntheticEventsChangeNothing(t *testing.T) {
	xenstoretest.ForEach(t, func(t *testing.T, s xenstoretest.Store) {
		e := newEnv(t, s)
		e.run(testPolicy, false)
		evs := e.hearKernel()
		was, ok := e.at("1-2")
		if !ok {
			t.Fatal("audio not attached")
		}
		for _, w := range []struct{ name, data string }{{"1-2", "remove"}, {"1-2:1.0", "unbind"}, {"1-2", "add"}, {"1-2", "change"}} {
			if err := e.kernel.WriteAttr(filepath.Join(e.root, "bus/usb/devices", w.name, "uevent"), []byte(w.data)); err != nil {
				t.Fatal(err)
			}
			e.settle()
		}
		if n := len(evs.all()); n != 4 {
			t.Fatalf("the kernel sent %d events, want the 4 synthetic ones", n)
		}
		if x, ok := e.at("1-2"); !ok || x != was {
			t.Errorf("after synthetic events 1-2 is at %+v %v, want %+v", x, ok, was)
		}
		for _, intf := range []string{"1-2:1.0", "1-2:1.3"} {
			if drv := e.driverOf(intf); drv != "usbback" {
				t.Errorf("%s has driver %q, want usbback", intf, drv)
			}
		}
		for len(e.audits) > 0 {
			if r := <-e.audits; r.BusID == "1-2" {
				t.Errorf("a synthetic event made a decision: %+v", r)
			}
		}
	})
}
