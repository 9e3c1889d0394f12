package agent_test

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/usbhotplugd/usbhotplugd/internal/agent"
	"github.com/usbhotplugd/usbhotplugd/internal/assign"
	"github.com/usbhotplugd/usbhotplugd/internal/sim"
	"github.com/usbhotplugd/usbhotplugd/internal/xenstore/xenstoretest"
	"github.com/usbhotplugd/usbhotplugd/policy"
)

// winAudio sends the audio device to the HVM guest win, on an emulated
// controller.
const winAudio = `[domain.win]
usbctrl = ["type=devicemodel, version=2"]
[[rule]]
name = "audio"
action = "attach"
match = { id = "0d8c:0014" }
target = { domain = "win" }
`

// failDel is a device model whose device_del fails while fail is set.
type failDel struct {
	assign.QMP
	fail *atomic.Bool
}

func (f failDel) Run(ctx context.Context, cmd string, args, out any) error {
	if cmd == "device_del" && f.fail.Load() {
		return errors.New("QEMU: device_del timed out")
	}
	return f.QMP.Run(ctx, cmd, args, out)
}

// A detach from an emulated controller that QEMU refuses puts back the
// port and the ownership record together: with the port alone the device
// would stay in the guest with no owner, and never be detached again.
func TestFailedDMDetachKeepsItsOwnership(t *testing.T) {
	xenstoretest.ForEach(t, func(t *testing.T, s xenstoretest.Store) {
		e := newEnv(t, s)
		win := e.startHVM("win")
		var fail atomic.Bool
		dm := sim.NewDeviceModel()
		e.dialQMP = func(ctx context.Context, domid uint32) (assign.QMP, func(), error) {
			return failDel{dm, &fail}, func() {}, nil
		}
		pol := winAudio
		e.run(pol, false)
		if a, ok := e.at("1-2"); !ok || a.Domid != win.ID {
			t.Fatalf("not attached to win: %+v %v", a, ok)
		}
		fail.Store(true)
		p, err := policy.Parse("test.toml", []byte(strings.Replace(strings.Replace(pol, `action = "attach"`, `action = "deny"`, 1), `target = { domain = "win" }`, "", 1)), nil)
		if err != nil {
			t.Fatal(err)
		}
		e.a.Reload(p)
		e.await("1-2", agent.ActFailed)
		fail.Store(false) // QEMU answers again
		// The retry (or a pass the port's write-back asked for) detaches
		// it: it is still the agent's.
		e.await("1-2", agent.ActDetached)
		if a, ok := e.at("1-2"); ok {
			t.Errorf("still at domain %d port %d:%d after QEMU answers again", a.Domid, a.Controller, a.Port)
		}
	})
}

// A crash between an emulated port's write and QEMU's device_add leaves
// the port set and the guest without the device: the next start asks
// QEMU and adds it.
func TestStartAddsToQEMUWhatACrashLeftOut(t *testing.T) {
	xenstoretest.ForEach(t, func(t *testing.T, s xenstoretest.Store) {
		e := newEnv(t, s)
		win := e.startHVM("win")
		dm := sim.NewDeviceModel()
		e.dialQMP = func(ctx context.Context, domid uint32) (assign.QMP, func(), error) { return dm, func() {}, nil }
		pol := winAudio
		e.run(pol, false)
		var id string
		for _, d := range dm.Devices() {
			if strings.Count(d, "-") == 2 { // xenusb-BUS-ADDR: the device, not its controller
				id = d
			}
		}
		if id == "" {
			t.Fatalf("QEMU has no device: %v", dm.Devices())
		}
		e.stop()
		if err := dm.Run(e.ctx, "device_del", map[string]any{"id": id}, nil); err != nil {
			t.Fatal(err)
		}
		e.run(pol, false)
		if !slices.Contains(dm.Devices(), id) {
			t.Fatalf("after the start QEMU has %v, not %s", dm.Devices(), id)
		}
		if a, ok := e.at("1-2"); !ok || a.Domid != win.ID {
			t.Fatalf("1-2 not at win: %+v %v", a, ok)
		}
	})
}

// A device the agent owns, at an emulated port (no driver records), that
// the agent's memory of ports lost (a rescan that read the store between
// a failed detach's clear and its write-back) is still found at its port
// by its ownership record: a pass over it keeps it, as it is.
func TestOwnedFoundAtAPortItsMemoryLost(t *testing.T) {
	xenstoretest.ForEach(t, func(t *testing.T, s xenstoretest.Store) {
		e := newEnv(t, s)
		win := e.startHVM("win")
		dm := sim.NewDeviceModel()
		e.dialQMP = func(ctx context.Context, domid uint32) (assign.QMP, func(), error) {
			return dm, func() {}, nil
		}
		var mu sync.Mutex
		var after []agent.Audit
		e.run(winAudio, false)
		was, ok := e.at("1-2")
		if !ok || was.Domid != win.ID {
			t.Fatalf("not attached to win: %+v %v", was, ok)
		}
		e.onAudit = func(r agent.Audit) {
			mu.Lock()
			after = append(after, r)
			mu.Unlock()
		}
		e.a.ForgetPort("1-2")
		e.a.Handle(e.ctx, addEvent(t, "1-2"))
		e.settle()
		if a, ok := e.at("1-2"); !ok || a != was {
			t.Errorf("at %+v %v, want %+v", a, ok, was)
		}
		mu.Lock()
		defer mu.Unlock()
		if len(after) > 0 {
			t.Errorf("a pass over it did something: %+v", after)
		}
	})
}

// An agent killed between an emulated port's change and QEMU's command
// (device_add after the port's write, device_del at a detach) leaves no
// device in the guest's QEMU that no port names, and no port that stays
// failed: the next start, under a policy that leaves the device to dom0,
// converges.
func TestKilledAtAnEmulatedPortsQMPCommand(t *testing.T) {
	for _, cmd := range []string{"device_add", "device_del"} {
		t.Run(cmd, func(t *testing.T) {
			xenstoretest.ForEach(t, func(t *testing.T, s xenstoretest.Store) { killedAtQMP(t, s, cmd) })
		})
	}
}

func killedAtQMP(t *testing.T, s xenstoretest.Store, cmd string) {
	e := newEnv(t, s)
	dm := sim.NewDeviceModel()
	k := newKillSwitch(-1, -1)
	e.dialQMP = func(ctx context.Context, domid uint32) (assign.QMP, func(), error) {
		return killedAt{dm, k, cmd, false}, func() {}, nil
	}
	denied := strings.Replace(strings.Replace(winAudio, `action = "attach"`, `action = "deny"`, 1), `target = { domain = "win" }`, "", 1)
	a, stop := e.runKillable(k, winAudio)
	if cmd == "device_add" {
		k.arm()
	}
	win := e.startHVM("win")
	if cmd == "device_del" {
		e.await("1-2", agent.ActAttached)
		if x, ok := e.at("1-2"); !ok || x.Domid != win.ID {
			t.Fatalf("not attached to win: %+v %v", x, ok)
		}
		k.arm()
		e.reloadOn(a, denied)
	}
	select {
	case <-k.fired:
	case <-e.ctx.Done():
		t.Fatalf("no %s", cmd)
	}
	stop()
	e.dialQMP = func(ctx context.Context, domid uint32) (assign.QMP, func(), error) { return dm, func() {}, nil }
	e.run(denied, false)
	if x, ok := e.at("1-2"); ok {
		t.Errorf("1-2 at %+v after the restart:\n%s", x, e.logText())
	}
	for _, d := range dm.Devices() {
		if strings.Count(d, "-") == 2 { // xenusb-BUS-ADDR: the device, not its controller
			t.Errorf("QEMU still has %s, which no port names", d)
		}
	}
}

// An agent killed between an emulated controller's write to the store
// and its device_add in QEMU: the next start attaches the device all the
// same, the controller added to QEMU first; every attach to it would
// fail for good otherwise (QEMU has no such bus).
func TestKilledAtAnEmulatedControllersAdd(t *testing.T) {
	xenstoretest.ForEach(t, func(t *testing.T, s xenstoretest.Store) {
		e := newEnv(t, s)
		dm := sim.NewDeviceModel()
		k := newKillSwitch(-1, -1)
		e.dialQMP = func(ctx context.Context, domid uint32) (assign.QMP, func(), error) {
			return killedAt{dm, k, "device_add", true}, func() {}, nil
		}
		_, stop := e.runKillable(k, winAudio)
		k.arm()
		win := e.startHVM("win")
		select {
		case <-k.fired:
		case <-e.ctx.Done():
			t.Fatal("no controller's device_add")
		}
		stop()
		e.dialQMP = func(ctx context.Context, domid uint32) (assign.QMP, func(), error) { return dm, func() {}, nil }
		e.run(winAudio, false)
		if x, ok := e.at("1-2"); !ok || x.Domid != win.ID {
			t.Fatalf("1-2 not at win after the restart: %+v %v\n%s", x, ok, e.logText())
		}
		var dev bool
		for _, d := range dm.Devices() {
			dev = dev || strings.Count(d, "-") == 2 // xenusb-BUS-ADDR: the device, not its controller
		}
		if !dev {
			t.Errorf("QEMU has %v: not the device", dm.Devices())
		}
	})
}

// killedAt is a device model whose command cmd, once k is armed, never
// reaches QEMU: the agent dies as it is sent.
type killedAt struct {
	assign.QMP
	k   *killSwitch
	cmd string
	// ctrl: the device_add is a controller's, not a device's.
	ctrl bool
}

func (q killedAt) Run(ctx context.Context, cmd string, args, out any) error {
	q.k.mu.Lock()
	m, _ := args.(map[string]any)
	die := cmd == q.cmd && q.k.armed && (cmd != "device_add" || (m["driver"] == "usb-host") != q.ctrl)
	q.k.mu.Unlock()
	if die {
		q.k.kill()
		return errors.New("killed")
	}
	return q.QMP.Run(ctx, cmd, args, out)
}

// A device plugged again while the agent was away (or while its events
// were lost) has a new address, and QEMU still holds the old plug's
// usb-host, named by the old one: a detach of its emulated port takes out
// what QEMU has at that port, rather than failing for ever on an id QEMU
// never had.
func TestDMDetachAfterAnUnseenReplug(t *testing.T) {
	xenstoretest.ForEach(t, func(t *testing.T, s xenstoretest.Store) {
		e := newEnv(t, s)
		win := e.startHVM("win")
		dm := sim.NewDeviceModel()
		e.dialQMP = func(ctx context.Context, domid uint32) (assign.QMP, func(), error) { return dm, func() {}, nil }
		e.run(winAudio, false)
		if a, ok := e.at("1-2"); !ok || a.Domid != win.ID {
			t.Fatalf("not attached to win: %+v %v", a, ok)
		}
		e.stop()
		// Plugged again: the kernel gives it the next address.
		devnum := filepath.Join(e.root, "bus/usb/devices/1-2/devnum")
		if err := os.WriteFile(devnum, []byte("99\n"), 0o644); err != nil {
			t.Fatal(err)
		}
		deny := strings.Replace(strings.Replace(winAudio, `action = "attach"`, `action = "deny"`, 1), `target = { domain = "win" }`, "", 1)
		e.run(deny, false)
		if a, ok := e.at("1-2"); ok {
			t.Errorf("still at domain %d port %d:%d\nlog:\n%s", a.Domid, a.Controller, a.Port, e.logText())
		}
		for _, d := range dm.Devices() {
			if strings.Count(d, "-") == 2 {
				t.Errorf("QEMU still has %s", d)
			}
		}
	})
}

// The same plug seen at a start, its guest still its target: QEMU's
// usb-host of the old address, which no device answers any more, is
// replaced by one of the device now plugged, rather than kept as if the
// device were in the guest.
func TestStartReplacesAStaleUSBHostInQEMU(t *testing.T) {
	xenstoretest.ForEach(t, func(t *testing.T, s xenstoretest.Store) {
		e := newEnv(t, s)
		win := e.startHVM("win")
		dm := sim.NewDeviceModel()
		e.dialQMP = func(ctx context.Context, domid uint32) (assign.QMP, func(), error) { return dm, func() {}, nil }
		e.run(winAudio, false)
		e.stop()
		devnum := filepath.Join(e.root, "bus/usb/devices/1-2/devnum")
		if err := os.WriteFile(devnum, []byte("99\n"), 0o644); err != nil {
			t.Fatal(err)
		}
		e.run(winAudio, false)
		if a, ok := e.at("1-2"); !ok || a.Domid != win.ID {
			t.Fatalf("1-2 not at win: %+v %v", a, ok)
		}
		var ids []string
		for _, d := range dm.Devices() {
			if strings.Count(d, "-") == 2 {
				ids = append(ids, d)
			}
		}
		if !slices.Equal(ids, []string{"xenusb-1-99"}) {
			t.Errorf("QEMU has %v, want the device now plugged, xenusb-1-99", ids)
		}
	})
}
