package main

import (
	"context"
	"encoding/json"
	"strings"
	"testing"

	"github.com/usbhotplugd/usbhotplugd/internal/fakekernel"
	"github.com/usbhotplugd/usbhotplugd/internal/sim"
	"github.com/usbhotplugd/usbhotplugd/internal/xenstore/xenstoretest"
)

// The xl-compatible commands: JSON listing, messages and exit codes.
func TestXLCommands(t *testing.T) {
	store := xenstoretest.Embedded(t)
	xs := store.Dial(t)
	seedXL(t, xs)
	root, k := xlHost(t)
	sysfsWriter = k
	defer func() { sysfsWriter = nil }()
	b := &sim.Backends{XS: store.Dial(t)}
	run, err := b.Start(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	defer run.Stop()
	c := func(args ...string) (int, string, string) {
		return runCmd(t, append([]string{args[0], "--xenstore", store.SocketPath(), "--sysfs", root}, args[1:]...)...)
	}
	if code, _, errs := c("usbdev-attach", "kiosk", "busid=1-1.6"); code != 0 {
		t.Fatalf("attach by busid: %d %s", code, errs)
	}
	code, out, _ := c("usb-list", "--json", "1")
	var l struct {
		Domid       int
		Domain      string
		Controllers []struct {
			Controller int
			Type       string
			Ports      []struct {
				Port    int
				Busid   string
				Bus     int
				Addr    int
				Present bool
			}
		}
	}
	if code != 0 || json.Unmarshal([]byte(out), &l) != nil || l.Domain != "kiosk" || l.Domid != 1 || len(l.Controllers) != 1 || l.Controllers[0].Controller != 0 ||
		len(l.Controllers[0].Ports) != 8 || l.Controllers[0].Ports[0].Busid != "1-1.6" || l.Controllers[0].Ports[0].Bus != 1 || l.Controllers[0].Ports[0].Addr != 6 {
		t.Fatalf("usb-list --json: %d\n%s", code, out)
	}
	for _, tc := range []struct {
		args []string
		code int
		msg  string
	}{
		{[]string{"usbdev-attach", "kiosk", "hostbus=1", "hostaddr=6"}, exitFailure, "1-1.6 is at domain 1 controller 0 port 1: USB device already attached to a domain"},
		{[]string{"usbdev-attach", "kiosk", "hostbus=1", "hostaddr=2"}, exitFailure, "1-1 is a hub: USB device is not assignable"},
		{[]string{"usbdev-attach", "nobody", "busid=1-1.6"}, exitFailure, `domain "nobody": no such domain`},
		{[]string{"usbdev-attach", "kiosk", "hostbus=1,hostaddr=6"}, exitUsage, "one KEY=VALUE per word"},
		{[]string{"usbdev-attach", "kiosk"}, exitUsage, "usage: usbhotplugd usbdev-attach"},
		{[]string{"usbdev-detach", "kiosk", "0", "2"}, exitFailure, "controller 0 port 2 of domain 1: nothing attached at that port"},
		{[]string{"usbdev-detach", "kiosk", "x", "1"}, exitUsage, "CONTROLLER and PORT are numbers"},
		{[]string{"usbctrl-detach", "kiosk", "7"}, exitFailure, "controller 7 of domain 1: no such USB controller"},
		{[]string{"usbctrl-attach", "kiosk", "version=3"}, exitUsage, `usbctrl spec: "version=3": version 3: a pv controller is version 1 or 2`},
		{[]string{"usbctrl-attach", "kiosk", "ports=40"}, exitUsage, "ports 40: at most 31"},
		{[]string{"repair"}, 0, ""},
		{[]string{"usbdev-detach", "kiosk", "0", "1"}, 0, ""},
		{[]string{"usbctrl-detach", "kiosk", "0"}, 0, ""},
	} {
		code, _, errs := c(tc.args...)
		if code != tc.code || !strings.Contains(errs, tc.msg) {
			t.Errorf("%v: exit %d, stderr %q; want %d and %q", tc.args, code, errs, tc.code, tc.msg)
		}
	}
	if _, _, errs := runCmd(t, "usb-list", "--xenstore", "/nonexistent/socket", "kiosk"); !strings.Contains(errs, "is xenstored running?") {
		t.Errorf("no store: %q", errs)
	}

	// A disk dom0 uses is refused unless --force says otherwise.
	bld := &fakekernel.Builder{Root: root}
	bld.Add(fakekernel.Dev{BusID: "1-2", DevNum: 9, Vendor: "0781", Product: "5567", Class: "00", Interfaces: []fakekernel.Intf{{Class: "08", SubClass: "06", Protocol: "50", Driver: "usb-storage"}}})
	bld.AddDisk("1-2:1.0", fakekernel.Disk{Name: "sdz", Dev: "65:144", Holders: []string{"dm-7"}})
	if err := bld.Err(); err != nil {
		t.Fatal(err)
	}
	if code, _, errs := c("usbdev-attach", "kiosk", "busid=1-2"); code != exitFailure || !strings.Contains(errs, "1-2 is in use by dom0: /dev/sdz is held by dm-7") || !strings.Contains(errs, "--force") {
		t.Errorf("a disk under device-mapper: exit %d %s", code, errs)
	}
	if code, _, errs := c("usbdev-attach", "--force", "kiosk", "busid=1-2"); code != 0 {
		t.Errorf("--force: exit %d %s", code, errs)
	}
}

// dom0 is never the guest of an attach: by its name or its domid it is
// refused before anything is dialled (no store here), and by another name
// once the store says it is domid 0; nothing is written for it.
func TestAttachRefusesDom0(t *testing.T) {
	for _, args := range [][]string{
		{"usbctrl-attach", "Domain-0"},
		{"usbctrl-attach", "0", "version=2", "ports=8"},
		{"usbdev-attach", "Domain-0", "busid=1-1.6"},
		{"usbdev-attach", "0", "hostbus=1", "hostaddr=6"},
	} {
		code, _, errs := runCmd(t, append(args, "--xenstore", "/nonexistent/socket")...)
		if code != exitUsage || !strings.Contains(errs, args[1]+" is dom0 itself, which has the host's devices already: give a guest's name or domid") {
			t.Errorf("%v: exit %d, %q", args, code, errs)
		}
	}
	store := xenstoretest.Embedded(t)
	xs := store.Dial(t)
	seedXL(t, xs)
	if err := xs.Write(context.Background(), "/local/domain/0/name", []byte("host")); err != nil {
		t.Fatal(err)
	}
	root, k := xlHost(t)
	sysfsWriter = k
	defer func() { sysfsWriter = nil }()
	for _, args := range [][]string{{"usbctrl-attach", "host"}, {"usbdev-attach", "host", "busid=1-1.6"}} {
		code, _, errs := runCmd(t, append(args, "--xenstore", store.SocketPath(), "--sysfs", root)...)
		if code != exitUsage || !strings.Contains(errs, "host (domid 0) is dom0 itself") {
			t.Errorf("%v: exit %d, %q", args, code, errs)
		}
	}
	if d := dump(t, xs); strings.Contains(d, "/libxl/0/device") || strings.Contains(d, "vusb/0/0") {
		t.Errorf("written for dom0:\n%s", d)
	}
}

// A controller spec usbctrl-attach cannot take is a usage error (exit 2),
// told before anything is dialled (no store here), quoting the words as
// typed; one that only the guest's type refuses (version 3 for a pv
// guest, an HVM guest's emulated controller, which auto chooses) is too,
// once the store is read.
func TestUsbctrlAttachSpecErrors(t *testing.T) {
	for _, tc := range []struct {
		words []string
		msg   string
	}{
		{[]string{"type=PV", "version=3"}, `usbctrl spec: "type=PV version=3": version 3: a pv controller is version 1 or 2`},
		{[]string{"ports=99"}, `usbctrl spec: "ports=99": ports 99: at most 31`},
		{[]string{"type=qusb", "ports=40"}, `usbctrl spec: "type=qusb ports=40": ports 40: a qusb controller has 1 to 31 ports`},
		{[]string{"type=devicemodel", "version=1", "ports=4"}, `usbctrl spec: "type=devicemodel version=1 ports=4": ports 4: an emulated USB 1 controller`},
		{[]string{"version=9"}, `usbctrl spec: "version=9": version 9: USB versions are 1, 2 and 3`},
		{[]string{"speed=high"}, `usbctrl spec: "speed=high": unknown key`},
	} {
		args := append([]string{"usbctrl-attach", "--xenstore", "/nonexistent/socket", "kiosk"}, tc.words...)
		code, _, errs := runCmd(t, args...)
		if code != exitUsage || !strings.Contains(errs, tc.msg) || strings.Contains(errs, "xenstored") {
			t.Errorf("%v: exit %d, %q; want %d and %q", tc.words, code, errs, exitUsage, tc.msg)
		}
	}
	// The words the help lists are the ones taken.
	_, out, _ := runCmd(t, "usbctrl-attach", "--help")
	if !strings.Contains(out, "usbctrl-attach DOMAIN [type=auto|pv|qusb|devicemodel] [version=1|2|3] [ports=N]") {
		t.Errorf("help:\n%s", out)
	}

	store := xenstoretest.Embedded(t)
	xs := store.Dial(t)
	seedXL(t, xs)
	if err := sim.SeedDomain(context.Background(), xs, sim.Domain{ID: 2, Name: "desktop", UUID: "00000000-0000-0000-0000-000000000002", Type: "hvm"}); err != nil {
		t.Fatal(err)
	}
	root, k := xlHost(t)
	sysfsWriter = k
	defer func() { sysfsWriter = nil }()
	code, _, errs := runCmd(t, "usbctrl-attach", "--xenstore", store.SocketPath(), "--sysfs", root, "desktop", "version=1", "ports=4")
	if code != exitUsage || !strings.Contains(errs, `usbctrl spec: "version=1 ports=4": ports 4: an emulated USB 1 controller (piix3-usb-uhci) has 2 ports`) {
		t.Errorf("an HVM guest's controller: exit %d, %q", code, errs)
	}
	if d := dump(t, xs); strings.Contains(d, "/libxl/2/device/vusb") {
		t.Errorf("a controller was written:\n%s", d)
	}
	// Taken, as by xl (auto is devicemodel for an HVM guest): the attach
	// goes on to the guest's QEMU, which this test has not.
	for _, words := range [][]string{{"type=devicemodel", "version=3"}, {"version=3"}} {
		code, _, errs = runCmd(t, append([]string{"usbctrl-attach", "--xenstore", store.SocketPath(), "--sysfs", root, "desktop"}, words...)...)
		if code != exitFailure || strings.Contains(errs, "spec") || !strings.Contains(errs, "QEMU not reached") {
			t.Errorf("%v: exit %d, %q", words, code, errs)
		}
	}
}
