package agent

import (
	"slices"
	"testing"

	"github.com/usbhotplugd/usbhotplugd/internal/assign"
	"github.com/usbhotplugd/usbhotplugd/internal/xenstore"
	"github.com/usbhotplugd/usbhotplugd/policy"
)

func TestClassifyBackend(t *testing.T) {
	for _, c := range []struct {
		path string
		want backendChange
		at   assign.Assignment
	}{
		{"/local/domain/0/backend/vbd/3/51712/state", changeNone, assign.Assignment{}},
		{"/local/domain/0/backend/vif/3/0", changeNone, assign.Assignment{}},
		{"/local/domain/0/backend/vusb/3/0/state", changeState, assign.Assignment{Domid: 3, Controller: 0, Type: policy.TypePV}},
		{"/local/domain/0/backend/vusb/3/0/num-ports", changeNone, assign.Assignment{}},
		{"/local/domain/0/backend/vusb/3/0/port/2", changePort, assign.Assignment{Domid: 3, Controller: 0, Port: 2, Type: policy.TypePV}},
		{"/local/domain/0/backend/qusb/7/1/port/31", changePort, assign.Assignment{Domid: 7, Controller: 1, Port: 31, Type: policy.TypeQUSB}},
		{"/local/domain/0/backend/vusb/3/0/port/32", changeAll, assign.Assignment{}},
		{"/local/domain/0/backend/vusb/3/0/port/0", changeAll, assign.Assignment{}},
		{"/local/domain/0/backend/vusb/3/0/port/x", changeAll, assign.Assignment{}},
		{"/local/domain/0/backend/vusb/3/0/port", changeAll, assign.Assignment{}},
		{"/local/domain/0/backend/vusb/3/0", changeAll, assign.Assignment{}},
		{"/local/domain/0/backend/vusb/3", changeAll, assign.Assignment{}},
		{"/local/domain/0/backend/vusb", changeAll, assign.Assignment{}},
		{"/local/domain/0/backend/vusb/x/0/port/1", changeAll, assign.Assignment{}},
		{"/local/domain/0/backend/vusb/3/-1/port/1", changeAll, assign.Assignment{}},
		{"/local/domain/0/backend/vusb/3/0/port/1/extra", changeAll, assign.Assignment{}},
		{"/local/domain/0/backend", changeAll, assign.Assignment{}},
		{"/elsewhere", changeAll, assign.Assignment{}},
	} {
		got, at := classifyBackend(c.path)
		if got != c.want || at != c.at {
			t.Errorf("classifyBackend(%q) = %v %+v, want %v %+v", c.path, got, at, c.want, c.at)
		}
	}
}

func TestNotePorts(t *testing.T) {
	a := New(Config{})
	p := func(busid string, port int) assign.Assignment {
		return assign.Assignment{Domid: 3, Controller: 0, Port: port, BusID: busid, Type: policy.TypePV}
	}
	check := func(got []string, want ...string) {
		t.Helper()
		slices.Sort(got)
		if !slices.Equal(got, want) {
			t.Errorf("moved %q, want %q", got, want)
		}
	}
	check(a.notePorts([]assign.Assignment{p("1-2", 1)}, ^uint64(0)), "1-2")
	check(a.notePorts([]assign.Assignment{p("1-2", 1)}, ^uint64(0))) // nothing new
	check(a.notePorts([]assign.Assignment{p("1-3", 1)}, ^uint64(0)), "1-2", "1-3")
	check(a.notePorts([]assign.Assignment{p("", 1)}, ^uint64(0)), "1-3")
	check(a.notePorts([]assign.Assignment{p("not a busid", 2)}, ^uint64(0))) // a guest's junk holds nothing
	check(a.notePorts([]assign.Assignment{p("1-4", 2), p("1-5", 3)}, ^uint64(0)), "1-4", "1-5")
	if len(a.ports) != 2 {
		t.Errorf("ports %v, want 1-4 and 1-5", a.ports)
	}

	// A read that began before the worker's own attach does not undo it;
	// the device is looked at again, since the read may as well be the
	// newer (xl wrote over the attach).
	since := a.portGeneration()
	a.setPort(p("1-6", 4), true)
	check(a.notePorts([]assign.Assignment{p("", 4)}, since), "1-6")
	if _, ok := a.portOf("1-6"); !ok {
		t.Error("a stale read undid the worker's attach")
	}
	if moved := a.noteAssignedSince([]assign.Assignment{p("1-4", 2), p("1-5", 3)}, since); !slices.Equal(moved, []string{"1-6"}) {
		t.Errorf("a stale full read moved %q, want 1-6 looked at again", moved)
	}
	if _, ok := a.portOf("1-6"); !ok {
		t.Error("a stale full read undid the worker's attach")
	}
	// A read that began after it is the truth.
	check(a.notePorts([]assign.Assignment{p("", 4)}, a.portGeneration()), "1-6")
}

func TestIsVMName(t *testing.T) {
	for path, want := range map[string]bool{
		"/vm/5e1a7c2e-3b9d-4f0a-9c1e-2d6f8a4b7c10/name":     true,
		"/vm/5e1a7c2e-3b9d-4f0a-9c1e-2d6f8a4b7c10/rtc/name": false,
		"/vm/5e1a7c2e-3b9d-4f0a-9c1e-2d6f8a4b7c10/uuid":     false,
		"/vm/5e1a7c2e-3b9d-4f0a-9c1e-2d6f8a4b7c10":          false,
		"/vm//name":            false,
		"/vm":                  false,
		"/local/domain/3/name": false,
	} {
		if got := isVMName(path); got != want {
			t.Errorf("isVMName(%q) = %v", path, got)
		}
	}
}

// Which events of a burst make the domains be read again: /vm itself
// stands for events the store client dropped in a storm, any of which may
// have been a rename.
func TestWatchBurstDomains(t *testing.T) {
	for _, c := range []struct {
		ev   xenstore.WatchEvent
		want bool
	}{
		{xenstore.WatchEvent{Path: "@introduceDomain", Token: "uhd-intro"}, true},
		{xenstore.WatchEvent{Path: "@releaseDomain", Token: "uhd-release"}, true},
		{xenstore.WatchEvent{Path: "/vm/5e1a7c2e-3b9d-4f0a-9c1e-2d6f8a4b7c10/name", Token: "uhd-vm"}, true},
		{xenstore.WatchEvent{Path: "/vm", Token: "uhd-vm"}, true},
		{xenstore.WatchEvent{Path: "/vm/5e1a7c2e-3b9d-4f0a-9c1e-2d6f8a4b7c10/uuid", Token: "uhd-vm"}, false},
		{xenstore.WatchEvent{Path: "/local/domain/0/backend", Token: "uhd-backend"}, false},
	} {
		var b watchBurst
		b.note(c.ev)
		if b.domains != c.want {
			t.Errorf("%+v: domains %v, want %v", c.ev, b.domains, c.want)
		}
	}
	var b watchBurst
	b.note(xenstore.WatchEvent{Path: "/local/domain/0/backend", Token: "uhd-backend"})
	if !b.whole {
		t.Error("the backend watch's own path does not read every port")
	}
}
