package agent_test

import (
	"fmt"
	"testing"
	"time"

	"github.com/usbhotplugd/usbhotplugd/internal/agent"
	"github.com/usbhotplugd/usbhotplugd/internal/xenstore/xenstoretest"
)

// xlWritesOver does what `xl usbdev-attach` of 1-1.6 does when it picked
// port ctrl:port of domid before the agent's attach took it: its port
// writes, its driver record, its interface moved to usbback.
func (e *env) xlWritesOver(domid uint32, ctrl, port int) {
	e.t.Helper()
	for _, p := range []string{
		fmt.Sprintf("/local/domain/0/backend/vusb/%d/%d/port/%d", domid, ctrl, port),
		fmt.Sprintf("/libxl/%d/device/vusb/%d/port/%d", domid, ctrl, port),
	} {
		if err := e.xs.Write(e.ctx, p, []byte("1-1.6")); err != nil {
			e.t.Fatal(err)
		}
	}
	if err := e.xs.Write(e.ctx, "/libxl/usbback/1-1_6/1-1_6@1_0/driver_path", []byte("/sys/bus/usb/drivers/usbhid")); err != nil {
		e.t.Fatal(err)
	}
	for _, w := range [][2]string{{"bus/usb/drivers/usbhid/unbind", "1-1.6:1.0"}, {"bus/usb/drivers/usbback/bind", "1-1.6:1.0"}} {
		if err := e.kernel.WriteAttr(e.root+"/"+w[0], []byte(w[1])); err != nil {
			e.t.Fatal(err)
		}
	}
}

// awaitOneOf waits (at most d) for an audit of busid with one of actions.
func (e *env) awaitOneOf(busid string, d time.Duration, actions ...agent.Action) (agent.Audit, bool) {
	e.t.Helper()
	limit := time.After(d)
	for {
		select {
		case r := <-e.audits:
			if r.BusID != busid {
				continue
			}
			for _, a := range actions {
				if r.Action == a {
					return r, true
				}
			}
		case <-limit:
			return agent.Audit{}, false
		case <-e.ctx.Done():
			return agent.Audit{}, false
		}
	}
}

// A device xl wrote over (still in usbback, at no port) goes back to its
// guest at another port straight from usbback: it never passes through
// dom0's drivers on the way (its keystrokes would reach dom0's console, a
// stick's usb-storage would probe it).
func TestAgentTakesBackADeviceXLWroteOverPastDom0(t *testing.T) {
	xenstoretest.ForEach(t, func(t *testing.T, s xenstoretest.Store) {
		e := newEnv(t, s)
		e.noWatches = true
		e.run(keyboardsPolicy, false)
		evs := e.hearKernel()
		if err := e.kernel.Plug(keyboard("1-6", "0001")); err != nil {
			t.Fatal(err)
		}
		first := e.await("1-6", agent.ActAttached)
		e.settle()
		n := len(evs.all())
		e.xlWritesOver(e.doms["kiosk"].ID, first.Ctrl, first.Port)
		again := e.await("1-6", agent.ActAttached)
		if again.Ctrl == first.Ctrl && again.Port == first.Port {
			t.Fatalf("re-attached at the same port %d:%d", again.Ctrl, again.Port)
		}
		e.settle()
		for _, ev := range evs.all()[n:] {
			if ev == "bind 1-6:1.0 usbhid" {
				t.Fatalf("the re-attach of 1-6 gave it to dom0's usbhid on the way (events since the overwrite: %q)", evs.all()[n:])
			}
		}
	})
}
