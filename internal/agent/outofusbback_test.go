package agent_test

import (
	"strings"
	"testing"

	"github.com/usbhotplugd/usbhotplugd/internal/agent"
	"github.com/usbhotplugd/usbhotplugd/internal/fakekernel"
	"github.com/usbhotplugd/usbhotplugd/internal/xenstore/xenstoretest"
)

const kioskKeyboard = `
[[rule]]
name = "kiosk keyboard"
action = "attach"
match = { id = "1234:0001" }
target = { domain = "kiosk" }
`

// plugKept plugs a keyboard for the kiosk into a fake kernel whose usbback
// knows the store's ports (it probes what they name, as Xen's does), and
// returns its attach record, its interface bound to usbback.
func (e *env) plugKept(busid string) agent.Audit {
	e.t.Helper()
	e.kernel.UsbbackPorts = fakekernel.StorePorts(e.ctx, e.s.Dial(e.t))
	e.hearKernel()
	kbd := keyboard(busid, "0001")
	kbd.Wakeup = true // as a keyboard's configuration is: a change event comes with it
	if err := e.kernel.Plug(kbd); err != nil {
		e.t.Fatal(err)
	}
	r := e.await(busid, agent.ActAttached)
	e.settle()
	if drv := e.driverOf(busid + ":1.0"); drv != "usbback" {
		e.t.Fatalf("%s:1.0 has driver %q, want usbback", busid, drv)
	}
	return r
}

// awaitReason waits for a record of busid whose reason holds s.
func (e *env) awaitReason(busid, s string) agent.Audit {
	e.t.Helper()
	for {
		r := e.await(busid, agent.ActKept)
		if strings.Contains(r.Reason, s) {
			return r
		}
	}
}

// whatIsSaid checks that status and explain give reason as busid's.
func (e *env) whatIsSaid(busid, reason string) {
	e.t.Helper()
	st := e.status.Load()
	var said []string
	for _, d := range st.Devices {
		if d.BusID == busid {
			said = append(said, "status: "+d.Reason)
		}
	}
	ex, err := e.a.Explain(busid)
	if err != nil || len(ex) != 1 || ex[0].Last == nil {
		e.t.Fatalf("explain %s: %+v %v", busid, ex, err)
	}
	said = append(said, "explain: "+ex[0].Last.Reason)
	if len(said) != 2 || said[0] != "status: "+reason || said[1] != "explain: "+reason {
		e.t.Errorf("%s: said %q, want %q", busid, said, reason)
	}
}

// An admin unbinds an interface of a device the agent attached from
// usbback, its port still naming it: the agent says so (kept, the
// interface not in usbback, unbound by someone else) in the record, status
// and explain, and does not bind it again. Bound back, the reason is the
// rule's again.
func TestAgentSaysWhatSomeoneElseUnboundFromUsbback(t *testing.T) {
	xenstoretest.ForEach(t, func(t *testing.T, s xenstoretest.Store) {
		e := newEnv(t, s)
		e.run(kioskKeyboard, false)
		first := e.plugKept("1-9")
		if err := e.kernel.WriteAttr(e.root+"/bus/usb/drivers/usbback/unbind", []byte("1-9:1.0")); err != nil {
			t.Fatal(err)
		}
		before := len(e.kernel.Writes())
		r := e.awaitReason("1-9", "but interface 1-9:1.0 is not in usbback: unbound by someone else")
		if !strings.HasPrefix(r.Reason, first.Reason+"; attached to kiosk at port 0:1, but") || r.Port != first.Port || r.Domain != "kiosk" {
			t.Errorf("the record: %+v (attached: %+v)", r, first)
		}
		e.settle()
		if w := e.kernel.Writes()[before:]; len(w) > 0 {
			t.Errorf("the agent fought the admin's unbind: %+v", w)
		}
		if drv := e.driverOf("1-9:1.0"); drv != "" {
			t.Errorf("1-9:1.0 has driver %q, want none", drv)
		}
		if x, ok := e.at("1-9"); !ok || x.Port != first.Port {
			t.Errorf("its port: %+v %v", x, ok)
		}
		e.whatIsSaid("1-9", r.Reason)
		// The admin binds it back: the rule's reason alone again.
		if err := e.kernel.WriteAttr(e.root+"/bus/usb/drivers/usbback/bind", []byte("1-9:1.0")); err != nil {
			t.Fatal(err)
		}
		if back := e.await("1-9", agent.ActKept); back.Reason != first.Reason {
			t.Errorf("bound back: %q, want %q", back.Reason, first.Reason)
		}
		e.settle()
		e.whatIsSaid("1-9", first.Reason)
	})
}

// A device the agent attached is unconfigured (0 written to its
// bConfigurationValue): its interfaces go, its port stays, and the agent
// says the guest sees none. Configured again, the kernel probes its
// interface (dom0's driver first, as it is loaded first), the agent moves
// it back to usbback, and the reason is the rule's again.
func TestAgentSaysAnAttachedDeviceIsUnconfigured(t *testing.T) {
	xenstoretest.ForEach(t, func(t *testing.T, s xenstoretest.Store) {
		e := newEnv(t, s)
		e.run(kioskKeyboard, false)
		first := e.plugKept("1-9")
		cfg := e.root + "/bus/usb/devices/1-9/bConfigurationValue"
		if err := e.kernel.WriteAttr(cfg, []byte("0")); err != nil {
			t.Fatal(err)
		}
		r := e.awaitReason("1-9", "attached to kiosk at port 0:1, unconfigured: the guest sees no interfaces")
		if !strings.HasPrefix(r.Reason, first.Reason+"; ") || r.Port != first.Port {
			t.Errorf("the record: %+v (attached: %+v)", r, first)
		}
		e.settle()
		if x, ok := e.at("1-9"); !ok || x.Port != first.Port {
			t.Errorf("its port: %+v %v", x, ok)
		}
		e.whatIsSaid("1-9", r.Reason)
		if err := e.kernel.WriteAttr(cfg, []byte("1")); err != nil {
			t.Fatal(err)
		}
		for r := e.await("1-9", agent.ActKept); r.Reason != first.Reason; r = e.await("1-9", agent.ActKept) {
			if strings.Contains(r.Reason, "unbound by someone else") {
				t.Errorf("its new interface taken for an admin's unbind: %s", r.Reason)
			}
		}
		e.settle()
		if drv := e.driverOf("1-9:1.0"); drv != "usbback" {
			t.Errorf("configured again, 1-9:1.0 has driver %q, want usbback", drv)
		}
		e.whatIsSaid("1-9", first.Reason)
	})
}
