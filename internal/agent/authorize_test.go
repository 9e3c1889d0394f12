package agent_test

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/usbhotplugd/usbhotplugd/internal/agent"
	"github.com/usbhotplugd/usbhotplugd/internal/fakekernel"
	"github.com/usbhotplugd/usbhotplugd/internal/sim"
	"github.com/usbhotplugd/usbhotplugd/internal/xenstore/xenstoretest"
)

const authzPolicy = `
[agent]
authorize = "before-probe"

[[rule]]
name = "dom0 keyboard"
action = "deny"
match = { id = "1234:0002" }

[[rule]]
name = "badge reader"
action = "attach"
match = { id = "1234:0001" }
target = { domain = "kiosk" }

[[rule]]
name = "no network"
action = "block"
match = { id = "1234:0003" }

[[rule]]
name = "audio"
action = "attach"
match = { id = "0d8c:0014" }
target = { domain = "kiosk" }
`

func keyboard(busid, product string) fakekernel.Dev {
	return fakekernel.Dev{BusID: busid, DevNum: 40, Vendor: "1234", Product: product, Class: "00",
		Interfaces: []fakekernel.Intf{{Class: "03", SubClass: "01", Protocol: "01", Driver: "usbhid"}}}
}

func (e *env) rootDefault(hub string) string {
	e.t.Helper()
	return e.sysAttr(hub, "interface_authorized_default")
}

func (e *env) intfAuthorized(intf string) string {
	e.t.Helper()
	return e.sysAttr(intf, "authorized")
}

// sysAttr reads one attribute of a device or interface in the fixture tree.
func (e *env) sysAttr(name, attr string) string {
	e.t.Helper()
	b, err := os.ReadFile(filepath.Join(e.root, "bus/usb/devices", name, attr))
	if err != nil {
		e.t.Fatal(err)
	}
	return strings.TrimSpace(string(b))
}

// Authorization before probe: the root hubs' new interfaces come
// deauthorized; the policy decides before any dom0 driver sees a device.
func TestAgentAuthorizesBeforeProbe(t *testing.T) {
	xenstoretest.ForEach(t, func(t *testing.T, s xenstoretest.Store) {
		e := newEnv(t, s)
		e.run(authzPolicy, false)
		if got := e.rootDefault("usb1"); got != "0" {
			t.Fatalf("usb1's interface_authorized_default is %s after the start, want 0", got)
		}
		if b, err := e.xs.Read(e.ctx, agent.InertRoot+"/usb1"); err != nil || string(b) != "0" {
			t.Errorf("no record of usb1's default: %q %v", b, err)
		}
		// Present before the mode: it keeps its drivers (and is attached as
		// without the mode).
		if x, ok := e.at("1-2"); !ok || x.Domid != e.doms["kiosk"].ID {
			t.Errorf("the audio device present at the start is not attached: %+v", x)
		}
		bld := &fakekernel.Builder{Root: e.root}
		bld.Add(keyboard("1-6", "0001")).Add(keyboard("1-7", "0002")).Add(keyboard("1-8", "0003")).Add(keyboard("1-9", "0004"))
		if err := bld.Err(); err != nil {
			t.Fatal(err)
		}
		for _, b := range []string{"1-6", "1-7", "1-8", "1-9"} {
			if drv := e.driverOf(b + ":1.0"); drv != "" {
				t.Fatalf("%s:1.0 was probed by %s before the policy decided", b, drv)
			}
			e.a.Handle(e.ctx, addEvent(t, b))
		}
		got := e.awaitEach(map[string]agent.Action{"1-6": agent.ActAttached, "1-7": agent.ActDenied, "1-8": agent.ActBlocked, "1-9": agent.ActUnmatched})
		if r := got["1-6"]; r.Domid != int(e.doms["kiosk"].ID) {
			t.Errorf("badge reader: %+v", r)
		}
		e.settle()
		// To the guest: straight into usbback, no dom0 driver recorded
		// (none ever had it).
		if drv := e.driverOf("1-6:1.0"); drv != "usbback" {
			t.Errorf("badge reader's interface has driver %q, want usbback", drv)
		}
		if _, err := e.xs.Read(e.ctx, "/libxl/usbback/1-6/1-6@1_0/driver_path"); err == nil {
			t.Error("a dom0 driver was recorded for the badge reader: dom0 had it")
		}
		// dom0's keyboard (a deny rule) and one no rule names: authorized and
		// bound by dom0's driver.
		for _, intf := range []string{"1-7:1.0", "1-9:1.0"} {
			if drv := e.driverOf(intf); drv != "usbhid" {
				t.Errorf("%s has driver %q, want usbhid", intf, drv)
			}
			if a := e.intfAuthorized(intf); a != "1" {
				t.Errorf("%s authorized = %s", intf, a)
			}
		}
		// Blocked: inert.
		if drv, a := e.driverOf("1-8:1.0"), e.intfAuthorized("1-8:1.0"); drv != "" || a != "0" {
			t.Errorf("the blocked device's interface: driver %q, authorized %s", drv, a)
		}
		st := e.status.Load()
		for _, d := range st.Devices {
			if d.BusID == "1-8" && (d.Action != agent.ActBlocked || len(d.Deauthorized) != 1) {
				t.Errorf("status of the blocked device: %+v", d)
			}
		}
		// A clean stop gives the defaults back.
		e.stop()
		if err := e.a.RestoreAuthorization(); err != nil {
			t.Fatal(err)
		}
		if got := e.rootDefault("usb1"); got != "1" {
			t.Errorf("usb1's default after a clean stop: %s, want 1", got)
		}
	})
}

// A device meant for a guest that is not running stays inert; a hub is
// authorized at once so that its children appear.
func TestAgentKeepsPendingInertAndLetsHubsEnumerate(t *testing.T) {
	xenstoretest.ForEach(t, func(t *testing.T, s xenstoretest.Store) {
		e := newEnv(t, s)
		e.run(strings.ReplaceAll(authzPolicy, `match = { id = "1234:0001" }
target = { domain = "kiosk" }`, `match = { id = "1234:0001" }
target = { domain = "lab" }`), false)
		bld := &fakekernel.Builder{Root: e.root}
		bld.Add(keyboard("1-6", "0001")).Add(fakekernel.Dev{BusID: "1-7", DevNum: 41, Vendor: "05e3", Product: "0608", Class: "09",
			Interfaces: []fakekernel.Intf{{Class: "09", SubClass: "00", Protocol: "00", Driver: "hub"}}})
		if err := bld.Err(); err != nil {
			t.Fatal(err)
		}
		e.a.Handle(e.ctx, addEvent(t, "1-6"))
		e.a.Handle(e.ctx, addEvent(t, "1-7"))
		got := e.awaitEach(map[string]agent.Action{"1-6": agent.ActPending, "1-7": agent.ActDenied})
		if r := got["1-6"]; !strings.Contains(r.Reason, "stays inert") {
			t.Errorf("pending reason: %s", r.Reason)
		}
		e.settle()
		if drv, a := e.driverOf("1-6:1.0"), e.intfAuthorized("1-6:1.0"); drv != "" || a != "0" {
			t.Errorf("the pending device: driver %q, authorized %s", drv, a)
		}
		if drv := e.driverOf("1-7:1.0"); drv != "hub" {
			t.Errorf("the hub's interface: driver %q, want hub", drv)
		}
	})
}

// awaitEach waits for one audit of each busid with its action, in any
// order.
func (e *env) awaitEach(want map[string]agent.Action) map[string]agent.Audit {
	e.t.Helper()
	got := map[string]agent.Audit{}
	for len(got) < len(want) {
		select {
		case r := <-e.audits:
			if act, ok := want[r.BusID]; ok && r.Action == act {
				got[r.BusID] = r
			}
		case <-e.ctx.Done():
			e.t.Fatalf("audits seen %v of %v\nlog:\n%s", got, want, e.logText())
		}
	}
	return got
}

// A crash between authorizing a device's interfaces and offering them to
// dom0's drivers: the restart finishes it (its record says so), and an
// interface without a driver that no record names is left alone.
func TestAgentFinishesAGiveToDom0CutShort(t *testing.T) {
	xenstoretest.ForEach(t, func(t *testing.T, s xenstoretest.Store) {
		e := newEnv(t, s)
		half := keyboard("1-6", "0004")
		half.Interfaces[0].Driver = ""
		other := keyboard("1-7", "0005")
		other.Interfaces[0].Driver = ""
		if err := (&fakekernel.Builder{Root: e.root}).Add(half).Add(other).Err(); err != nil {
			t.Fatal(err)
		}
		if err := e.xs.Write(e.ctx, agent.GivingRoot+"/1-6", []byte("1")); err != nil {
			t.Fatal(err)
		}
		e.run(authzPolicy, false)
		if drv := e.driverOf("1-6:1.0"); drv != "usbhid" {
			t.Errorf("the device cut short has driver %q, want usbhid", drv)
		}
		if _, err := e.xs.Read(e.ctx, agent.GivingRoot+"/1-6"); err == nil {
			t.Error("its record is still there")
		}
		if drv := e.driverOf("1-7:1.0"); drv != "" {
			t.Errorf("an interface left without a driver was probed: %q", drv)
		}
	})
}

// usbback refuses a SuperSpeed device: the agent says so, once, and does
// not try again (each try would write and clear its port: a new pass)
// until the device is plugged again.
func TestAgentTakesUsbbacksNo(t *testing.T) {
	xenstoretest.ForEach(t, func(t *testing.T, s xenstoretest.Store) {
		e := newEnv(t, s)
		e.run(testPolicy+"[[rule]]\nname = \"fast stick\"\naction = \"attach\"\nmatch = { id = \"1234:5555\" }\ntarget = { domain = \"kiosk\" }\n", false)
		d := fakekernel.Dev{BusID: "1-6", DevNum: 50, Vendor: "1234", Product: "5555", Class: "00", Speed: "5000",
			Interfaces: []fakekernel.Intf{{Class: "03", SubClass: "00", Protocol: "00", Driver: "usbhid"}}}
		if err := (&fakekernel.Builder{Root: e.root}).Add(d).Err(); err != nil {
			t.Fatal(err)
		}
		e.a.Handle(e.ctx, addEvent(t, "1-6"))
		r := e.await("1-6", agent.ActRefused)
		if !strings.Contains(r.Reason, "usbback refuses") || !strings.Contains(r.Reason, "not tried again") {
			t.Errorf("reason: %s", r.Reason)
		}
		e.settle()
		if _, ok := e.at("1-6"); ok {
			t.Error("left at a port")
		}
		for len(e.audits) > 0 {
			if r := <-e.audits; r.BusID == "1-6" && (r.Action == agent.ActFailed || r.Action == agent.ActAttached) {
				t.Errorf("tried again: %+v", r)
			}
		}
		// Another pass (any event) does not try again either.
		e.a.Handle(e.ctx, addEvent(t, "1-6"))
		e.settle()
		for len(e.audits) > 0 {
			if r := <-e.audits; r.BusID == "1-6" && r.Action != agent.ActRefused {
				t.Errorf("after another event: %+v", r)
			}
		}
		if drv := e.driverOf("1-6:1.0"); drv == "usbback" || drv == "" {
			t.Errorf("its interface has driver %q, not its dom0 driver back", drv)
		}
	})
}

// With the mode on, a device whose guest vanished is made inert again,
// not given to dom0's drivers while it waits; the guest back, it is
// attached again.
func TestAgentKeepsAGoneGuestsDeviceInert(t *testing.T) {
	xenstoretest.ForEach(t, func(t *testing.T, s xenstoretest.Store) {
		e := newEnv(t, s)
		e.run(authzPolicy, false)
		if err := (&fakekernel.Builder{Root: e.root}).Add(keyboard("1-6", "0001")).Err(); err != nil {
			t.Fatal(err)
		}
		e.a.Handle(e.ctx, addEvent(t, "1-6"))
		e.await("1-6", agent.ActAttached)
		e.settle()
		d := e.doms["kiosk"]
		if err := sim.ForceDestroy(e.ctx, e.xs, d); err != nil {
			t.Fatal(err)
		}
		e.await("1-6", agent.ActReleased)
		e.settle()
		if drv, a := e.driverOf("1-6:1.0"), e.intfAuthorized("1-6:1.0"); drv != "" || a != "0" {
			t.Errorf("while its guest is gone: driver %q, authorized %s (want none, 0)", drv, a)
		}
		k := e.start("kiosk")
		if r := e.await("1-6", agent.ActAttached); r.Domid != int(k.ID) {
			t.Errorf("after the guest came back: %+v", r)
		}
		e.settle()
		if drv := e.driverOf("1-6:1.0"); drv != "usbback" {
			t.Errorf("back at the guest: driver %q", drv)
		}
	})
}
