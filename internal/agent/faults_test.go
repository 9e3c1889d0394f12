package agent_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/usbhotplugd/usbhotplugd/internal/agent"
	"github.com/usbhotplugd/usbhotplugd/internal/assign"
	"github.com/usbhotplugd/usbhotplugd/internal/fakekernel"
	"github.com/usbhotplugd/usbhotplugd/internal/qmp"
	"github.com/usbhotplugd/usbhotplugd/internal/sim"
	"github.com/usbhotplugd/usbhotplugd/internal/uevent"
	"github.com/usbhotplugd/usbhotplugd/internal/usbsysfs"
	"github.com/usbhotplugd/usbhotplugd/internal/xenstore"
	"github.com/usbhotplugd/usbhotplugd/internal/xenstore/xenstoretest"
	"github.com/usbhotplugd/usbhotplugd/policy"
)

// drain takes the audits of busid that arrived, after the agent is idle.
func (e *env) drain(busid string) []agent.Audit {
	e.t.Helper()
	e.settle()
	var out []agent.Audit
	for len(e.audits) > 0 {
		if r := <-e.audits; r.BusID == busid {
			out = append(out, r)
		}
	}
	return out
}

// A smart-card reader whose CCID interface no driver takes, on a device the
// agent never attached: the interface is left alone, at the first pass and
// at every rescan.
func TestAgentLeavesDriverlessInterfacesAlone(t *testing.T) {
	xenstoretest.ForEach(t, func(t *testing.T, s xenstoretest.Store) {
		e := newEnv(t, s)
		reader := fakekernel.Dev{BusID: "1-6", DevNum: 30, Vendor: "076b", Product: "3031", Class: "00",
			Interfaces: []fakekernel.Intf{{Class: "0b", SubClass: "00", Protocol: "00"}, {Class: "03", SubClass: "00", Protocol: "00", Driver: "usbhid"}}}
		if err := (&fakekernel.Builder{Root: e.root}).Add(reader).Err(); err != nil {
			t.Fatal(err)
		}
		e.run(testPolicy, false)
		for _, w := range e.kernel.Writes() {
			if strings.Contains(string(w.Data), "1-6:") || strings.Contains(w.Path, "1-6:") {
				t.Errorf("wrote %q to %s for an interface nobody unbound", w.Data, w.Path)
			}
		}
		if e.driverOf("1-6:1.0") != "" || e.driverOf("1-6:1.1") != "usbhid" {
			t.Errorf("drivers now %q, %q", e.driverOf("1-6:1.0"), e.driverOf("1-6:1.1"))
		}
		if strings.Contains(e.logText(), `"busid":"1-6","id":"076b:3031","trigger":"start","action":"released"`) {
			t.Error("the reader was said to be released")
		}
		if err := e.a.Rescan(e.ctx, "a test's rescan"); err != nil {
			t.Fatal(err)
		}
		if got := e.drain("1-6"); len(got) > 0 {
			t.Errorf("a rescan repeated %+v", got)
		}
		for _, w := range e.kernel.Writes() {
			if strings.Contains(string(w.Data), "1-6:") {
				t.Errorf("the rescan wrote %q to %s", w.Data, w.Path)
			}
		}
	})
}

// Two running domains with the same name: the agent does not guess which
// is meant; the device waits and its record says why.
func TestAgentDoesNotGuessBetweenSameNamedDomains(t *testing.T) {
	xenstoretest.ForEach(t, func(t *testing.T, s xenstoretest.Store) {
		e := newEnv(t, s)
		first := e.doms["kiosk"]
		second := e.start("kiosk")
		e.run(testPolicy, false)
		if a, ok := e.at("1-2"); ok {
			t.Fatalf("audio attached to domain %d of two named kiosk", a.Domid)
		}
		log := e.logText()
		want := fmt.Sprintf("2 running domains are named kiosk (domids %d, %d): the agent does not guess which is meant", first.ID, second.ID)
		if !strings.Contains(log, want) || !strings.Contains(log, `"busid":"1-2","id":"0d8c:0014","trigger":"start","action":"pending"`) {
			t.Errorf("the record does not say why:\n%s", log)
		}
	})
}

// Twins the rule cannot tell apart: when xl attaches one, the other's
// reason is what holds now.
func TestAgentTellsTwinsAgainWhenXLAttachesOne(t *testing.T) {
	xenstoretest.ForEach(t, func(t *testing.T, s xenstoretest.Store) {
		e := newEnv(t, s)
		bld := &fakekernel.Builder{Root: e.root}
		for i, b := range []string{"1-6", "1-7"} {
			d := benchDev(b, i)
			d.Serial = ""
			bld.Add(d)
		}
		if err := bld.Err(); err != nil {
			t.Fatal(err)
		}
		pol := strings.Replace(benchPolicy(4), `duplicates = "all"`, "", 1)
		e.run(pol, false)
		if _, ok := e.at("1-6"); ok {
			t.Fatal("a twin was attached")
		}
		if _, err := e.h.Attach(e.ctx, e.doms["desk"].ID, policy.DevSpec{BusID: "1-6", Controller: -1}); err != nil {
			t.Fatal(err)
		}
		for {
			r := e.await("1-7", agent.ActRefused)
			if strings.Contains(r.Reason, "its twin 1-6 is attached and keeps its place") {
				break
			}
		}
	})
}

// An HVM guest whose QEMU is not up yet (its QMP socket missing, then
// refusing): the device waits as pending, is tried again, and attaches
// once QEMU answers; it is never taken for unplugged.
func TestAgentWaitsForAGuestsDeviceModel(t *testing.T) {
	xenstoretest.ForEach(t, func(t *testing.T, s xenstoretest.Store) {
		e := newEnv(t, s)
		win := e.startHVM("win")
		dir := t.TempDir()
		sock := filepath.Join(dir, "qmp")
		var mu sync.Mutex
		var dm *sim.DeviceModel
		e.dialQMP = func(ctx context.Context, domid uint32) (assign.QMP, func(), error) {
			mu.Lock()
			defer mu.Unlock()
			if dm != nil && domid == win.ID {
				return dm, func() {}, nil
			}
			c, err := qmp.Dial(ctx, sock)
			if err != nil {
				return nil, nil, err
			}
			c.Close()
			return nil, nil, errors.New("unexpected: a QMP peer answered")
		}
		e.run(winAudio, false)
		// The first pass found no socket: pending, not dropped.
		if log := e.logText(); !strings.Contains(log, `"busid":"1-2","id":"0d8c:0014","trigger":"start","action":"pending"`) ||
			!strings.Contains(log, "cannot be reached") {
			t.Errorf("not pending at the start:\n%s", log)
		}
		// The socket exists and refuses: still pending, told why.
		l, err := net.Listen("unix", sock)
		if err != nil {
			t.Fatal(err)
		}
		l.(*net.UnixListener).SetUnlinkOnClose(false)
		l.Close()
		for r := e.await("1-2", agent.ActPending); !strings.Contains(r.Reason, "refused"); r = e.await("1-2", agent.ActPending) {
		}
		mu.Lock()
		dm = sim.NewDeviceModel()
		mu.Unlock()
		for {
			select {
			case r := <-e.audits:
				if r.BusID != "1-2" {
					continue
				}
				switch r.Action {
				case agent.ActAttached:
					if r.Domid != int(win.ID) {
						t.Errorf("attached to %d", r.Domid)
					}
					return
				case agent.ActGone, agent.ActFailed:
					t.Fatalf("%s: %s", r.Action, r.Reason)
				}
			case <-e.ctx.Done():
				t.Fatal("never attached once QEMU answered")
			}
		}
	})
}

// A migration's arrival: the guest comes as NAME--incoming and is then
// renamed NAME, as xl rename does (both name nodes in one transaction).
// The device pending for NAME attaches without another domain event.
func TestAgentNoticesARenameAtOnce(t *testing.T) {
	xenstoretest.ForEach(t, func(t *testing.T, s xenstoretest.Store) {
		e := newEnv(t, s)
		e.run(strings.ReplaceAll(testPolicy, `target = { domain = "kiosk" }`, `target = { domain = "lab" }`), false)
		d := e.start("lab--incoming")
		// The agent has read the domains since it came (a rename caught by
		// that read would prove nothing).
		e.awaitLog(`"domain":"lab--incoming"`)
		e.settle()
		if _, ok := e.at("1-2"); ok {
			t.Fatal("attached to lab--incoming")
		}
		err := e.xs.Update(e.ctx, func(ctx context.Context, tx *xenstore.Tx) error {
			if err := tx.Write(ctx, fmt.Sprintf("/local/domain/%d/name", d.ID), []byte("lab")); err != nil {
				return err
			}
			return tx.Write(ctx, "/vm/"+d.UUID+"/name", []byte("lab"))
		})
		if err != nil {
			t.Fatal(err)
		}
		if r := e.await("1-2", agent.ActAttached); r.Domid != int(d.ID) || r.Domain != "lab" {
			t.Errorf("after the rename: %+v", r)
		}
	})
}

// Controllers the agent cannot use (a driver domain's backend, a type
// libxl never writes) are skipped, each alone: the rest of the host works
// on, and the status says why each is skipped.
func TestAgentSkipsControllersItCannotUse(t *testing.T) {
	xenstoretest.ForEach(t, func(t *testing.T, s xenstoretest.Store) {
		e := newEnv(t, s)
		kiosk, desk := e.doms["kiosk"].ID, e.doms["desk"].ID
		for _, kv := range [][2]string{
			{fmt.Sprintf("/libxl/%d/device/vusb/5/type", kiosk), "pv"},
			{fmt.Sprintf("/libxl/%d/device/vusb/5/backend", kiosk), fmt.Sprintf("/local/domain/7/backend/vusb/%d/5", kiosk)},
			{fmt.Sprintf("/libxl/%d/device/vusb/5/frontend", kiosk), fmt.Sprintf("/local/domain/%d/device/vusb/5", kiosk)},
			{fmt.Sprintf("/libxl/%d/device/vusb/3/type", desk), "bogus"},
		} {
			if err := e.xs.Write(e.ctx, kv[0], []byte(kv[1])); err != nil {
				t.Fatal(err)
			}
		}
		e.run(testPolicy, false)
		if a, ok := e.at("1-2"); !ok || a.Domid != kiosk || a.Controller == 5 {
			t.Errorf("audio: %+v %v\n%s", a, ok, e.logText())
		}
		if a, ok := e.at("1-5"); !ok || a.Domid != desk {
			t.Errorf("mouse B: %+v %v", a, ok)
		}
		st := e.status.Load()
		if st == nil || len(st.Skipped) != 2 {
			t.Fatalf("status: %+v", st)
		}
		for _, want := range []string{fmt.Sprintf(`"domid":%d,"controller":5,"reason":"controller 5 of domain %d: its backend`, kiosk, kiosk), "in domain 7 (a driver domain), not dom0",
			fmt.Sprintf(`"domid":%d,"controller":3,"reason":"controller 3 of domain %d: type \"bogus\"`, desk, desk)} {
			b, _ := json.Marshal(st.Skipped)
			if !strings.Contains(string(b), want) {
				t.Errorf("status lacks %s: %s", want, b)
			}
		}
	})
}

// A controller directory with no type (a half-written one, or an
// admin's stray write below /libxl) is skipped like any other the agent
// cannot use: the agent starts, and the domain's other controllers and
// the rest of the host work on.
func TestAgentSkipsAControllerWithNoType(t *testing.T) {
	xenstoretest.ForEach(t, func(t *testing.T, s xenstoretest.Store) {
		e := newEnv(t, s)
		kiosk := e.doms["kiosk"].ID
		p := fmt.Sprintf("/libxl/%d/device/vusb/5/backend", kiosk)
		if err := e.xs.Write(e.ctx, p, []byte(fmt.Sprintf("/local/domain/0/backend/vusb/%d/5", kiosk))); err != nil {
			t.Fatal(err)
		}
		e.run(testPolicy, false)
		if a, ok := e.at("1-2"); !ok || a.Domid != kiosk || a.Controller == 5 {
			t.Errorf("audio: %+v %v\n%s", a, ok, e.logText())
		}
		if a, ok := e.at("1-5"); !ok || a.Domid != e.doms["desk"].ID {
			t.Errorf("mouse B: %+v %v", a, ok)
		}
		st := e.status.Load()
		b, _ := json.Marshal(st.Skipped)
		if want := fmt.Sprintf(`"domid":%d,"controller":5,"reason":"controller 5 of domain %d: no type`, kiosk, kiosk); !strings.Contains(string(b), want) {
			t.Errorf("status lacks %s: %s", want, b)
		}
	})
}

// What the agent tolerates in the store is said in its log, once,
// however many times it looks: a controller it skips, a name under /libxl
// that is no devid, a port that names no device.
func TestAgentLogsWhatItToleratesOnce(t *testing.T) {
	xenstoretest.ForEach(t, func(t *testing.T, s xenstoretest.Store) {
		e := newEnv(t, s)
		desk := e.doms["desk"].ID
		if _, err := e.h.AddController(e.ctx, desk, policy.CtrlSpec{Version: 2, Ports: 2}, false); err != nil {
			t.Fatal(err)
		}
		for _, kv := range [][2]string{
			{fmt.Sprintf("/libxl/%d/device/vusb/3/type", desk), "bogus"},
			{fmt.Sprintf("/libxl/%d/device/vusb/junk/type", desk), "pv"},
			{fmt.Sprintf("/local/domain/0/backend/vusb/%d/0/port/2", desk), "no-busid"},
		} {
			if err := e.xs.Write(e.ctx, kv[0], []byte(kv[1])); err != nil {
				t.Fatal(err)
			}
		}
		e.run(testPolicy, false)
		for range 3 {
			if err := e.a.Rescan(e.ctx, "test"); err != nil {
				t.Fatal(err)
			}
			e.settle()
		}
		for _, want := range []string{fmt.Sprintf("controller 3 of domain %d is skipped", desk), fmt.Sprintf("/libxl/%d/device/vusb/junk is not a controller devid", desk),
			fmt.Sprintf(`domain %d controller 0 port 2: \"no-busid\" is not a device busid`, desk)} {
			if n := strings.Count(e.logText(), want); n != 1 {
				t.Errorf("the log says %q %d times:\n%s", want, n, e.logText())
			}
		}
	})
}

// A rule's pinned port found taken at run time: the device goes to
// another port, and its record says so.
func TestAgentSaysAPinnedPortWasTaken(t *testing.T) {
	xenstoretest.ForEach(t, func(t *testing.T, s xenstoretest.Store) {
		e := newEnv(t, s)
		kiosk := e.doms["kiosk"].ID
		if _, err := e.h.AddController(e.ctx, kiosk, policy.CtrlSpec{Version: 2, Ports: 4}, false); err != nil {
			t.Fatal(err)
		}
		if _, err := e.h.Attach(e.ctx, kiosk, policy.DevSpec{BusID: "1-1.6", Controller: 0, Port: 2}); err != nil {
			t.Fatal(err)
		}
		pol := "[domain.kiosk]\nusbctrl = [\"version=2, ports=4\"]\n" +
			strings.Replace(testPolicy, `target = { domain = "kiosk" }`, `target = { domain = "kiosk", controller = 0, port = 2 }`, 1)
		e.run(pol, false)
		a, ok := e.at("1-2")
		if !ok || a.Domid != kiosk || a.Port == 2 {
			t.Fatalf("audio: %+v %v", a, ok)
		}
		want := fmt.Sprintf("its pinned port 0:2 could not take it (port 0:2 holds 1-1.6): attached at 0:%d instead", a.Port)
		if !strings.Contains(e.logText(), want) {
			t.Errorf("the record does not say %q:\n%s", want, e.logText())
		}
	})
}

// A device the agent attached, whose interfaces a detach that raced
// another left without a driver and without a record (libxl's destroy and
// the agent both giving it back): the agent offers them to the kernel, so
// nothing is lost to dom0; a device it never attached is left alone (see
// TestAgentLeavesDriverlessInterfacesAlone).
func TestAgentGivesBackWhatARacedDetachLeftUnbound(t *testing.T) {
	xenstoretest.ForEach(t, func(t *testing.T, s xenstoretest.Store) {
		e := newEnv(t, s)
		e.run(testPolicy, false)
		a, ok := e.at("1-2")
		if !ok {
			t.Fatal("audio not attached")
		}
		// What the race leaves: the port cleared, the interfaces out of
		// usbback with no driver, the driver records gone.
		for _, intf := range []string{"1-2:1.0", "1-2:1.1", "1-2:1.2", "1-2:1.3"} {
			if err := e.h.Sys.Unbind(intf); err != nil {
				t.Fatal(err)
			}
		}
		if err := e.xs.Rm(e.ctx, "/libxl/usbback/1-2"); err != nil {
			t.Fatal(err)
		}
		for _, p := range []string{fmt.Sprintf("/local/domain/0/backend/vusb/%d/%d/port/%d", a.Domid, a.Controller, a.Port), fmt.Sprintf("/libxl/%d/device/vusb/%d/port/%d", a.Domid, a.Controller, a.Port)} {
			if err := e.xs.Write(e.ctx, p, nil); err != nil {
				t.Fatal(err)
			}
		}
		e.await("1-2", agent.ActReleased)
		e.settle()
		for _, intf := range []string{"1-2:1.0", "1-2:1.3"} {
			if drv := e.driverOf(intf); drv == "" || drv == "usbback" {
				t.Errorf("%s left with driver %q", intf, drv)
			}
		}
	})
}

// After dom0 resumes from suspend, the kernel probes the interfaces again
// and dom0's drivers take the guest's device before the agent: the port
// is still set, so no detach is under way, and the agent moves the
// interface back at once (not at a second look), and says so.
func TestAgentTakesBackAtOnceWhatDom0sDriversTook(t *testing.T) {
	xenstoretest.ForEach(t, func(t *testing.T, s xenstoretest.Store) {
		e := newEnv(t, s)
		e.run(testPolicy, false)
		if _, ok := e.at("1-2"); !ok {
			t.Fatal("audio not attached")
		}
		if err := e.h.Sys.Unbind("1-2:1.0"); err != nil {
			t.Fatal(err)
		}
		if err := e.h.Sys.Bind("1-2:1.0", "snd-usb-audio"); err != nil {
			t.Fatal(err)
		}
		dp := "/devices/pci0000:00/0000:00:14.0/usb1/1-2/1-2:1.0"
		ev, err := uevent.Parse([]byte("bind@" + dp + "\x00ACTION=bind\x00DEVPATH=" + dp + "\x00SUBSYSTEM=usb\x00DEVTYPE=usb_interface\x00DRIVER=snd-usb-audio\x00SEQNUM=9\x00"))
		if err != nil {
			t.Fatal(err)
		}
		e.a.Handle(e.ctx, uevent.Message{Event: ev})
		r := e.await("1-2", agent.ActKept)
		if !strings.Contains(r.Reason, "1-2:1.0 was with snd-usb-audio: moved back to usbback") || r.Trigger == agent.TrigAfterUnbound {
			t.Errorf("taken back: %+v", r)
		}
		e.settle()
		if drv := e.driverOf("1-2:1.0"); drv != "usbback" {
			t.Errorf("1-2:1.0 is with %q", drv)
		}
	})
}

// A device in usbback at a port the agent has not heard of yet (xl wrote
// it; the watch has not told) is not given back to dom0 on its memory's
// word: the store is read, the port found, and the device left to xl.
func TestAgentReadsThePortsBeforeGivingBack(t *testing.T) {
	xenstoretest.ForEach(t, func(t *testing.T, s xenstoretest.Store) {
		e := newEnv(t, s)
		e.noWatches = true
		e.run("", false)
		if _, err := e.h.Attach(e.ctx, e.doms["desk"].ID, policy.DevSpec{BusID: "1-2", Controller: -1}); err != nil {
			t.Fatal(err)
		}
		ev, err := uevent.Parse([]byte("bind@/devices/pci0000:00/0000:00:14.0/usb1/1-2/1-2:1.0\x00ACTION=bind\x00DEVPATH=/devices/pci0000:00/0000:00:14.0/usb1/1-2/1-2:1.0\x00" +
			"SUBSYSTEM=usb\x00DEVTYPE=usb_interface\x00SEQNUM=9\x00DRIVER=usbback\x00"))
		if err != nil {
			t.Fatal(err)
		}
		e.a.Handle(e.ctx, uevent.Message{Event: ev})
		for r := range e.audits {
			if r.BusID != "1-2" {
				continue
			}
			if r.Action == agent.ActReleased {
				t.Fatalf("given back to dom0 though xl attached it: %s", r.Reason)
			}
			break
		}
		if a, ok := e.at("1-2"); !ok || a.Domid != e.doms["desk"].ID {
			t.Fatalf("1-2 is not where xl put it: %+v %v", a, ok)
		}
	})
}

// Another device at the port the agent made for its busid (plugged there
// while the agent was down; the port names the busid, not the device):
// the port stays the agent's, and the device there is decided afresh, so
// a deny takes it out of the guest.
func TestAgentOwnsItsPortWhateverDeviceIsThere(t *testing.T) {
	xenstoretest.ForEach(t, func(t *testing.T, s xenstoretest.Store) {
		e := newEnv(t, s)
		kiosk := e.doms["kiosk"]
		a, err := e.h.Attach(e.ctx, kiosk.ID, policy.DevSpec{BusID: "1-2", Controller: -1})
		if err != nil {
			t.Fatal(err)
		}
		e.writeOwned("1-2", "kiosk", a, `"rule":"audio","id":"046d:c077","serial":"OTHER"`)
		e.run("[[rule]]\nname = \"no-audio\"\naction = \"deny\"\nmatch = { id = \"0d8c:0014\" }\n", false)
		if a, ok := e.at("1-2"); ok {
			t.Fatalf("1-2 still at domain %d port %d:%d though denied", a.Domid, a.Controller, a.Port)
		}
	})
}

// The device held after an admin's detach is the one the record names:
// another one plugged at that busid while the agent was down is decided
// afresh, not held for the one that was there before.
func TestHeldIsOfTheDeviceItsRecordNames(t *testing.T) {
	xenstoretest.ForEach(t, func(t *testing.T, s xenstoretest.Store) {
		e := newEnv(t, s)
		kiosk := e.doms["kiosk"]
		a, err := e.h.Attach(e.ctx, kiosk.ID, policy.DevSpec{BusID: "1-2", Controller: -1})
		if err != nil {
			t.Fatal(err)
		}
		if err := e.h.Detach(e.ctx, a.Domid, a.Controller, a.Port); err != nil {
			t.Fatal(err)
		}
		e.writeOwned("1-2", "kiosk", a, `"rule":"audio","id":"0d8c:0014","serial":"ANOTHER"`)
		e.run(testPolicy, false)
		if at, ok := e.at("1-2"); !ok || at.Domid != kiosk.ID {
			t.Fatalf("1-2 not attached to kiosk though the policy sends it there and the held record is of another device: %+v %v\nlog:\n%s", at, ok, e.logText())
		}
	})
}

// A device kept at the agent's port, though its record named another one
// (swapped while the agent was down), becomes the record's device: an
// admin's detach of it afterwards is respected as for any other.
func TestKeptAtItsPortTheRecordNamesTheDevice(t *testing.T) {
	xenstoretest.ForEach(t, func(t *testing.T, s xenstoretest.Store) {
		e := newEnv(t, s)
		kiosk := e.doms["kiosk"]
		a, err := e.h.Attach(e.ctx, kiosk.ID, policy.DevSpec{BusID: "1-2", Controller: -1})
		if err != nil {
			t.Fatal(err)
		}
		e.writeOwned("1-2", "kiosk", a, `"rule":"audio","id":"046d:c077","serial":"OTHER"`)
		e.run(testPolicy, false) // drains the start's audits
		if !strings.Contains(e.logText(), "its ownership record named another device at 1-2") {
			t.Errorf("the keep does not say its record changed:\n%s", e.logText())
		}
		owned, err := agent.ListOwned(e.ctx, e.xs)
		if err != nil {
			t.Fatal(err)
		}
		if o := owned["1-2"]; o.ID != "0d8c:0014" || o.Serial == "OTHER" || o.Port != a.Port {
			t.Fatalf("the record is not of the device kept: %+v", o)
		}
		if err := e.h.Detach(e.ctx, a.Domid, a.Controller, a.Port); err != nil {
			t.Fatal(err)
		}
		e.await("1-2", agent.ActHeld)
		e.settle()
		if at, ok := e.at("1-2"); ok {
			t.Fatalf("the agent undid the admin's detach: %+v", at)
		}
	})
}

const micePolicy = `
[[rule]]
name = "mice"
action = "attach"
match = { id = "046d:c077" }
target = { domain = "desk" }
`

// Twins the rule cannot tell apart (1-4 MOUSE-A and 1-5 MOUSE-B, a rule
// naming only 046d:c077, duplicates = "refuse") are refused while neither
// is attached. An ownership record at 1-4 that names a third mouse
// (MOUSE-Z, held after an admin's detach, then swapped for MOUSE-A while
// the agent was down) makes MOUSE-A "decided afresh" for held; decided
// afresh, it is one of two twins of which none is attached, and both are
// refused. The twin check still counts the record as MOUSE-A's, so
// MOUSE-A goes to desk and MOUSE-B is refused because of it.
func TestARecordOfAnotherDeviceGivesNoPlaceAmongTwins(t *testing.T) {
	xenstoretest.ForEach(t, func(t *testing.T, s xenstoretest.Store) {
		e := newEnv(t, s)
		desk := e.doms["desk"]
		rec := fmt.Sprintf(`{"domain":"desk","domid":%d,"controller":0,"port":1,"rule":"mice","id":"046d:c077","serial":"MOUSE-Z"}`, desk.ID)
		if err := e.xs.Write(e.ctx, agent.RecordRoot+"/1-4", []byte(rec)); err != nil {
			t.Fatal(err)
		}
		e.run(micePolicy, false)
		for _, b := range []string{"1-4", "1-5"} {
			if at, ok := e.at(b); ok {
				t.Errorf("%s (twin of the other, neither attached) is at domain %d port %d:%d", b, at.Domid, at.Controller, at.Port)
			}
		}
		if t.Failed() {
			st := e.status.Load()
			for _, d := range st.Devices {
				if d.BusID == "1-4" || d.BusID == "1-5" {
					t.Logf("%s %s: %s", d.BusID, d.Action, d.Reason)
				}
			}
		}
	})
}

// Kept at its port though the record named another device, the device's
// record is rewritten to name it: all of it, not only its id and serial.
// The rule is the one that keeps it there now (the hooks of the rule of a
// "cleared" record run when it leaves), and the drivers are not the other
// device's: stepReRecord writes them back as libxl's driver records when a
// late detach removed those, and xl's detach rebinds from them.
func TestReOwnRewritesTheWholeRecord(t *testing.T) {
	xenstoretest.ForEach(t, func(t *testing.T, s xenstoretest.Store) {
		e := newEnv(t, s)
		kiosk := e.doms["kiosk"]
		a, err := e.h.Attach(e.ctx, kiosk.ID, policy.DevSpec{BusID: "1-2", Controller: -1})
		if err != nil {
			t.Fatal(err)
		}
		want := e.driverRecord("1-2:1.0") // the audio device's own: snd-usb-audio
		// The record of a mouse the agent attached at 1-2 before.
		e.writeOwned("1-2", "kiosk", a, `"rule":"mouse-a","id":"046d:c077","serial":"OTHER","drivers":{"1-2:1.0":"usbhid"}`)
		e.run(testPolicy, false)
		owned, err := agent.ListOwned(e.ctx, e.xs)
		if err != nil {
			t.Fatal(err)
		}
		o := owned["1-2"]
		if o.ID != "0d8c:0014" {
			t.Fatalf("not rewritten: %+v", o)
		}
		if o.Rule != "audio" {
			t.Errorf("the record names the device kept by rule audio, but still the rule %q of the device before", o.Rule)
		}
		if o.Drivers["1-2:1.0"] == "usbhid" {
			t.Errorf("the record names the audio device, but still the mouse's drivers: %v", o.Drivers)
		}
		// A late detach of the port removes libxl's records; the next
		// pass writes them back from the record.
		e.stop()
		if err := e.xs.Rm(e.ctx, "/libxl/usbback/1-2"); err != nil {
			t.Fatal(err)
		}
		e.run(testPolicy, false)
		if got := e.driverRecord("1-2:1.0"); got == "/sys/bus/usb/drivers/usbhid" {
			t.Errorf("1-2:1.0's driver record is the mouse's %q, its driver was %q", got, want)
		}
	})
}

// writeOwned writes busid's ownership record as the agent would have for
// an attach to domain at a, with the record's other fields (JSON members,
// comma-separated) as given.
func (e *env) writeOwned(busid, domain string, a assign.Assignment, fields string) {
	e.t.Helper()
	rec := fmt.Sprintf(`{"domain":%q,"domid":%d,"controller":%d,"port":%d,%s}`, domain, a.Domid, a.Controller, a.Port, fields)
	if err := e.xs.Write(e.ctx, agent.RecordRoot+"/"+busid, []byte(rec)); err != nil {
		e.t.Fatal(err)
	}
}

// connectedPorts is usbback's table of port rules as the real driver
// builds it: from the backends it has connected, since it watches a
// backend's ports only once the guest's frontend has connected to it.
func connectedPorts(ctx context.Context, xs *xenstore.Conn) func() ([]fakekernel.UsbbackPort, error) {
	const base = "/local/domain/0/backend/vusb"
	return func() ([]fakekernel.UsbbackPort, error) {
		var out []fakekernel.UsbbackPort
		doms, _ := xs.Directory(ctx, base)
		for _, d := range doms {
			ctrls, _ := xs.Directory(ctx, base+"/"+d)
			for _, c := range ctrls {
				back := base + "/" + d + "/" + c
				if st, err := xs.Read(ctx, back+"/state"); err != nil || string(st) != "4" {
					continue
				}
				ports, _ := xs.Directory(ctx, back+"/port")
				for _, p := range ports {
					if b, err := xs.Read(ctx, back+"/port/"+p); err == nil && len(b) > 0 {
						out = append(out, fakekernel.UsbbackPort{BusID: string(b), Version: 2})
					}
				}
			}
		}
		return out, nil
	}
}

// A guest still booting has not connected its frontend (xen-hcd) to its
// controller, and usbback serves none of that controller's ports until it
// has: a device attached meanwhile waits as pending and is attached once
// the frontend connects, instead of being refused until it is plugged
// again.
func TestAgentWaitsForTheGuestsFrontend(t *testing.T) {
	xenstoretest.ForEach(t, func(t *testing.T, s xenstoretest.Store) {
		e := newEnvWith(t, s, func(b *sim.Backends) { b.NoFrontend = true })
		usbback := connectedPorts(e.ctx, s.Dial(t))
		e.wrapKernel = func(w usbsysfs.Writer) usbsysfs.Writer {
			e.kernel.UsbbackPorts = usbback // before the agent starts
			return w
		}
		e.run(testPolicy, false)
		var first agent.Audit
		if st := e.status.Load(); st != nil {
			for _, d := range st.Devices {
				if d.BusID == "1-2" {
					first = d
				}
			}
		}
		if first.Action != agent.ActPending {
			t.Fatalf("1-2 at a guest whose frontend is not connected: %q (%s)", first.Action, first.Reason)
		}
		// Nor does the pass wait for usbback to learn the port, which it
		// cannot before the frontend connects: one bind a try (a retry
		// may have come since).
		binds := 0
		for _, w := range e.kernel.Writes() {
			if w.Path == "bus/usb/drivers/usbback/bind" && w.Data == "1-2:1.0" {
				binds++
			}
		}
		if binds > 2 {
			t.Errorf("%d binds of 1-2:1.0 before the frontend connected", binds)
		}
		// xen-hcd connects: usbback, connected, learns the ports.
		kiosk := e.doms["kiosk"].ID
		if err := e.xs.Write(e.ctx, fmt.Sprintf("/local/domain/0/backend/vusb/%d/0/state", kiosk), []byte("4")); err != nil {
			t.Fatal(err)
		}
		e.await("1-2", agent.ActAttached)
		if drv := e.driverOf("1-2:1.0"); drv != "usbback" {
			t.Errorf("1-2:1.0 is with %q", drv)
		}
	})
}

// An ownership record the agent cannot read (written by another version,
// or by hand) is ignored while its device is there, and removed with the
// device's other records when it leaves: it is not warned of at every
// pass over that busid for ever.
func TestAgentRemovesAnUnreadableRecordWhenItsDeviceLeaves(t *testing.T) {
	xenstoretest.ForEach(t, func(t *testing.T, s xenstoretest.Store) {
		e := newEnv(t, s)
		// The keyboard, which no rule names, at no port.
		rec := agent.RecordRoot + "/1-1_6"
		if err := e.xs.Write(e.ctx, rec, []byte(`{"domain":"kiosk","port":"one"}`)); err != nil {
			t.Fatal(err)
		}
		e.run(testPolicy, false)
		if err := e.kernel.Unplug("1-1.6"); err != nil {
			t.Fatal(err)
		}
		e.a.Handle(e.ctx, removeEvent(t, "1-1.6"))
		e.await("1-1.6", agent.ActGone)
		e.settle()
		if b, err := e.xs.Read(e.ctx, rec); err == nil {
			t.Errorf("the unreadable record of 1-1.6 is left: %q", b)
		}
	})
}

// With authorization before probe, a device whose guest has not connected
// its frontend yet waits as pending, and stays inert meanwhile, as any
// pending device does: the attach that usbback refused authorized its
// interfaces for usbback, and left so, they would be any dom0 driver's
// that the kernel matches next.
func TestAgentPendingForTheFrontendStaysInert(t *testing.T) {
	xenstoretest.ForEach(t, func(t *testing.T, s xenstoretest.Store) {
		e := newEnvWith(t, s, func(b *sim.Backends) { b.NoFrontend = true })
		usbback := connectedPorts(e.ctx, s.Dial(t))
		e.wrapKernel = func(w usbsysfs.Writer) usbsysfs.Writer {
			e.kernel.UsbbackPorts = usbback
			return w
		}
		e.run(authzTo("kiosk"), false)
		e.plugInert(e.a)
		r := e.await("1-6", agent.ActPending)
		e.settle()
		if drv, a := e.driverOf("1-6:1.0"), e.intfAuthorized("1-6:1.0"); drv != "" || a != "0" {
			t.Errorf("1-6:1.0 pending for the frontend: driver %q, authorized %s (%s)", drv, a, r.Reason)
		}
		kiosk := e.doms["kiosk"].ID
		if err := e.xs.Write(e.ctx, fmt.Sprintf("/local/domain/0/backend/vusb/%d/0/state", kiosk), []byte("4")); err != nil {
			t.Fatal(err)
		}
		e.await("1-6", agent.ActAttached)
		if drv := e.driverOf("1-6:1.0"); drv != "usbback" {
			t.Errorf("1-6:1.0 is with %q once the frontend connected", drv)
		}
	})
}

// bindTries signals each write of intf to usbback's bind.
type bindTries struct {
	usbsysfs.Writer
	intf  string
	tried chan struct{}
}

func (b bindTries) WriteAttr(path string, data []byte) error {
	err := b.Writer.WriteAttr(path, data)
	if strings.HasSuffix(path, "/drivers/usbback/bind") && string(data) == b.intf {
		select {
		case b.tried <- struct{}{}:
		default:
		}
	}
	return err
}

// A device pending for its guest's frontend is attached as the frontend
// connects (the backend's state changes), not at its next retry, which
// has grown to a minute for a guest that boots slowly.
func TestAgentAttachesAsTheFrontendConnects(t *testing.T) {
	xenstoretest.ForEach(t, func(t *testing.T, s xenstoretest.Store) {
		e := newEnvWith(t, s, func(b *sim.Backends) { b.NoFrontend = true })
		usbback := connectedPorts(e.ctx, s.Dial(t))
		tried := make(chan struct{}, 1)
		e.wrapKernel = func(w usbsysfs.Writer) usbsysfs.Writer {
			e.kernel.UsbbackPorts = usbback
			return bindTries{w, "1-2:1.0", tried}
		}
		e.run(testPolicy, false)
		// The start's try and two retries: the next is 2 s away.
		for range 3 {
			select {
			case <-tried:
			case <-e.ctx.Done():
				t.Fatal("no retry of 1-2")
			}
		}
		e.settle()
		kiosk := e.doms["kiosk"].ID
		if err := e.xs.Write(e.ctx, fmt.Sprintf("/local/domain/0/backend/vusb/%d/0/state", kiosk), []byte("4")); err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithTimeout(e.ctx, time.Second)
		defer cancel()
		for {
			if a, ok := e.at("1-2"); ok && a.Domid == kiosk && e.driverOf("1-2:1.0") == "usbback" {
				break
			}
			select {
			case <-e.audits:
			case <-ctx.Done():
				t.Fatalf("1-2 not attached within a second of the frontend's connect\nlog:\n%s", e.logText())
			}
		}
	})
}

// What the store holds that every look finds again is said once, and so
// it is said whatever else was logged just before: a burst of warnings
// that uses up the sampler's budget does not take away a controller
// skipped, which is said at no later pass.
func TestAgentSaysASkippedControllerAfterABurst(t *testing.T) {
	xenstoretest.ForEach(t, func(t *testing.T, s xenstoretest.Store) {
		e := newEnv(t, s)
		kiosk := e.doms["kiosk"].ID
		for i := range 12 {
			if err := e.xs.Write(e.ctx, fmt.Sprintf("/libxl/%d/device/vusb/stray%d", kiosk, i), nil); err != nil {
				t.Fatal(err)
			}
		}
		// Listed, with no type: skipped.
		if err := e.xs.Write(e.ctx, fmt.Sprintf("/libxl/%d/device/vusb/7/num-ports", kiosk), []byte("8")); err != nil {
			t.Fatal(err)
		}
		e.run(testPolicy, false)
		if want := fmt.Sprintf("controller 7 of domain %d is skipped", kiosk); !strings.Contains(e.logText(), want) {
			t.Errorf("the log never said %q:\n%s", want, e.logText())
		}
	})
}
