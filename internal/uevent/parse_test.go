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

func TestRefused(t *testing.T) {
	good := "add@/devices/x\x00ACTION=add\x00DEVPATH=/devices/x\x00SUBSYSTEM=usb\x00SEQNUM=1\x00"
	for name, d := range map[string]string{
		"4 bytes":         "add@",
		"empty":           "",
		"unterminated":    strings.TrimSuffix(good, "\x00"),
		"oversized":       good + strings.Repeat("A=b\x00", 3000),
		"binary":          "add@/devices/x\x00ACTION=add\x00DEVPATH=/devices/x\x00SUBSYSTEM=\xff\x01\x00SEQNUM=1\x00",
		"libudev":         "libudev\x00" + strings.Repeat("x", 60) + "\x00",
		"bad action":      strings.ReplaceAll(good, "add", "explode"),
		"header mismatch": strings.Replace(good, "DEVPATH=/devices/x", "DEVPATH=/devices/y", 1),
		"no seqnum":       strings.Replace(good, "SEQNUM=1\x00", "", 1),
		"no equals":       strings.Replace(good, "SUBSYSTEM=usb", "SUBSYSTEMusb", 1),
		"equals in value": strings.Replace(good, "SUBSYSTEM=usb", "SUBSYSTEM=u=b", 1),
		"duplicate key":   good + "SEQNUM=2\x00",
		"empty field":     strings.Replace(good, "SEQNUM=1\x00", "\x00SEQNUM=1\x00", 1),
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
		e, err := uevent.Parse(b)
		if err != nil {
			return
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
