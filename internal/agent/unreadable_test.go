package agent_test

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/usbhotplugd/usbhotplugd/internal/agent"
	"github.com/usbhotplugd/usbhotplugd/internal/fakekernel"
	"github.com/usbhotplugd/usbhotplugd/internal/uevent"
	"github.com/usbhotplugd/usbhotplugd/internal/xenstore/xenstoretest"
)

// breakAttr makes one of busid's attributes malformed, as a faulty device
// or kernel may show it; the returned func mends it.
func (e *env) breakAttr(busid, attr string) (mend func()) {
	e.t.Helper()
	p := filepath.Join(e.root, "bus/usb/devices", busid, attr)
	good, err := os.ReadFile(p)
	if err != nil {
		e.t.Fatal(err)
	}
	if err := os.WriteFile(p, []byte("one\n"), 0o644); err != nil {
		e.t.Fatal(err)
	}
	return func() {
		if err := os.WriteFile(p, good, 0o644); err != nil {
			e.t.Fatal(err)
		}
	}
}

// A device that cannot be read at the start holds back neither the start
// nor the other devices: its record says why it failed, and it is looked
// at again until it can be read.
func TestAgentStartsPastAnUnreadableDevice(t *testing.T) {
	xenstoretest.ForEach(t, func(t *testing.T, s xenstoretest.Store) {
		e := newEnv(t, s)
		e.noWatches = true // no rescan of their first events races the trigger asserted
		mend := e.breakAttr("1-4", "busnum")
		e.run(testPolicy, false)
		for _, b := range []string{"1-2", "1-5"} {
			if _, ok := e.at(b); !ok {
				t.Errorf("%s not attached", b)
			}
		}
		// Its retry fails as its first pass did.
		if r := e.await("1-4", agent.ActFailed); r.FailedStep != "observe" || !strings.Contains(r.Reason, "1-4/busnum") {
			t.Errorf("the unreadable device's record: %+v", r)
		}
		if _, ok := e.at("1-4"); ok {
			t.Error("1-4 attached while it could not be read")
		}
		mend()
		if r := e.await("1-4", agent.ActAttached); r.Domain != "desk" || r.Trigger != agent.TrigRetry {
			t.Errorf("1-4 once it can be read: %+v", r)
		}
	})
}

// One that cannot be read at the first start since dom0 booted counts as
// present (match.when) all the same: it was plugged before the agent.
func TestAgentUnreadableDeviceAtTheFirstStartIsPresent(t *testing.T) {
	xenstoretest.ForEach(t, func(t *testing.T, s xenstoretest.Store) {
		e := newEnv(t, s)
		if err := (&fakekernel.Builder{Root: e.root}).Add(benchDev("1-6", 1)).Err(); err != nil {
			t.Fatal(err)
		}
		mend := e.breakAttr("1-6", "devnum")
		e.run(whenPolicy, false)
		if r := e.await("1-6", agent.ActFailed); r.FailedStep != "observe" {
			t.Errorf("1-6 unreadable: %+v", r)
		}
		mend()
		if r := e.await("1-6", agent.ActDenied); r.Rule != "at-boot-stays" {
			t.Errorf("1-6, plugged before the first start: %+v", r)
		}
		// The pass that read it named its plug.
		v, err := e.xs.Read(e.ctx, agent.PresentRoot+"/1-6")
		if err != nil || string(v) != "11 1234:5678" {
			t.Errorf("its present record: %q %v", v, err)
		}
	})
}

// A kernel event that failed validation was some device's: everything is
// looked at again, so a device whose add it was is attached all the same.
func TestAgentRescansAfterARefusedEvent(t *testing.T) {
	xenstoretest.ForEach(t, func(t *testing.T, s xenstoretest.Store) {
		e := newEnv(t, s)
		// No store watches: their first events' rescan, late on a loaded
		// machine, would find the device before the refused event's.
		e.noWatches = true
		e.run(whenPolicy, false)
		if err := (&fakekernel.Builder{Root: e.root}).Add(benchDev("1-6", 1)).Err(); err != nil {
			t.Fatal(err)
		}
		_, perr := uevent.Parse([]byte("add@/devices/pci0000:00/0000:00:14.0/usb1/1-6\x00ACTION=add\x00SYNTH_ARG_\x01=1\x00"))
		if perr == nil {
			t.Fatal("the datagram parses")
		}
		e.a.Handle(e.ctx, uevent.Message{Refused: perr})
		if r := e.await("1-6", agent.ActAttached); r.Domain != "desk" || r.Trigger != agent.TrigRefused {
			t.Errorf("the device whose event was refused: %+v", r)
		}
		if st := e.a.Stats(); st.Refused != 1 || st.Overruns != 0 {
			t.Errorf("stats %+v", st)
		}
		if !strings.Contains(e.logText(), "a kernel event could not be read") {
			t.Errorf("log:\n%s", e.logText())
		}
	})
}

// A refused event of a subsystem the agent reads nothing of (an input
// device's NAME holds the USB product string, control bytes and all)
// lost nothing: no rescan, so a device plugged without its events is
// not found by one.
func TestAgentIgnoresARefusedEventOfAnotherSubsystem(t *testing.T) {
	xenstoretest.ForEach(t, func(t *testing.T, s xenstoretest.Store) {
		e := newEnv(t, s)
		e.noWatches = true
		e.run(whenPolicy, false)
		if err := (&fakekernel.Builder{Root: e.root}).Add(benchDev("1-6", 1)).Err(); err != nil {
			t.Fatal(err)
		}
		b := []byte("add@/devices/pci0000:00/0000:00:14.0/usb1/1-6/1-6:1.0/0003:1234:5678.0001/input/input9\x00ACTION=add\x00" +
			"DEVPATH=/devices/pci0000:00/0000:00:14.0/usb1/1-6/1-6:1.0/0003:1234:5678.0001/input/input9\x00SUBSYSTEM=input\x00" +
			"NAME=\"Evil\nKeyboard\"\x00SEQNUM=9\x00")
		_, perr := uevent.Parse(b)
		if perr == nil || uevent.SubsystemOf(b) != "input" {
			t.Fatalf("the datagram: %v, subsystem %q", perr, uevent.SubsystemOf(b))
		}
		e.a.Handle(e.ctx, uevent.Message{Refused: perr, RefusedSubsystem: uevent.SubsystemOf(b)})
		e.settle()
		for len(e.audits) > 0 {
			if r := <-e.audits; r.BusID == "1-6" {
				t.Errorf("a pass over 1-6: %+v", r)
			}
		}
		if st := e.a.Stats(); st.Refused != 1 {
			t.Errorf("stats %+v", st)
		}
		if strings.Contains(e.logText(), "rescanning everything") {
			t.Errorf("log:\n%s", e.logText())
		}
	})
}

// A twin that cannot be read at a rescan is still a twin: the other is
// not taken for the only device its rule matches.
func TestAgentKeepsTwinsApartFromAnUnreadableOne(t *testing.T) {
	xenstoretest.ForEach(t, func(t *testing.T, s xenstoretest.Store) {
		e := newEnv(t, s)
		a, b := benchDev("1-6", 1), benchDev("1-7", 2)
		b.Serial = a.Serial
		if err := (&fakekernel.Builder{Root: e.root}).Add(a).Add(b).Err(); err != nil {
			t.Fatal(err)
		}
		e.run("[[rule]]\nname = \"twins\"\naction = \"attach\"\nmatch = { id = \"1234:5678\" }\ntarget = { domain = \"desk\" }\n", false)
		for _, busid := range []string{"1-6", "1-7"} {
			if _, ok := e.at(busid); ok {
				t.Fatalf("twin %s attached", busid)
			}
		}
		e.breakAttr("1-6", "busnum")
		if err := e.a.Rescan(e.ctx, "test"); err != nil {
			t.Fatal(err)
		}
		e.await("1-6", agent.ActFailed)
		e.settle()
		if _, ok := e.at("1-7"); ok {
			t.Error("1-7 attached while its twin could not be read")
		}
	})
}
