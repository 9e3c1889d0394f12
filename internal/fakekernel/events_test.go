package fakekernel_test

import (
	"encoding/binary"
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"testing"

	"github.com/usbhotplugd/usbhotplugd/internal/fakekernel"
	"github.com/usbhotplugd/usbhotplugd/internal/uevent"
)

// captured reads the usb events of one step of the real kernel's
// captures (the uevent package's test data).
func captured(t *testing.T, step string) []uevent.Event {
	b, err := os.ReadFile(filepath.Join("../uevent/testdata/real-kernel", step, "uevents.bin"))
	if err != nil {
		t.Fatal(err)
	}
	var out []uevent.Event
	for len(b) >= 4 {
		n := binary.LittleEndian.Uint32(b)
		e, err := uevent.Parse(b[4 : 4+n])
		b = b[4+n:]
		if err != nil {
			t.Fatal(err)
		}
		if e.Subsystem == "usb" {
			out = append(out, e)
		}
	}
	return out
}

func shape(evs []uevent.Event) []string {
	var out []string
	for _, e := range evs {
		out = append(out, fmt.Sprintf("%s %s %s", e.Action, e.DevType, e.Driver()))
	}
	return out
}

func keys(e uevent.Event) []string { return slices.Sorted(maps.Keys(e.Env)) }

// The fake kernel's events are the real kernel's: the same ones, in the
// same order, with the same keys, and for the device the captures were
// taken on, the same values.
func TestEventsAsCaptured(t *testing.T) {
	f, k := realHost(t)
	var got []uevent.Event
	k.OnEvent = func(e uevent.Event) { got = append(got, e) }
	const kb = "1-1:1.0"
	for _, c := range []struct {
		step string
		op   func() error
	}{
		{"004-op_unbind-usbhid-kbdif-nonl", func() error { return f.Unbind(kb) }},
		{"008-op_bind-usbhid-kbdif-nl", func() error { return f.Bind(kb, "usbhid") }},
		{"009-op_bind-usbhid-kbdif-already", func() error { f.Bind(kb, "usbhid"); return nil }},
	} {
		got = nil
		if err := c.op(); err != nil {
			t.Fatal(err)
		}
		want := captured(t, c.step)
		if len(got) != len(want) {
			t.Fatalf("%s: events %v, the real kernel's %v", c.step, shape(got), shape(want))
		}
		for i := range want {
			g, w := maps.Clone(got[i].Env), maps.Clone(want[i].Env)
			delete(g, "SEQNUM")
			delete(w, "SEQNUM")
			if !maps.Equal(g, w) {
				t.Errorf("%s: event %d\n got %v\nwant %v", c.step, i, g, w)
			}
		}
	}
	// An unplug, compared with the real kernel's for a mouse: the same
	// events in the same order, each with the same keys.
	got = nil
	if err := k.Unplug("1-2"); err != nil {
		t.Fatal(err)
	}
	want := captured(t, "061-hotplug_mouse-del-xhci-p6")
	if !slices.Equal(shape(got), shape(want)) {
		t.Fatalf("unplug: events %v, the real kernel's %v", shape(got), shape(want))
	}
	for i := range want {
		if !slices.Equal(keys(got[i]), keys(want[i])) {
			t.Errorf("unplug event %d: keys %v, the real kernel's %v", i, keys(got[i]), keys(want[i]))
		}
	}
}

// Authorization's events: a device deauthorized loses its interfaces
// (unbind, remove), authorized again gets them back (add, bind); a hub's
// children leave and come back with it.
func TestEventsOfAuthorizationAndHubs(t *testing.T) {
	f, k := realHost(t)
	var got []string
	k.OnEvent = func(e uevent.Event) { got = append(got, e.Action+" "+e.Name()+" "+e.Driver()) }
	step := func(what string, op func() error, want ...string) {
		t.Helper()
		got = nil
		if err := op(); err != nil {
			t.Fatal(err)
		}
		if !slices.Equal(got, want) {
			t.Errorf("%s: events %q, want %q", what, got, want)
		}
	}
	step("deauthorize the tablet", func() error { return f.SetAuthorized("1-2", false) }, "unbind 1-2:1.0 ", "remove 1-2:1.0 ")
	step("authorize it", func() error { return f.SetAuthorized("1-2", true) }, "add 1-2:1.0 ", "bind 1-2:1.0 usbhid")
	step("deauthorize its interface", func() error { return f.SetInterfaceAuthorized("1-2:1.0", false) }, "unbind 1-2:1.0 ")
	step("authorize it", func() error { return f.SetInterfaceAuthorized("1-2:1.0", true) })
	step("probe it", func() error { return f.Probe("1-2:1.0") }, "bind 1-2:1.0 usbhid")
	step("unbind the hub", func() error { return f.Unbind("1-3:1.0") },
		"unbind 1-3.1:1.0 ", "remove 1-3.1:1.0 ", "unbind 1-3.1 ", "remove 1-3.1 ",
		"unbind 1-3.2:1.0 ", "remove 1-3.2:1.0 ", "unbind 1-3.2 ", "remove 1-3.2 ",
		"unbind 1-3.3:1.0 ", "remove 1-3.3:1.0 ", "unbind 1-3.3 ", "remove 1-3.3 ", "unbind 1-3:1.0 ")
	step("bind it", func() error { return f.Bind("1-3:1.0", "hub") }, "bind 1-3:1.0 hub",
		"add 1-3.1 ", "add 1-3.1:1.0 ", "bind 1-3.1:1.0 usbhid", "bind 1-3.1 usb",
		"add 1-3.2 ", "add 1-3.2:1.0 ", "bind 1-3.2:1.0 usbhid", "bind 1-3.2 usb",
		"add 1-3.3 ", "add 1-3.3:1.0 ", "bind 1-3.3:1.0 usb-storage", "bind 1-3.3 usb")
}

// A plug's events, compared with the real kernel's for a mouse: the same
// events in the same order (less the remote-wakeup change some devices
// send), each with the same keys.
func TestPlugEvents(t *testing.T) {
	f, k := realHost(t)
	var got []uevent.Event
	k.OnEvent = func(e uevent.Event) { got = append(got, e) }
	err := k.Plug(fakekernel.Dev{BusID: "1-6", DevNum: 7, Vendor: "0627", Product: "0001", Class: "00",
		Interfaces: []fakekernel.Intf{{Class: "03", SubClass: "01", Protocol: "02", Driver: "usbhid"}}})
	if err != nil {
		t.Fatal(err)
	}
	var want []uevent.Event
	for _, e := range captured(t, "060-hotplug_mouse-add-xhci-p6") {
		if e.Action != "change" {
			want = append(want, e)
		}
	}
	if !slices.Equal(shape(got), shape(want)) {
		t.Fatalf("plug: events %v, the real kernel's %v", shape(got), shape(want))
	}
	for i := range want {
		if !slices.Equal(keys(got[i]), keys(want[i])) {
			t.Errorf("plug event %d: keys %v, the real kernel's %v", i, keys(got[i]), keys(want[i]))
		}
	}
	if !f.Present("1-6") {
		t.Fatal("not plugged")
	}
}

// When a remove is sent, the device or interface is gone from
// bus/usb/devices already, as on a real kernel (bus_remove_device before
// device_del's KOBJ_REMOVE), with its driver: a reader the event wakes
// finds it gone. So for a hub's children, whose events come first.
func TestRemoveComesAfterTheBusEntryGoes(t *testing.T) {
	f, k := realHost(t)
	var bad []string
	n := 0
	k.OnEvent = func(e uevent.Event) {
		if e.Action != "remove" {
			return
		}
		n++
		if _, err := os.Lstat(filepath.Join(f.Root(), "bus/usb/devices", e.Name())); err == nil {
			bad = append(bad, e.Name())
		}
		if _, err := os.Lstat(filepath.Join(f.Root(), e.DevPath, "driver")); err == nil {
			bad = append(bad, e.Name()+" (bound)")
		}
	}
	if err := k.Unplug("1-3"); err != nil {
		t.Fatal(err)
	}
	if n != 8 || len(bad) > 0 {
		t.Errorf("%d removes; still on the bus at their remove: %q", n, bad)
	}
}

// An unplug's events come in the kernel's order when numbers reach two
// digits: usb_disconnect walks a hub's ports 1, 2, ... 10 and
// usb_disable_device a configuration's interfaces by number, so 1-3.2
// goes before 1-3.10 and 1-3.2:1.2 before 1-3.2:1.10, not in the order of
// their names.
func TestUnplugEventsInPortOrder(t *testing.T) {
	_, k := realHost(t)
	hub := fakekernel.Dev{BusID: "1-6", DevNum: 20, Vendor: "0409", Product: "005a", Class: "09", Interfaces: fakekernel.Hub}
	var many []fakekernel.Intf
	for range 11 {
		many = append(many, fakekernel.Intf{Class: "ff", SubClass: "00", Protocol: "00"})
	}
	var got []string
	k.OnEvent = func(e uevent.Event) {
		if e.Action == "add" || e.Action == "remove" {
			got = append(got, e.Action+" "+e.Name())
		}
	}
	for _, d := range []fakekernel.Dev{hub,
		{BusID: "1-6.10", DevNum: 21, Vendor: "0627", Product: "0001", Class: "00", Interfaces: []fakekernel.Intf{{Class: "03", SubClass: "01", Protocol: "02", Driver: "usbhid"}}},
		{BusID: "1-6.2", DevNum: 22, Vendor: "1234", Product: "0002", Class: "00", Interfaces: many}} {
		if err := k.Plug(d); err != nil {
			t.Fatal(err)
		}
	}
	want := []string{"add 1-6", "add 1-6:1.0", "add 1-6.10", "add 1-6.10:1.0", "add 1-6.2"}
	for i := range 11 {
		want = append(want, fmt.Sprintf("add 1-6.2:1.%d", i))
	}
	if !slices.Equal(got, want) {
		t.Errorf("plug: adds %q,\nthe kernel's %q", got, want)
	}
	got = nil
	if err := k.Unplug("1-6"); err != nil {
		t.Fatal(err)
	}
	want = nil
	for i := range 11 {
		want = append(want, fmt.Sprintf("remove 1-6.2:1.%d", i))
	}
	want = append(want, "remove 1-6.2", "remove 1-6.10:1.0", "remove 1-6.10", "remove 1-6:1.0", "remove 1-6")
	if !slices.Equal(got, want) {
		t.Errorf("unplug: removes %q,\nthe kernel's %q", got, want)
	}
}

// A write to a usb device's or interface's uevent file sends one
// synthetic event, as the real kernel's did for each such row of its
// errno table: the action written, the keys of the device as it is now
// (its driver too, whatever the action: shared/real-kernel/key-matrix.md),
// SYNTH_UUID ("0" when none is given) and each argument as SYNTH_ARG_;
// and it changes nothing. A port's uevent sends none.
func TestSyntheticEvents(t *testing.T) {
	f, k := realHost(t)
	var got []uevent.Event
	k.OnEvent = func(e uevent.Event) { got = append(got, e) }
	const uuid = "0b7fd2b9-c76c-4b2a-8e3a-5e9b6f3c2d10"
	dev := []string{"ACTION", "DEVPATH", "SUBSYSTEM", "SYNTH_UUID", "MAJOR", "MINOR", "DEVNAME", "DEVTYPE", "DRIVER", "PRODUCT", "TYPE", "BUSNUM", "DEVNUM", "SEQNUM"}
	intf := []string{"ACTION", "DEVPATH", "SUBSYSTEM", "SYNTH_UUID", "DEVTYPE", "DRIVER", "PRODUCT", "TYPE", "INTERFACE", "MODALIAS", "SEQNUM"}
	for _, c := range []struct {
		name, data, action, uuid string
		keys                     []string
	}{
		{"1-1", "add\n", "add", "0", dev},
		{"1-1", "change " + uuid + " FOO=bar BAZ=qux", "change", uuid, append(slices.Clone(dev), "SYNTH_ARG_FOO", "SYNTH_ARG_BAZ")},
		{"1-2", "remove", "remove", "0", dev},
		{"1-1", "online", "online", "0", dev},
		{"1-1:1.0", "add", "add", "0", intf},
		{"1-1:1.0", "unbind", "unbind", "0", slices.DeleteFunc(slices.Clone(intf), func(k string) bool { return k == "MODALIAS" })},
	} {
		got = nil
		if err := k.WriteAttr(filepath.Join(f.Root(), "bus/usb/devices", c.name, "uevent"), []byte(c.data)); err != nil {
			t.Fatalf("%s %q: %v", c.name, c.data, err)
		}
		if len(got) != 1 {
			t.Errorf("%s %q: %d events, the real kernel's 1", c.name, c.data, len(got))
			continue
		}
		e := got[0]
		if e.Action != c.action || e.Name() != c.name || !e.Synthetic() || e.Env["SYNTH_UUID"] != c.uuid || c.uuid != "0" && e.Env["SYNTH_ARG_FOO"] != "bar" {
			t.Errorf("%s %q: %s %s SYNTH_UUID=%q", c.name, c.data, e.Action, e.Name(), e.Env["SYNTH_UUID"])
		}
		if want := slices.Sorted(slices.Values(c.keys)); !slices.Equal(keys(e), want) {
			t.Errorf("%s %q: keys %v, the real kernel's %v", c.name, c.data, keys(e), want)
		}
		if _, err := uevent.Parse(uevent.Marshal(e)); err != nil {
			t.Errorf("%s %q: %v", c.name, c.data, err)
		}
	}
	if drv, _ := f.Driver("1-1:1.0"); drv != "usbhid" || !f.Present("1-2") {
		t.Errorf("a synthetic event changed the tree: 1-1:1.0 has %q, 1-2 present %v", drv, f.Present("1-2"))
	}
	got = nil
	p := filepath.Join(f.Root(), "bus/usb/devices/1-1/port/uevent")
	os.MkdirAll(filepath.Dir(p), 0o755)
	if err := k.WriteAttr(p, []byte("change")); err != nil || len(got) != 0 {
		t.Errorf("a port's uevent: %v, %d events, the real kernel's none", err, len(got))
	}
}
