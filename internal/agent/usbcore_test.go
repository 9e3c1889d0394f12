package agent_test

import (
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/usbhotplugd/usbhotplugd/internal/agent"
	"github.com/usbhotplugd/usbhotplugd/internal/fakekernel"
	"github.com/usbhotplugd/usbhotplugd/internal/uevent"
	"github.com/usbhotplugd/usbhotplugd/internal/xenstore/xenstoretest"
	"github.com/usbhotplugd/usbhotplugd/policy"
)

// Tests of what real hosts' USB cores do that the standard fixture never
// shows: controllers that come later, configurations that change, resets,
// devices that re-enumerate as another product, devices the kernel has not
// configured.

// kernelEvents are the usb events the fake kernel sent, as "action name
// driver".
type kernelEvents struct {
	mu  sync.Mutex
	evs []string
}

func (k *kernelEvents) all() []string {
	k.mu.Lock()
	defer k.mu.Unlock()
	return slices.Clone(k.evs)
}

// hearKernel makes the agent hear the fake kernel's events, as it hears
// the real kernel's, and keeps them. (Call it after run, which makes the
// kernel.)
func (e *env) hearKernel() *kernelEvents {
	k := &kernelEvents{}
	e.kernel.OnEvent = func(ev uevent.Event) {
		k.mu.Lock()
		k.evs = append(k.evs, ev.Action+" "+ev.Name()+" "+ev.Driver())
		k.mu.Unlock()
		e.a.Handle(e.ctx, uevent.Message{Event: ev})
	}
	return k
}

// dockPath is a Thunderbolt dock's xHCI, behind the PCIe bridges of its
// tunnel.
const dockPath = "devices/pci0000:00/0000:00:07.0/0000:03:00.0/0000:04:01.0/0000:05:00.0"

func dockRootHub(busid string) fakekernel.Dev {
	return fakekernel.Dev{BusID: busid, DevNum: 1, Vendor: "1d6b", Product: "0002", Class: "09", Serial: "0000:05:00.0",
		Controller: dockPath, Interfaces: fakekernel.Hub}
}

// A host controller that appears while the agent runs (a Thunderbolt
// dock's xHCI, a PCIe card, a controller's driver bound again): with
// authorization before probe its root hub is made inert at its add, so the
// devices plugged into it are decided before any dom0 driver sees them, as
// on the controllers present at the start.
func TestAgentMakesALaterControllerInert(t *testing.T) {
	xenstoretest.ForEach(t, func(t *testing.T, s xenstoretest.Store) {
		e := newEnv(t, s)
		e.run(authzPolicy, false)
		evs := e.hearKernel()
		if err := e.kernel.Plug(dockRootHub("usb3")); err != nil {
			t.Fatal(err)
		}
		e.settle()
		if got := e.rootDefault("usb3"); got != "0" {
			t.Fatalf("usb3, plugged while the agent ran, has interface_authorized_default %s, want 0", got)
		}
		if b, err := e.xs.Read(e.ctx, agent.InertRoot+"/usb3"); err != nil || string(b) != "0" {
			t.Errorf("no record of usb3's default: %q %v", b, err)
		}
		if err := e.kernel.Plug(keyboard("3-1", "0001")); err != nil {
			t.Fatal(err)
		}
		if r := e.await("3-1", agent.ActAttached); r.Domid != int(e.doms["kiosk"].ID) {
			t.Errorf("the badge reader behind the dock: %+v", r)
		}
		e.settle()
		if drv := e.driverOf("3-1:1.0"); drv != "usbback" {
			t.Errorf("the badge reader's interface has driver %q, want usbback", drv)
		}
		for _, ev := range evs.all() {
			if strings.HasPrefix(ev, "bind 3-1:1.0 ") && !strings.HasSuffix(ev, " usbback") {
				t.Errorf("a dom0 driver had the badge reader before the policy decided: %q", ev)
			}
		}
		// The dock unplugged: its root hub's record goes with it.
		if err := e.kernel.Unplug("usb3"); err != nil {
			t.Fatal(err)
		}
		e.await("3-1", agent.ActCleared)
		e.settle()
		if _, err := e.xs.Read(e.ctx, agent.InertRoot+"/usb3"); err == nil {
			t.Error("the record of usb3's default outlived usb3")
		}
	})
}

// A reload that turns authorization before probe off gives the root hubs
// their defaults back at once (new devices are dom0's drivers' again, not
// inert with nobody to decide them for dom0); one that turns it on makes
// them inert at once.
func TestAgentReloadTurnsAuthorizationOffAndOn(t *testing.T) {
	xenstoretest.ForEach(t, func(t *testing.T, s xenstoretest.Store) {
		e := newEnv(t, s)
		e.run(authzPolicy, false)
		reload := func(src string) {
			t.Helper()
			p, err := policy.Parse("reload.toml", []byte(src), nil)
			if err != nil {
				t.Fatal(err)
			}
			e.a.Reload(p)
			e.settle()
		}
		reload(strings.Replace(authzPolicy, `authorize = "before-probe"`, `authorize = "off"`, 1))
		if got := e.rootDefault("usb1"); got != "1" {
			t.Errorf("usb1's default after the mode was turned off: %s, want 1", got)
		}
		if _, err := e.xs.Read(e.ctx, agent.InertRoot+"/usb1"); err == nil {
			t.Error("the record of usb1's default outlived the mode")
		}
		e.hearKernel()
		if err := e.kernel.Plug(keyboard("1-7", "0002")); err != nil { // dom0's keyboard
			t.Fatal(err)
		}
		e.await("1-7", agent.ActDenied)
		e.settle()
		if drv := e.driverOf("1-7:1.0"); drv != "usbhid" {
			t.Errorf("dom0's keyboard plugged with the mode off has driver %q, want usbhid", drv)
		}
		reload(authzPolicy)
		if got := e.rootDefault("usb1"); got != "0" {
			t.Errorf("usb1's default after the mode was turned on again: %s, want 0", got)
		}
	})
}

const configPolicy = `
[[rule]]
name = "modem"
action = "attach"
match = { id = "12d1:1506" }
target = { domain = "kiosk" }
`

// modem is a device with two configurations, as a modem or a network
// adapter has: a HID function in the first, the HID function and a
// vendor-specific one no dom0 driver takes in the second.
func modem(busid string, devnum int) fakekernel.Dev {
	return fakekernel.Dev{BusID: busid, DevNum: devnum, Vendor: "12d1", Product: "1506", Class: "00", Serial: "MODEM1",
		Interfaces: []fakekernel.Intf{{Class: "03", SubClass: "01", Protocol: "01", Driver: "usbhid"}},
		Configs:    [][]fakekernel.Intf{{{Class: "03", SubClass: "01", Protocol: "01", Driver: "usbhid"}, {Class: "ff", SubClass: "ff", Protocol: "ff"}}}}
}

// The configuration of an attached device changes (usb_modeswitch, a
// driver, an admin writing bConfigurationValue): its interfaces go and the
// new configuration's come, named by its value, and dom0's drivers probe
// them, then usbback, which takes what its port names. The device did not
// leave: it keeps its port, and the new interfaces go to usbback (the
// agent moves back the one dom0's driver took). Detached, each goes back to its dom0 driver,
// or to none when none takes it: none is left in usbback.
// So with authorization before probe, where the new interfaces come
// deauthorized.
func TestAgentFollowsAConfigurationChange(t *testing.T) {
	for _, mode := range []string{"off", "before-probe"} {
		t.Run(mode, func(t *testing.T) { followConfigurationChange(t, "[agent]\nauthorize = \""+mode+"\"\n"+configPolicy) })
	}
}

func followConfigurationChange(t *testing.T, pol string) {
	xenstoretest.ForEach(t, func(t *testing.T, s xenstoretest.Store) {
		e := newEnv(t, s)
		e.run(pol, false)
		e.kernel.UsbbackPorts = fakekernel.StorePorts(e.ctx, e.s.Dial(t))
		e.hearKernel()
		if err := e.kernel.Plug(modem("1-7", 30)); err != nil {
			t.Fatal(err)
		}
		first := e.await("1-7", agent.ActAttached)
		e.settle()
		if drv := e.driverOf("1-7:1.0"); drv != "usbback" {
			t.Fatalf("1-7:1.0 has driver %q, want usbback", drv)
		}
		if err := e.kernel.WriteAttr(e.root+"/bus/usb/devices/1-7/bConfigurationValue", []byte("2")); err != nil {
			t.Fatal(err)
		}
		e.settle()
		if x, ok := e.at("1-7"); !ok || x.Domid != uint32(first.Domid) || x.Controller != first.Ctrl || x.Port != first.Port {
			t.Errorf("after the configuration changed: at %+v %v, want its port %d:%d", x, ok, first.Ctrl, first.Port)
		}
		for _, intf := range []string{"1-7:2.0", "1-7:2.1"} {
			if drv := e.driverOf(intf); drv != "usbback" {
				t.Errorf("%s, of the new configuration, has driver %q, want usbback", intf, drv)
			}
		}
		if log := e.logText(); strings.Contains(log, `"action":"cleared"`) || strings.Contains(log, `"action":"failed"`) {
			t.Errorf("a configuration change taken for a departure or failed:\n%s", log)
		}
		// The rule goes: detached, given back to dom0.
		p, err := policy.Parse("none.toml", []byte(strings.Split(pol, "[[rule]]")[0]), nil)
		if err != nil {
			t.Fatal(err)
		}
		e.a.Reload(p)
		e.await("1-7", agent.ActDetached)
		e.settle()
		if drv := e.driverOf("1-7:2.0"); drv != "usbhid" {
			t.Errorf("after the detach 1-7:2.0 has driver %q, want usbhid", drv)
		}
		if drv := e.driverOf("1-7:2.1"); drv != "" {
			t.Errorf("after the detach 1-7:2.1 has driver %q, want none", drv)
		}
		if has, _ := e.h.HasRecord(e.ctx, "1-7"); has {
			t.Error("driver records of 1-7 left after its detach")
		}
	})
}

const unconfiguredPolicy = `
[[rule]]
name = "no-storage"
action = "deny"
match = { interface = "storage" }

[[rule]]
name = "sandisk-to-kiosk"
action = "attach"
match = { id = "0781:*" }
target = { domain = "kiosk" }

[[rule]]
name = "badge reader"
action = "attach"
match = { id = "1234:0001" }
target = { domain = "kiosk" }
`

// On a host whose root hub's authorized_default is 0 (USBGuard's, or
// usbcore.authorized_default=0), a new device comes unauthorized: the
// kernel has not configured it, it has no interfaces yet, and a rule that
// looks at them cannot be told. The agent decides nothing until the device
// is configured (it says why it waits): a stick a deny rule names by its
// storage interface is never given a port meanwhile by a later rule that
// names only its vendor, and once authorized it is denied; a device for a
// guest is attached once authorized.
func TestAgentWaitsForAnUnconfiguredDevice(t *testing.T) {
	xenstoretest.ForEach(t, func(t *testing.T, s xenstoretest.Store) {
		e := newEnv(t, s)
		e.run(unconfiguredPolicy, false)
		e.hearKernel()
		if err := e.kernel.WriteAttr(e.root+"/bus/usb/devices/usb1/authorized_default", []byte("0")); err != nil {
			t.Fatal(err)
		}
		stick := fakekernel.Dev{BusID: "1-8", DevNum: 31, Vendor: "0781", Product: "5581", Class: "00", Serial: "STICK8",
			Interfaces: []fakekernel.Intf{{Class: "08", SubClass: "06", Protocol: "50", Driver: "usb-storage"}}}
		for _, d := range []fakekernel.Dev{stick, keyboard("1-9", "0001")} {
			if err := e.kernel.Plug(d); err != nil {
				t.Fatal(err)
			}
		}
		got := e.awaitEach(map[string]agent.Action{"1-8": agent.ActPending, "1-9": agent.ActPending})
		for b, r := range got {
			if r.Rule != "" || !strings.Contains(r.Reason, "not authorized") {
				t.Errorf("%s waits: %+v", b, r)
			}
		}
		e.settle()
		for _, b := range []string{"1-8", "1-9"} {
			if x, ok := e.at(b); ok {
				t.Errorf("%s, unauthorized, was given port %+v", b, x)
			}
		}
		for _, b := range []string{"1-8", "1-9"} {
			if err := e.kernel.WriteAttr(e.root+"/bus/usb/devices/"+b+"/authorized", []byte("1")); err != nil {
				t.Fatal(err)
			}
		}
		got = e.awaitEach(map[string]agent.Action{"1-8": agent.ActDenied, "1-9": agent.ActAttached})
		if r := got["1-8"]; r.Rule != "no-storage" {
			t.Errorf("the stick, authorized: %+v", r)
		}
		e.settle()
		if _, ok := e.at("1-8"); ok {
			t.Error("the stick a deny rule names is at a port")
		}
		if drv := e.driverOf("1-8:1.0"); drv != "usb-storage" {
			t.Errorf("the stick's interface has driver %q, want usb-storage", drv)
		}
		if drv := e.driverOf("1-9:1.0"); drv != "usbback" {
			t.Errorf("the badge reader's interface has driver %q, want usbback", drv)
		}
		if log := e.logText(); strings.Contains(log, `"busid":"1-8","id":"0781:5581","trigger":"add","action":"attached"`) {
			t.Errorf("the stick was attached while unauthorized:\n%s", log)
		}
	})
}

// A reset of an attached device (usbreset, a driver's reset after an
// error): the kernel unbinds usbback, which has no pre_reset, and probes
// the interfaces again; a dom0 driver may take one first (usbhid here),
// usbback takes back one no dom0 driver matches (it knows the port). The
// device did not leave: its devnum and port stay, nothing is cleared, the
// interface dom0 took goes back to usbback, and the one usbback took back
// itself is not touched.
func TestAgentRidesOutAReset(t *testing.T) {
	xenstoretest.ForEach(t, func(t *testing.T, s xenstoretest.Store) {
		e := newEnv(t, s)
		e.run(configPolicy, false)
		e.kernel.UsbbackPorts = fakekernel.StorePorts(e.ctx, e.s.Dial(t))
		e.hearKernel()
		dev := modem("1-7", 32)
		dev.Interfaces, dev.Configs = append(dev.Interfaces, fakekernel.Intf{Class: "ff", SubClass: "ff", Protocol: "ff"}), nil
		if err := e.kernel.Plug(dev); err != nil {
			t.Fatal(err)
		}
		first := e.await("1-7", agent.ActAttached)
		e.settle()
		for _, intf := range []string{"1-7:1.0", "1-7:1.1"} {
			if drv := e.driverOf(intf); drv != "usbback" {
				t.Fatalf("%s has driver %q before the reset, want usbback", intf, drv)
			}
		}
		before := len(e.kernel.Writes())
		if err := e.kernel.Reset("1-7"); err != nil {
			t.Fatal(err)
		}
		e.settle()
		if x, ok := e.at("1-7"); !ok || x.Domid != uint32(first.Domid) || x.Controller != first.Ctrl || x.Port != first.Port {
			t.Errorf("after the reset: at %+v %v, want its port %d:%d", x, ok, first.Ctrl, first.Port)
		}
		for _, intf := range []string{"1-7:1.0", "1-7:1.1"} {
			if drv := e.driverOf(intf); drv != "usbback" {
				t.Errorf("%s has driver %q after the reset, want usbback", intf, drv)
			}
		}
		for _, w := range e.kernel.Writes()[before:] {
			if strings.Contains(w.Data, "1-7:1.1") {
				t.Errorf("the agent wrote %q to %s for the interface usbback took back itself", w.Data, w.Path)
			}
		}
		if log := e.logText(); !strings.Contains(log, "1-7:1.0 was with usbhid") || strings.Contains(log, `"action":"cleared"`) || strings.Contains(log, `"action":"failed"`) || strings.Contains(log, `"action":"released"`) {
			t.Errorf("a reset taken for a departure, or failed:\n%s", log)
		}
	})
}

const modeswitchPolicy = `
[[rule]]
name = "installer-disc"
action = "attach"
match = { id = "12d1:1446" }
target = { domain = "kiosk" }
`

// A mode-switching device (usb_modeswitch): attached as its installer disc
// (12d1:1446, storage), it is switched, leaves and comes back at the same
// busid as the modem (12d1:1506) with another devnum, whose
// vendor-specific interface no dom0 driver takes. The modem is another
// device: no rule sends it anywhere, so it is not kept at the disc's port
// and stays in dom0, its interface without a driver, and no driver record
// of the disc is applied to it; so whether the agent saw the disc leave or
// only the modem come (the remove lost, or queued behind a pass).
func TestAgentDecidesAModeSwitchedDeviceAfresh(t *testing.T) {
	disc := fakekernel.Dev{BusID: "1-7", DevNum: 33, Vendor: "12d1", Product: "1446", Class: "00", Serial: "HW1",
		Interfaces: []fakekernel.Intf{{Class: "08", SubClass: "06", Protocol: "50", Driver: "usb-storage"}}}
	modem := fakekernel.Dev{BusID: "1-7", DevNum: 34, Vendor: "12d1", Product: "1506", Class: "00", Serial: "HW1",
		Interfaces: []fakekernel.Intf{{Class: "ff", SubClass: "ff", Protocol: "ff"}, {Class: "ff", SubClass: "ff", Protocol: "ff"}}}
	for _, seen := range []bool{true, false} {
		t.Run(map[bool]string{true: "its remove seen", false: "its remove lost"}[seen], func(t *testing.T) {
			xenstoretest.ForEach(t, func(t *testing.T, s xenstoretest.Store) {
				e := newEnv(t, s)
				// No pass the store's watch asks for comes between the
				// unplug and the plug: the agent sees the modem only.
				e.noWatches = !seen
				e.run(modeswitchPolicy, false)
				if err := e.kernel.Plug(disc); err != nil {
					t.Fatal(err)
				}
				e.a.Handle(e.ctx, addEvent(t, "1-7"))
				e.await("1-7", agent.ActAttached)
				e.settle()
				if seen {
					e.hearKernel()
				}
				if err := e.kernel.Unplug("1-7"); err != nil {
					t.Fatal(err)
				}
				if seen {
					e.await("1-7", agent.ActCleared)
					e.settle()
				}
				if err := e.kernel.Plug(modem); err != nil {
					t.Fatal(err)
				}
				if !seen {
					e.a.Handle(e.ctx, addEvent(t, "1-7"))
					if r := e.await("1-7", agent.ActCleared); r.Trigger != agent.TrigReplugged {
						t.Errorf("cleared by %q", r.Trigger)
					}
				}
				r := e.await("1-7", agent.ActUnmatched)
				if r.ID != "12d1:1506" {
					t.Errorf("the modem decided as %+v", r)
				}
				e.settle()
				if x, ok := e.at("1-7"); ok {
					t.Errorf("the modem is at the disc's port %+v", x)
				}
				for _, intf := range []string{"1-7:1.0", "1-7:1.1"} {
					if drv := e.driverOf(intf); drv != "" {
						t.Errorf("the modem's %s has driver %q, want none", intf, drv)
					}
				}
				if has, _ := e.h.HasRecord(e.ctx, "1-7"); has {
					t.Error("the disc's driver records outlived it")
				}
				if log := e.logText(); strings.Contains(log, `"action":"failed"`) {
					t.Errorf("a step failed:\n%s", log)
				}
			})
		})
	}
}

// A device the agent kept inert (blocked, with the mode on) that a reload
// leaves to dom0 with the mode off: its interfaces are authorized and
// offered to dom0's drivers, not left without a driver for good.
func TestAgentReloadGivesDom0WhatItKeptInert(t *testing.T) {
	xenstoretest.ForEach(t, func(t *testing.T, s xenstoretest.Store) {
		e := newEnv(t, s)
		e.run(authzPolicy, false)
		e.hearKernel()
		if err := e.kernel.Plug(keyboard("1-8", "0003")); err != nil { // "no network": blocked
			t.Fatal(err)
		}
		e.await("1-8", agent.ActBlocked)
		e.settle()
		p, err := policy.Parse("off.toml", []byte(`[agent]
authorize = "off"
`), nil)
		if err != nil {
			t.Fatal(err)
		}
		e.a.Reload(p)
		e.await("1-8", agent.ActUnmatched)
		e.settle()
		if drv, a := e.driverOf("1-8:1.0"), e.intfAuthorized("1-8:1.0"); drv != "usbhid" || a != "1" {
			t.Errorf("the device no rule keeps inert any more: driver %q, authorized %s (want usbhid, 1)", drv, a)
		}
	})
}
