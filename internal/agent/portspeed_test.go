package agent_test

import (
	"context"
	"strings"
	"testing"

	"github.com/usbhotplugd/usbhotplugd/internal/agent"
	"github.com/usbhotplugd/usbhotplugd/internal/fakekernel"
	"github.com/usbhotplugd/usbhotplugd/internal/usbsysfs"
	"github.com/usbhotplugd/usbhotplugd/internal/xenstore/xenstoretest"
)

// A guest with a USB 2.0 controller whose ports are all taken and a USB
// 1.1 controller with free ports: a high-speed device gets a new
// controller (libxl's default, USB 2.0), as when no controller has a free
// port, not the 1.1 port that usbback refuses (which would stand until a
// replug or a reload).
func TestAgentAddsAControllerForAHighSpeedDeviceOnlyUSB11PortsCouldTake(t *testing.T) {
	xenstoretest.ForEach(t, func(t *testing.T, s xenstoretest.Store) {
		e := newEnv(t, s)
		e.wrapKernel = func(kw usbsysfs.Writer) usbsysfs.Writer {
			kw.(*fakekernel.Kernel).UsbbackPorts = fakekernel.StorePorts(context.Background(), s.Dial(t))
			return kw
		}
		pol := "[domain.kiosk]\nusbctrl = [\"version=2, ports=1\", \"version=1, ports=2\"]\n" + keyboardsPolicy
		e.run(pol, false)
		e.hearKernel()
		kiosk := e.doms["kiosk"].ID
		if a, ok := e.at("1-2"); !ok || a.Domid != kiosk || a.Controller != 0 {
			t.Fatalf("the audio device is at %+v (%v), want kiosk's USB 2.0 controller 0", a, ok)
		}
		if err := e.kernel.Plug(keyboard("1-6", "0001")); err != nil { // speed 480
			t.Fatal(err)
		}
		r, ok := e.awaitOneOf("1-6", agent.ActAttached, agent.ActRefused, agent.ActFailed)
		if !ok || r.Action != agent.ActAttached {
			t.Fatalf("the high-speed 1-6, kiosk's USB 2.0 ports all taken and its USB 1.1 ones free: %s (%v): %s; want attached at a controller that carries it (a new one, as when none has a free port)", r.Action, ok, r.Reason)
		}
	})
}

// A rule pins the keyboards to kiosk's port 0:1, on a USB 1.1
// controller: the high-speed device is attached at the USB 2.0 one
// instead, and its record says why the pin was passed over.
func TestAgentSaysWhyAPinnedUSB11PortWasPassedOver(t *testing.T) {
	xenstoretest.ForEach(t, func(t *testing.T, s xenstoretest.Store) {
		e := newEnv(t, s)
		pol := "[domain.kiosk]\nusbctrl = [\"version=1, ports=2\", \"version=2, ports=2\"]\n" +
			strings.Replace(keyboardsPolicy, "match = { id = \"1234:0001\" }\ntarget = { domain = \"kiosk\" }", "match = { id = \"1234:0001\" }\ntarget = { domain = \"kiosk\", controller = 0, port = 1 }", 1)
		// The audio device goes to the desk: the pinned port stays free.
		pol = strings.Replace(pol, "match = { id = \"0d8c:0014\" }\ntarget = { domain = \"kiosk\" }", "match = { id = \"0d8c:0014\" }\ntarget = { domain = \"desk\" }", 1)
		if !strings.Contains(pol, "controller = 0, port = 1") || !strings.Contains(pol, "0d8c:0014\" }\ntarget = { domain = \"desk\"") {
			t.Fatal("the pin was not put in the policy")
		}
		e.run(pol, false)
		e.hearKernel()
		if err := e.kernel.Plug(keyboard("1-6", "0001")); err != nil { // speed 480
			t.Fatal(err)
		}
		r := e.await("1-6", agent.ActAttached)
		if r.Ctrl == 0 && r.Port == 1 {
			t.Fatal("the high-speed 1-6 was attached at its pinned USB 1.1 port 0:1, which usbback refuses")
		}
		if !strings.Contains(r.Reason, "pinned port 0:1") {
			t.Errorf("1-6 attached at %d:%d, not at its pinned port 0:1, and the record does not say why: %s", r.Ctrl, r.Port, r.Reason)
		}
	})
}
