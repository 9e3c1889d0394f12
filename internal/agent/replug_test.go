package agent_test

import (
	"testing"

	"github.com/usbhotplugd/usbhotplugd/internal/agent"
	"github.com/usbhotplugd/usbhotplugd/internal/fakekernel"
	"github.com/usbhotplugd/usbhotplugd/internal/xenstore/xenstoretest"
)

const replugPolicy = `
[[rule]]
name = "audio"
action = "attach"
match = { id = "0d8c:0014" }
target = { domain = "kiosk" }

[[rule]]
name = "mouse-a"
action = "attach"
match = { serial = "MOUSE-A" }
target = { domain = "kiosk" }
`

// A device plugged back goes to the port it left when that is free, not
// to the first free one: the guest sees it where it was.
func TestAgentReplugReturnsToItsPort(t *testing.T) {
	xenstoretest.ForEach(t, func(t *testing.T, s xenstoretest.Store) {
		e := newEnv(t, s)
		e.run(replugPolicy, false)
		audio, ok1 := e.at("1-2")
		mouse, ok2 := e.at("1-4")
		if !ok1 || !ok2 {
			t.Fatal("not attached")
		}
		mouseDev := fakekernel.Dev{BusID: "1-4", DevNum: 20, Vendor: "046d", Product: "c077", Class: "00", Serial: "MOUSE-A",
			Manufacturer: "Logitech", Name: "USB Optical Mouse", Interfaces: []fakekernel.Intf{{Class: "03", SubClass: "01", Protocol: "02", Driver: "usbhid"}}}
		for _, b := range []string{"1-2", "1-4"} {
			if err := e.kernel.Unplug(b); err != nil {
				t.Fatal(err)
			}
			e.a.Handle(e.ctx, removeEvent(t, b))
			e.await(b, "cleared")
		}
		// The mouse comes back first, into another socket: the first free
		// port is the audio's, but its own is free too.
		mouseDev.BusID = "1-5"
		if err := e.kernel.Unplug("1-5"); err != nil { // the other mouse makes room
			t.Fatal(err)
		}
		e.a.Handle(e.ctx, removeEvent(t, "1-5"))
		e.settle()
		if err := (&fakekernel.Builder{Root: e.root}).Add(mouseDev).Err(); err != nil {
			t.Fatal(err)
		}
		e.a.Handle(e.ctx, addEvent(t, "1-5"))
		r := e.await("1-5", "attached")
		if r.Ctrl != mouse.Controller || r.Port != mouse.Port {
			t.Errorf("mouse back at %d:%d, want its port %d:%d (audio had %d:%d)", r.Ctrl, r.Port, mouse.Controller, mouse.Port, audio.Controller, audio.Port)
		}
	})
}

// A device unplugged and plugged again before any pass saw it gone (its
// remove queued behind a pass already due, or lost) is a new plug, told
// by its new address: the plug that left is cleared from its port, and
// the new one is decided afresh. An admin's detach holds until a replug,
// so a replug seen late ends the hold too.
func TestAgentReplugSeenLate(t *testing.T) {
	xenstoretest.ForEach(t, func(t *testing.T, s xenstoretest.Store) {
		e := newEnv(t, s)
		e.run(replugPolicy, false)
		first, ok := e.at("1-4")
		if !ok {
			t.Fatal("not attached")
		}
		mouse := fakekernel.Dev{BusID: "1-4", DevNum: 40, Vendor: "046d", Product: "c077", Class: "00", Serial: "MOUSE-A",
			Manufacturer: "Logitech", Name: "USB Optical Mouse", Interfaces: []fakekernel.Intf{{Class: "03", SubClass: "01", Protocol: "02", Driver: "usbhid"}}}
		replug := func() {
			t.Helper()
			if err := e.kernel.Unplug("1-4"); err != nil {
				t.Fatal(err)
			}
			mouse.DevNum++
			if err := e.kernel.Plug(mouse); err != nil {
				t.Fatal(err)
			}
			e.a.Handle(e.ctx, addEvent(t, "1-4")) // the remove never seen
		}

		// At its port: the old plug's port is cleared (by this pass, or by
		// one the port's watch asked for, if it came between), the new
		// plug goes back to it.
		replug()
		e.await("1-4", "cleared")
		if r := e.await("1-4", "attached"); r.Ctrl != first.Controller || r.Port != first.Port {
			t.Errorf("the new plug at %d:%d, want %d:%d", r.Ctrl, r.Port, first.Controller, first.Port)
		}

		// Held after an admin's detach: the new plug is attached.
		at, _ := e.at("1-4")
		if err := e.h.Detach(e.ctx, at.Domid, at.Controller, at.Port); err != nil {
			t.Fatal(err)
		}
		e.await("1-4", "held")
		e.settle()
		replug()
		if r := e.await("1-4", "attached"); r.Trigger != agent.TrigReplugged {
			t.Errorf("attached by %q", r.Trigger)
		}
		if e.driverOf("1-4:1.0") != "usbback" {
			t.Errorf("the new plug's interface is with %q", e.driverOf("1-4:1.0"))
		}
	})
}
