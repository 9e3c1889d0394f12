package agent_test

import (
	"fmt"
	"io/fs"
	"slices"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"

	"github.com/usbhotplugd/usbhotplugd/internal/agent"
	"github.com/usbhotplugd/usbhotplugd/internal/assign"
	"github.com/usbhotplugd/usbhotplugd/internal/fakekernel"
	"github.com/usbhotplugd/usbhotplugd/internal/usbsysfs"
	"github.com/usbhotplugd/usbhotplugd/internal/xenstore/xenstoretest"
)

const keyboardsPolicy = testPolicy + `
[[rule]]
name = "keyboards"
action = "attach"
match = { id = "1234:0001" }
target = { domain = "kiosk" }
duplicates = "all"
`

// xl picks its port before its transaction and writes its device there
// even when another attach took that port meanwhile: the agent's device,
// written over, is found at no port with its interfaces in usbback, and
// goes back to its guest at another port (nobody detached it: xl's detach
// gives a device back to its dom0 drivers). The agent hears of it only
// through the pass of xl's device (no store watches here): a pass whose
// read of every port finds a port changed looks at the device that left
// it.
func TestAgentGetsBackAPortXLWroteOver(t *testing.T) {
	xenstoretest.ForEach(t, func(t *testing.T, s xenstoretest.Store) {
		e := newEnv(t, s)
		e.noWatches = true
		orig := e.original()
		e.run(keyboardsPolicy, false)
		e.hearKernel()
		if err := e.kernel.Plug(keyboard("1-6", "0001")); err != nil {
			t.Fatal(err)
		}
		first := e.await("1-6", agent.ActAttached)
		kiosk := e.doms["kiosk"].ID
		// xl's attach of 1-1.6, to the port it found free before the
		// agent's attach.
		e.xlWritesOver(kiosk, first.Ctrl, first.Port)
		again := e.await("1-6", agent.ActAttached)
		if again.Domid != int(kiosk) || again.Ctrl == first.Ctrl && again.Port == first.Port {
			t.Fatalf("1-6 attached again at %d:%d:%d, want kiosk at another port than %d:%d\n%s", again.Domid, again.Ctrl, again.Port, first.Ctrl, first.Port, e.logText())
		}
		e.settle()
		x, ok := e.at("1-1.6")
		if !ok || x.Controller != first.Ctrl || x.Port != first.Port {
			t.Errorf("xl's 1-1.6 is at %+v (%v), want where xl put it", x, ok)
		}
		for _, bad := range e.checkConverged(orig, nil, map[string]uint32{"1-2": kiosk, "1-4": e.doms["desk"].ID, "1-5": e.doms["desk"].ID, "1-6": kiosk, "1-1.6": kiosk}) {
			if bad != "1-1.6 has no ownership record" {
				t.Error(bad)
			}
		}
	})
}

// xlWritesOver does what `xl usbdev-attach` of 1-1.6 does when it picked
// port ctrl:port of domid before the agent's attach took it: its port
// writes, then the rest of its attach (xlFinishes).
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
	if err := e.xlFinishes(); err != nil {
		e.t.Fatal(err)
	}
}

// awaitOneOf waits for an audit of busid with one of actions; false when
// the test's deadline passed first.
func (e *env) awaitOneOf(busid string, actions ...agent.Action) (agent.Audit, bool) {
	e.t.Helper()
	for {
		select {
		case r := <-e.audits:
			if r.BusID == busid && slices.Contains(actions, r.Action) {
				return r, true
			}
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
		r, ok := e.awaitOneOf("1-6", agent.ActAttached, agent.ActHeld, agent.ActReleased)
		e.settle()
		x, at := e.at("1-6")
		if !at || x.Domid != kiosk {
			st, _ := statusOf(e, "1-6")
			t.Fatalf("1-6, which nobody detached, is at %+v (%v) with driver %q after xl's failed attach over its port; first audit %s (%v): %s; now %s: %s",
				x, at, e.driverOf("1-6:1.0"), r.Action, ok, r.Reason, st.Action, st.Reason)
		}
	})
}

// The race of the agent's attach with xl's, caught while the agent is still binding:
// xl chose the port before the agent's transaction and writes 1-1.6 over
// it while the agent binds 1-6 to usbback; usbback, whose rule for that
// port now names 1-1.6, refuses 1-6 (ENODEV) until the agent gives up;
// xl meanwhile binds 1-1.6 to usbback and reports success. The agent's
// rollback must not empty the port, which holds xl's device now (that would
// leave 1-1.6 in usbback at no port, given back to dom0: xl's attach
// silently undone), and 1-6 lost a race, not a refusal of usbback's: it is
// tried again, and attached at another port.
func TestAgentRollbackKeepsThePortXLWroteOver(t *testing.T) {
	xenstoretest.ForEach(t, func(t *testing.T, s xenstoretest.Store) {
		e := newEnv(t, s)
		var armed atomic.Bool
		var over atomic.Pointer[assign.Assignment]
		xlDone := make(chan error, 1)
		e.wrapKernel = func(kw usbsysfs.Writer) usbsysfs.Writer {
			k := kw.(*fakekernel.Kernel)
			k.Fail = func(w fakekernel.Write) error {
				if w.Path != "bus/usb/drivers/usbback/bind" || !strings.HasPrefix(w.Data, "1-6:") || !armed.Load() {
					return nil
				}
				if over.Load() != nil {
					// usbback's rule for that port names 1-1.6.
					return &fs.PathError{Op: "write", Path: w.Path, Err: syscall.ENODEV}
				}
				// xl's port write, over the port the agent just wrote.
				all, err := e.h.Assigned(e.ctx)
				if err != nil {
					t.Error(err)
					return nil
				}
				for _, x := range all {
					if x.BusID == "1-6" {
						p := fmt.Sprintf("/local/domain/0/backend/vusb/%d/%d/port/%d", x.Domid, x.Controller, x.Port)
						if err := e.xs.Write(e.ctx, p, []byte("1-1.6")); err != nil {
							t.Error(err)
						}
						over.Store(&x)
						// The rest of xl's attach of 1-1.6, at once, as xl
						// goes on (it waits for the kernel's lock, which the
						// agent's bind holds): its driver record, its
						// interface moved to usbback; xl reports success.
						go func() { xlDone <- e.xlFinishes() }()
					}
				}
				// usbback's rule for that port names 1-1.6 now.
				return &fs.PathError{Op: "write", Path: w.Path, Err: syscall.ENODEV}
			}
			return k
		}
		e.run(keyboardsPolicy, false)
		e.hearKernel()
		kiosk := e.doms["kiosk"].ID
		armed.Store(true)
		if err := e.kernel.Plug(keyboard("1-6", "0001")); err != nil {
			t.Fatal(err)
		}
		r, ok := e.awaitOneOf("1-6", agent.ActAttached, agent.ActRefused, agent.ActFailed)
		armed.Store(false)
		x := over.Load()
		if x == nil {
			t.Fatalf("the agent's bind of 1-6 was never reached (%s %v: %s)", r.Action, ok, r.Reason)
		}
		if err := <-xlDone; err != nil {
			t.Fatal(err)
		}
		if r.Action != agent.ActAttached {
			// The attach that lost the race is tried again, not refused.
			if r.Action != agent.ActFailed || !strings.Contains(r.Reason, "holds 1-1.6 now") {
				t.Errorf("the attach that lost the port to xl: %s: %s", r.Action, r.Reason)
			}
			e.await("1-6", agent.ActAttached)
		}
		e.settle()
		var bad []string
		if y, ok := e.at("1-1.6"); !ok || y.Domid != kiosk || y.Controller != x.Controller || y.Port != x.Port {
			bad = append(bad, fmt.Sprintf("xl's 1-1.6 is at %+v (%v) with driver %q, want at %d:%d where xl put it", y, ok, e.driverOf("1-1.6:1.0"), x.Controller, x.Port))
		}
		if y, ok := e.at("1-6"); !ok || y.Domid != kiosk {
			st, _ := statusOf(e, "1-6")
			bad = append(bad, fmt.Sprintf("the agent's 1-6 is at %+v (%v), want kiosk: %s: %s", y, ok, st.Action, st.Reason))
		}
		for _, b := range bad {
			t.Error(b)
		}
	})
}

// xlFinishes is the rest of xl's attach of 1-1.6 after its port write.
func (e *env) xlFinishes() error {
	if err := e.xs.Write(e.ctx, "/libxl/usbback/1-1_6/1-1_6@1_0/driver_path", []byte("/sys/bus/usb/drivers/usbhid")); err != nil {
		return err
	}
	for _, w := range [][2]string{{"bus/usb/drivers/usbhid/unbind", "1-1.6:1.0"}, {"bus/usb/drivers/usbback/bind", "1-1.6:1.0"}} {
		if err := e.kernel.WriteAttr(e.root+"/"+w[0], []byte(w[1])); err != nil {
			return err
		}
	}
	return nil
}
