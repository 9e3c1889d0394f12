package uevent_test

import (
	"errors"
	"os"
	"strings"
	"testing"

	"github.com/usbhotplugd/usbhotplugd/internal/uevent"
)

func records(t testing.TB, name string) [][]byte {
	t.Helper()
	b, err := os.ReadFile("testdata/" + name)
	if err != nil {
		t.Fatal(err)
	}
	r, err := uevent.ReadRecords(b)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

// The datagrams a real kernel sent when a mouse was plugged parse, in order,
// to the sequence the kernel documents: add device, interface events, bind.
func TestParseRealPlug(t *testing.T) {
	var got []string
	for _, d := range records(t, "mouse-add.bin") {
		e, err := uevent.Parse(d)
		if err != nil {
			t.Fatalf("real datagram refused: %v\n%q", err, d)
		}
		if e.Subsystem == "usb" {
			got = append(got, e.Action+" "+e.DevType+" "+e.Name()+" "+e.Driver())
		}
		if e.IsUSBDevice() && e.Action == "add" {
			v, p, _, err := e.Product()
			if err != nil || v != 0x627 || p != 1 {
				t.Fatalf("PRODUCT %x:%x %v", v, p, err)
			}
			if bn, ok := e.BusNum(); !ok || bn != 1 {
				t.Fatalf("BUSNUM %d", bn)
			}
		}
		if e.IsUSBInterface() && e.Action == "add" {
			if c, _, _, err := e.Interface(); err != nil || c != 3 {
				t.Fatalf("INTERFACE class %d %v", c, err)
			}
		}
	}
	want := "add usb_device 1-6 |change usb_device 1-6 usb|add usb_interface 1-6:1.0 |bind usb_interface 1-6:1.0 usbhid|bind usb_device 1-6 usb"
	if strings.Join(got, "|") != want {
		t.Fatalf("usb events:\n%s\nwant\n%s", strings.Join(got, "|"), want)
	}
}

func TestMarshalRoundTrip(t *testing.T) {
	for _, f := range []string{"mouse-add.bin", "mouse-del.bin", "audio-add.bin"} {
		for _, d := range records(t, f) {
			e, err := uevent.Parse(d)
			if err != nil {
				t.Fatal(err)
			}
			e2, err := uevent.Parse(uevent.Marshal(e))
			if err != nil {
				t.Fatalf("%s: marshalled event refused: %v", f, err)
			}
			if e2.Action != e.Action || e2.DevPath != e.DevPath || e2.Seqnum != e.Seqnum || len(e2.Env) != len(e.Env) {
				t.Fatalf("round trip changed %+v into %+v", e, e2)
			}
		}
	}
}

// Values hold what the kernel was given: a GPT partition's name (Latin-1
// bytes, '=' too), a synthetic event's arguments. They parse exact, with the
// '=' and the bytes in place, also under a devpath holding an '@'.
func TestValuesAsTheKernelGivesThem(t *testing.T) {
	for _, path := range []string{"/devices/pci0000:00/0000:00:14.0/usb1/1-2/1-2:1.0/host3/target3:0:0/3:0:0:0/block/sdb/sdb1", "/devices/platform/soc@0/38100000.usb/xhci-hcd.0.auto/usb1/1-1/1-1:1.0/host0/target0:0:0/0:0:0:0/block/sda/sda1"} {
		d := "add@" + path + "\x00ACTION=add\x00DEVPATH=" + path + "\x00SUBSYSTEM=block\x00DEVNAME=sdb1\x00DEVTYPE=partition\x00PARTN=1\x00PARTNAME=Donn\xe9es=a==b=\x00SYNTH_ARG_x=y=z\x00SEQNUM=7\x00"
		e, err := uevent.Parse([]byte(d))
		if err != nil {
			t.Fatalf("refused: %v", err)
		}
		if e.DevPath != path || e.Env["PARTNAME"] != "Donn\xe9es=a==b=" || e.Env["SYNTH_ARG_x"] != "y=z" || e.Env["DEVTYPE"] != "partition" || e.Seqnum != 7 || len(e.Env) != 9 {
			t.Fatalf("parsed as %+v", e)
		}
		e2, err := uevent.Parse(uevent.Marshal(e))
		if err != nil || e2.Env["PARTNAME"] != e.Env["PARTNAME"] {
			t.Fatalf("round trip: %+v, %v", e2, err)
		}
	}
}

func TestRefused(t *testing.T) {
	good := "add@/devices/x\x00ACTION=add\x00DEVPATH=/devices/x\x00SUBSYSTEM=usb\x00SEQNUM=1\x00"
	for name, d := range map[string]string{
		"4 bytes":          "add@",
		"empty":            "",
		"unterminated":     strings.TrimSuffix(good, "\x00"),
		"oversized":        good + strings.Repeat("A=b\x00", 3000),
		"binary":           "add@/devices/x\x00ACTION=add\x00DEVPATH=/devices/x\x00SUBSYSTEM=\xff\x01\x00SEQNUM=1\x00",
		"libudev":          "libudev\x00" + strings.Repeat("x", 60) + "\x00",
		"bad action":       strings.ReplaceAll(good, "add", "explode"),
		"header mismatch":  strings.Replace(good, "DEVPATH=/devices/x", "DEVPATH=/devices/y", 1),
		"no seqnum":        strings.Replace(good, "SEQNUM=1\x00", "", 1),
		"no equals":        strings.Replace(good, "SUBSYSTEM=usb", "SUBSYSTEMusb", 1),
		"byte in key":      strings.Replace(good, "SUBSYSTEM=usb", "SUBSYST\xe9M=usb", 1),
		"control in value": strings.Replace(good, "SUBSYSTEM=usb", "SUBSYSTEM=u\x1bb", 1),
		"DEL in value":     strings.Replace(good, "SUBSYSTEM=usb", "SUBSYSTEM=u\x7fb", 1),
		"key is '='":       strings.Replace(good, "SUBSYSTEM=usb", "=usb", 1),
		"duplicate key":    good + "SEQNUM=2\x00",
		"empty field":      strings.Replace(good, "SEQNUM=1\x00", "\x00SEQNUM=1\x00", 1),
	} {
		if _, err := uevent.Parse([]byte(d)); !errors.Is(err, uevent.ErrMalformed) {
			t.Errorf("%s: %v, want ErrMalformed", name, err)
		}
	}
	if _, err := uevent.Parse([]byte(good)); err != nil {
		t.Fatal(err)
	}
}

func FuzzParse(f *testing.F) {
	for _, name := range []string{"mouse-add.bin", "mouse-del.bin", "audio-add.bin"} {
		for _, d := range records(f, name) {
			f.Add(d)
		}
	}
	f.Add([]byte("add@"))
	f.Fuzz(func(t *testing.T, b []byte) {
		sub := uevent.SubsystemOf(b)
		e, err := uevent.Parse(b)
		if err != nil {
			return
		}
		// An event that parses names its subsystem once: SubsystemOf
		// tells it, or refuses a word it does not take.
		if sub != "" && sub != e.Subsystem {
			t.Fatalf("SubsystemOf %q, the event's %q", sub, e.Subsystem)
		}
		e2, err := uevent.Parse(uevent.Marshal(e))
		if err != nil || e2.DevPath != e.DevPath || e2.Action != e.Action {
			t.Fatalf("accepted event does not round-trip: %+v, %v", e, err)
		}
	})
}

func BenchmarkParse(b *testing.B) {
	ds := records(b, "mouse-add.bin")
	b.ReportAllocs()
	n := 0
	for b.Loop() {
		if _, err := uevent.Parse(ds[n%len(ds)]); err != nil {
			b.Fatal(err)
		}
		n++
	}
}

// Legal usb datagrams the captures do not have parse, and name their
// device: a hub's over-current change (hub.c's port_over_current_notify,
// sent on the hub's interface with the port's path), a device event with
// DEVNUM=000 or without BUSNUM, controllers on the platform bus (dwc2 on
// an ARM SoC, a DWC3's xHCI under a devicetree node with a unit address,
// "soc@0", so a second '@' in the header) and behind PCIe bridges (a card,
// a Thunderbolt dock's xHCI).
func TestParseUnusualUSBEvents(t *testing.T) {
	for _, c := range []struct {
		name, devpath, devtype, extra, wantName string
	}{
		{"over-current", "/devices/pci0000:00/0000:00:14.0/usb1/1-0:1.0", "usb_interface",
			"OVER_CURRENT_PORT=/devices/pci0000:00/0000:00:14.0/usb1/1-0:1.0/usb1-port2\x00OVER_CURRENT_COUNT=1\x00DRIVER=hub\x00PRODUCT=1d6b/2/601\x00TYPE=9/0/1\x00INTERFACE=9/0/0\x00MODALIAS=usb:v1D6Bp0002d0601dc09dsc00dp01ic09isc00ip00in00\x00", "1-0:1.0"},
		{"devnum 000", "/devices/pci0000:00/0000:00:14.0/usb1/1-4", "usb_device", "PRODUCT=46d/c31c/6400\x00TYPE=0/0/0\x00BUSNUM=001\x00DEVNUM=000\x00", "1-4"},
		{"no busnum", "/devices/pci0000:00/0000:00:14.0/usb1/1-4", "usb_device", "PRODUCT=46d/c31c/6400\x00TYPE=0/0/0\x00DEVNUM=005\x00", "1-4"},
		{"dwc2", "/devices/platform/soc/3f980000.usb/usb1/1-1/1-1.1/1-1.1:1.0", "usb_interface", "PRODUCT=424/ec00/200\x00TYPE=255/0/1\x00INTERFACE=255/0/255\x00", "1-1.1:1.0"},
		{"dwc3", "/devices/platform/soc@0/32f10108.usb/38200000.dwc3/xhci-hcd.1.auto/usb2/2-1", "usb_device", "PRODUCT=781/5581/100\x00TYPE=0/0/0\x00BUSNUM=002\x00DEVNUM=002\x00", "2-1"},
		{"pcie bridge", "/devices/pci0000:00/0000:00:1c.0/0000:02:00.0/usb3/3-1.10", "usb_device", "PRODUCT=46d/c31c/6400\x00TYPE=0/0/0\x00BUSNUM=003\x00DEVNUM=017\x00", "3-1.10"},
		{"thunderbolt dock", "/devices/pci0000:00/0000:00:07.0/0000:03:00.0/0000:04:01.0/0000:05:00.0/usb5/5-2.3.4.1.2:1.0", "usb_interface", "PRODUCT=46d/c31c/6400\x00TYPE=0/0/0\x00INTERFACE=3/1/1\x00", "5-2.3.4.1.2:1.0"},
	} {
		d := "change@" + c.devpath + "\x00ACTION=change\x00DEVPATH=" + c.devpath + "\x00SUBSYSTEM=usb\x00DEVTYPE=" + c.devtype + "\x00" + c.extra + "SEQNUM=4242\x00"
		e, err := uevent.Parse([]byte(d))
		if err != nil {
			t.Errorf("%s: refused: %v", c.name, err)
			continue
		}
		if e2, err := uevent.Parse(uevent.Marshal(e)); err != nil || e2.DevPath != c.devpath {
			t.Errorf("%s: the event as a trace writes it: %+v %v", c.name, e2, err)
		}
		if e.Name() != c.wantName || e.IsUSBDevice() != (c.devtype == "usb_device") || e.IsUSBInterface() != (c.devtype == "usb_interface") {
			t.Errorf("%s: %s %q", c.name, e.DevType, e.Name())
		}
		switch c.name {
		case "devnum 000":
			if n, ok := e.DevNum(); !ok || n != 0 {
				t.Errorf("DEVNUM=000: %d %v", n, ok)
			}
		case "no busnum":
			if _, ok := e.BusNum(); ok {
				t.Error("BUSNUM absent, but read")
			}
		}
	}
}

// The subsystem of a datagram that fails validation, when it can be told.
func TestSubsystemOf(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{"add@/devices/x/input/input9\x00ACTION=add\x00SUBSYSTEM=input\x00NAME=\"a\nb\"\x00", "input"},
		{"add@/devices/x\x00SUBSYSTEM=usb\x00ACTION=add\x00", "usb"},
		{"add@/devices/x\x00SUBSYSTEM=input\x00SUBSYSTEM=hid\x00", ""},
		{"add@/devices/x\x00SUBSYSTEM=in\x01put\x00", ""},
		{"add@/devices/x\x00SUBSYSTEM=\x00", ""},
		{"add@/devices/x\x00ACTION=add\x00", ""},
		{"add@/devices/x\x00XSUBSYSTEM=input\x00", ""},
		{"", ""},
	} {
		if got := uevent.SubsystemOf([]byte(tc.in)); got != tc.want {
			t.Errorf("SubsystemOf(%q) = %q, want %q", tc.in, got, tc.want)
		}
	}
}
