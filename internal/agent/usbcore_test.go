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
