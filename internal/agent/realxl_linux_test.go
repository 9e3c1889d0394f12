package agent_test

import (
	"fmt"
	"strconv"
	"strings"
	"testing"

	"github.com/usbhotplugd/usbhotplugd/internal/agent"
	"github.com/usbhotplugd/usbhotplugd/internal/sim"
	"github.com/usbhotplugd/usbhotplugd/internal/xenstore/xenstoretest"
	"github.com/usbhotplugd/usbhotplugd/internal/xltest"
)

// The running agent beside the real xl 4.17, on each store: xl lists what
// the agent attached where the agent put it; the agent respects what the
// admin does with xl (a detach, an attach of a device no rule names, a
// controller removed with the agent's devices at it), and after each
// step the host is whole: no device at two ports, nothing in usbback at no
// port, no interface lost to dom0. xl's sysfs writes reach the fake
// kernel, whose events the agent hears, as xl makes them.
func TestAgentBesideTheRealXL(t *testing.T) {
	xenstoretest.ForEach(t, func(t *testing.T, s xenstoretest.Store) {
		e := newEnv(t, s)
		kiosk, desk := e.doms["kiosk"], e.doms["desk"]
		xl := xltest.Start(t, s.SocketPath(), e.root, kiosk, desk)
		orig := e.original()
		e.run(testPolicy, false)
		e.hearKernel()
		xl.SetKernel(e.kernel)
		// xl is given domids: the shim says every domid runs, so a name
		// would send xl through all of them.
		id := func(d sim.Domain) string { return strconv.Itoa(int(d.ID)) }
		run := func(args ...string) string {
			t.Helper()
			code, out, errs := xl.Run(t, args...)
			if code != 0 {
				t.Fatalf("xl %s: exit %d: %s\nlog:\n%s", strings.Join(args, " "), code, errs, e.logText())
			}
			e.settle()
			return out
		}
		// whole checks the host; xls are at ports xl made (no ownership
		// record), held keep theirs (the port they go back to).
		whole := func(after string, xls, held []string) {
			t.Helper()
			all, err := e.h.Assigned(e.ctx)
			if err != nil {
				t.Fatal(err)
			}
			at := map[string]uint32{}
			for _, x := range all {
				at[x.BusID] = x.Domid
			}
			for _, line := range e.checkConverged(orig, nil, at) {
				fine := false
				for _, b := range xls {
					fine = fine || line == b+" has no ownership record"
				}
				for _, b := range held {
					fine = fine || strings.HasPrefix(line, "ownership record of "+b+" names ") && strings.HasSuffix(line, " (false)")
				}
				if !fine {
					t.Errorf("after %s: %s", after, line)
				}
			}
		}

		a, ok := e.at("1-2")
		if !ok || a.Domid != kiosk.ID {
			t.Fatalf("the audio device is at %+v (%v), want kiosk", a, ok)
		}
		if out := run("usb-list", id(kiosk)); !strings.Contains(out, fmt.Sprintf("\n  Port %d: Bus 001 Device 003\n", a.Port)) {
			t.Fatalf("xl usb-list does not show the agent's attach at port %d:\n%s", a.Port, out)
		}

		// The admin takes the audio device back: held, and given back.
		run("usbdev-detach", id(kiosk), strconv.Itoa(a.Controller), strconv.Itoa(a.Port))
		if r := e.await("1-2", agent.ActHeld); !strings.Contains(r.Reason, "detached from kiosk") {
			t.Errorf("held: %s", r.Reason)
		}
		if _, ok := e.at("1-2"); ok {
			t.Fatal("the agent undid xl's detach")
		}
		whole("xl usbdev-detach", nil, []string{"1-2"})

		// The admin gives the keyboard, which no rule names, to the kiosk.
		run("usbdev-attach", id(kiosk), "hostbus=1", "hostaddr=6")
		e.await("1-1.6", agent.ActLeft)
		if x, ok := e.at("1-1.6"); !ok || x.Domid != kiosk.ID || e.driverOf("1-1.6:1.0") != "usbback" {
			t.Fatalf("xl's attach of the keyboard: at %+v (%v), driver %q", x, ok, e.driverOf("1-1.6:1.0"))
		}
		whole("xl usbdev-attach", []string{"1-1.6"}, []string{"1-2"})

		// The admin removes the desk's controller, with both mice at it:
		// xl gives them back; the agent does not fight it.
		m, ok := e.at("1-5")
		if !ok || m.Domid != desk.ID {
			t.Fatalf("mouse B is at %+v (%v), want desk", m, ok)
		}
		run("usbctrl-detach", id(desk), strconv.Itoa(m.Controller))
		for _, b := range []string{"1-4", "1-5"} {
			if st, _ := statusOf(e, b); st.Action != agent.ActHeld {
				t.Errorf("%s after xl usbctrl-detach: %s (%s), want held", b, st.Action, st.Reason)
			}
		}
		whole("xl usbctrl-detach", []string{"1-1.6"}, []string{"1-2", "1-4", "1-5"})
		for _, intf := range []string{"1-4:1.0", "1-5:1.0"} {
			if d := e.driverOf(intf); d != orig[intf] && d != "usbback" {
				t.Errorf("%s has driver %q after xl usbctrl-detach, want %s or usbback", intf, d, orig[intf])
			}
		}

		// The admin puts mouse B on the kiosk; its rule takes it over for
		// the desk, which has no controller any more.
		// The agent may take it over while xl is still at its attach:
		// xl then fails where the device is no longer where it put it.
		if code, _, errs := xl.Run(t, "usbdev-attach", id(kiosk), "hostbus=1", "hostaddr=7"); code != 0 {
			t.Logf("xl usbdev-attach of mouse B, taken over meanwhile: exit %d: %s", code, errs)
		}
		if r := e.await("1-5", agent.ActAttached); r.Domid != int(desk.ID) {
			t.Fatalf("mouse B, put on the kiosk with xl: %+v, want attached to desk", r)
		}
		e.settle()
		whole("the takeover of xl's attach", []string{"1-1.6"}, []string{"1-2", "1-4"})

		// xl lists each guest as the store has it.
		for _, d := range []string{"kiosk", "desk"} {
			out := run("usb-list", id(e.doms[d]))
			all, err := e.h.Assigned(e.ctx)
			if err != nil {
				t.Fatal(err)
			}
			for _, x := range all {
				if x.Domid == e.doms[d].ID && !strings.Contains(out, fmt.Sprintf("\n  Port %d: Bus 001 Device", x.Port)) {
					t.Errorf("xl usb-list %s does not show %s at port %d:\n%s", d, x.BusID, x.Port, out)
				}
			}
		}
	})
}

// The agent and the real xl attach to one guest at the same moment, again
// and again: each device gets a port of its own, and xl lists both.
// Nothing is timed: the two race as they come, the rounds taking turns
// at which starts first.
func TestAgentAndTheRealXLAttachAtOnce(t *testing.T) {
	xenstoretest.ForEach(t, func(t *testing.T, s xenstoretest.Store) {
		e := newEnv(t, s)
		kiosk := e.doms["kiosk"]
		xl := xltest.Start(t, s.SocketPath(), e.root, kiosk)
		e.run(keyboardsPolicy, false)
		e.hearKernel()
		xl.SetKernel(e.kernel)
		domid := strconv.Itoa(int(kiosk.ID))
		for i := range 8 {
			busid := fmt.Sprintf("1-%d", 6+i%2) // a fresh busid, then the last but one again
			done := make(chan error, 1)
			cmd := xl.Command(xltest.Path, "usbdev-attach", domid, "hostbus=1", "hostaddr=6")
			plug := func() {
				if err := e.kernel.Plug(keyboard(busid, "0001")); err != nil {
					t.Error(err)
				}
			}
			if i%2 == 1 {
				plug() // the agent's pass first, xl's start beside it
			}
			if err := cmd.Start(); err != nil {
				t.Fatal(err)
			}
			go func() { done <- cmd.Wait() }()
			if i%2 == 0 {
				plug() // xl's start first, the agent's pass beside it
			}
			if err := <-done; err != nil {
				t.Fatalf("round %d: xl usbdev-attach: %v", i, err)
			}
			e.settle()
			ours, ok1 := e.at(busid)
			theirs, ok2 := e.at("1-1.6")
			if !ok1 || !ok2 || ours.Domid != kiosk.ID || theirs.Domid != kiosk.ID ||
				ours.Controller == theirs.Controller && ours.Port == theirs.Port {
				t.Fatalf("round %d: the agent's %s at %+v (%v), xl's 1-1.6 at %+v (%v)\nlog:\n%s", i, busid, ours, ok1, theirs, ok2, e.logText())
			}
			if e.driverOf(busid+":1.0") != "usbback" || e.driverOf("1-1.6:1.0") != "usbback" {
				t.Fatalf("round %d: drivers %q and %q, want usbback", i, e.driverOf(busid+":1.0"), e.driverOf("1-1.6:1.0"))
			}
			code, out, _ := xl.Run(t, "usb-list", domid)
			// xl prints the device number in hex, as ours does.
			for _, x := range []struct {
				port, dev int
			}{{ours.Port, 40}, {theirs.Port, 6}} {
				if want := fmt.Sprintf("\n  Port %d: Bus 001 Device %03x\n", x.port, x.dev); code != 0 || !strings.Contains(out, want) {
					t.Fatalf("round %d: xl usb-list lacks %q:\n%s", i, want, out)
				}
			}
			// Both go: xl's back to dom0 with xl, the agent's unplugged.
			if code, _, errs := xl.Run(t, "usbdev-detach", domid, strconv.Itoa(theirs.Controller), strconv.Itoa(theirs.Port)); code != 0 {
				t.Fatalf("round %d: xl usbdev-detach: %s", i, errs)
			}
			if err := e.kernel.Unplug(busid); err != nil {
				t.Fatal(err)
			}
			e.settle()
			if _, ok := e.at(busid); ok {
				t.Fatalf("round %d: %s unplugged, still at a port", i, busid)
			}
		}
	})
}
