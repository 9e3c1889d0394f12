package agent_test

import (
	"fmt"
	"testing"
	"time"

	"github.com/usbhotplugd/usbhotplugd/internal/agent"
	"github.com/usbhotplugd/usbhotplugd/internal/xenstore/xenstoretest"
)

// xl's attach that wrote over the agent's port may fail after its port
// write (its bind to usbback refused: libxl rolls back by writing the port
// "" again, with no transaction; with the real usbback, which keeps a
// connected port's rule, that is the usual end of the race). The agent's
// device, which nobody detached and which is still in usbback, goes back
// to its guest: it is neither given to dom0 nor taken for held.
func TestAgentTakesBackADeviceWhosePortXLEmptied(t *testing.T) {
	xenstoretest.ForEach(t, func(t *testing.T, s xenstoretest.Store) {
		e := newEnv(t, s)
		e.noWatches = true
		e.run(keyboardsPolicy, false)
		e.hearKernel()
		if err := e.kernel.Plug(keyboard("1-6", "0001")); err != nil {
			t.Fatal(err)
		}
		first := e.await("1-6", agent.ActAttached)
		kiosk := e.doms["kiosk"].ID
		e.settle()
		// xl's attach of 1-1.6: the port written over, the driver record,
		// the unbind from usbhid; usbback refuses the bind; libxl rolls
		// back: usbhid bound again, the record removed, the port "".
		port := fmt.Sprintf("/local/domain/0/backend/vusb/%d/%d/port/%d", kiosk, first.Ctrl, first.Port)
		if err := e.xs.Write(e.ctx, port, []byte("1-1.6")); err != nil {
			t.Fatal(err)
		}
		if err := e.kernel.WriteAttr(e.root+"/bus/usb/drivers/usbhid/unbind", []byte("1-1.6:1.0")); err != nil {
			t.Fatal(err)
		}
		if err := e.kernel.WriteAttr(e.root+"/bus/usb/drivers/usbhid/bind", []byte("1-1.6:1.0")); err != nil {
			t.Fatal(err)
		}
		if err := e.xs.Write(e.ctx, port, nil); err != nil {
			t.Fatal(err)
		}
		// The next pass over 1-6 (a rescan, or any event naming it).
		if err := e.a.Rescan(e.ctx, "test rescan"); err != nil {
			t.Fatal(err)
		}
		r, ok := e.awaitOneOf("1-6", 10*time.Second, agent.ActAttached, agent.ActHeld, agent.ActReleased)
		e.settle()
		x, at := e.at("1-6")
		if !at || x.Domid != kiosk {
			st, _ := statusOf(e, "1-6")
			t.Fatalf("1-6, which nobody detached, is at %+v (%v) with driver %q after xl's failed attach over its port; first audit %s (%v): %s; now %s: %s",
				x, at, e.driverOf("1-6:1.0"), r.Action, ok, r.Reason, st.Action, st.Reason)
		}
	})
}
