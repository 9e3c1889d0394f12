package uevent_test

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/usbhotplugd/usbhotplugd/internal/uevent"
)

func parsed(t testing.TB, recs [][]byte) []uevent.Event {
	t.Helper()
	var out []uevent.Event
	for _, d := range recs {
		e, err := uevent.Parse(d)
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, e)
	}
	return out
}

func importFile(t testing.TB, path string) []uevent.Record {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	recs, err := uevent.ImportUdevadm(f, path)
	if err != nil {
		t.Fatal(err)
	}
	return recs
}

func sameEvents(t *testing.T, what string, got, want []uevent.Event) {
	t.Helper()
	if len(got) != len(want) {
		t.Fatalf("%s: %d events, want %d", what, len(got), len(want))
	}
	for i := range got {
		if !reflect.DeepEqual(got[i], want[i]) {
			t.Fatalf("%s: event %d:\n got %+v\nwant %+v", what, i, got[i], want[i])
		}
	}
}

// The udevadm text of a real plug imports to exactly the datagrams the
// kernel sent, for the single capture and for every step of the real
// kernel captures (testdata/README.md).
func TestUdevadmImportMatchesDatagrams(t *testing.T) {
	sameEvents(t, "mouse-add", uevent.Events(importFile(t, "testdata/mouse-add.txt")), parsed(t, records(t, "mouse-add.bin")))

	steps, _ := filepath.Glob("testdata/real-kernel/*")
	if len(steps) == 0 {
		t.Fatal("testdata/real-kernel is empty")
	}
	n := 0
	for _, dir := range steps {
		b, err := os.ReadFile(filepath.Join(dir, "uevents.bin"))
		if err != nil {
			t.Fatal(err)
		}
		recs, err := uevent.ReadRecords(b)
		if err != nil {
			t.Fatal(err)
		}
		want := parsed(t, recs)
		sameEvents(t, filepath.Base(dir), uevent.Events(importFile(t, filepath.Join(dir, "uevents.txt"))), want)
		n += len(want)
	}
	t.Logf("%d steps, %d events imported from udevadm text identical to the datagrams", len(steps), n)
}

// With --udev as well, each event is taken once, with the kernel's keys,
// and udev's ID_SERIAL_SHORT becomes the device's serial. A capture with
// only UDEV blocks gives the usb events the kernel sent.
func TestUdevadmImportUdevBlocks(t *testing.T) {
	want := parsed(t, records(t, "mouse-add.bin"))
	both := importFile(t, "testdata/mouse-add-udev.txt")
	sameEvents(t, "kernel+udev", uevent.Events(both), want)
	if both[0].Sysfs["serial"] != "89126-0000:00:01.0-6" {
		t.Fatalf("serial from udev: %v", both[0].Sysfs)
	}

	b, err := os.ReadFile("testdata/mouse-add-udev.txt")
	if err != nil {
		t.Fatal(err)
	}
	var udevOnly []string
	for _, blk := range strings.Split(string(b), "\n\n") {
		if strings.HasPrefix(blk, "UDEV  [") {
			udevOnly = append(udevOnly, blk)
		}
	}
	recs, err := uevent.ImportUdevadm(strings.NewReader(strings.Join(udevOnly, "\n\n")), "udev-only")
	if err != nil {
		t.Fatal(err)
	}
	var usb []uevent.Event
	for _, e := range want {
		if e.Subsystem == "usb" {
			usb = append(usb, e)
		}
	}
	sameEvents(t, "udev only", uevent.Events(recs), usb)
}

// record → JSON lines → read gives the same events, overruns and sysfs
// attributes.
func TestTraceRoundTrip(t *testing.T) {
	evs := parsed(t, append(records(t, "mouse-add.bin"), records(t, "mouse-del.bin")...))
	var in []uevent.Record
	at := time.Date(2026, 11, 24, 12, 0, 0, 0, time.UTC)
	for i := range evs {
		r := uevent.Record{Time: at.Add(time.Duration(i) * time.Millisecond), Event: &evs[i]}
		if evs[i].IsUSBDevice() && evs[i].Action == "add" {
			r.Sysfs = map[string]string{"idVendor": "0627", "serial": "89126-0000:00:01.0-6", "bNumInterfaces": " 1", "version": " 2.00"}
		}
		in = append(in, r)
		if i == 3 {
			in = append(in, uevent.Record{Time: at, Overrun: true})
		}
	}
	var buf bytes.Buffer
	w := uevent.NewTraceWriter(&buf)
	for _, r := range in {
		if err := w.Write(r); err != nil {
			t.Fatal(err)
		}
	}
	if err := w.Flush(); err != nil {
		t.Fatal(err)
	}
	out, err := uevent.ReadTrace(&buf, "round-trip")
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(out, in) {
		t.Fatalf("round trip differs:\n got %+v\nwant %+v", out, in)
	}
	sameEvents(t, "events", uevent.Events(out), evs)
}

// Bad traces and bad udevadm text are refused with the line named, never
// half-read.
func TestTraceRefused(t *testing.T) {
	good := `{"event":{"action":"add","devpath":"/devices/usb1/1-6","subsystem":"usb","devtype":"usb_device","seqnum":7,"env":{"ACTION":"add","DEVPATH":"/devices/usb1/1-6","SUBSYSTEM":"usb","DEVTYPE":"usb_device","SEQNUM":"7"}}}`
	if _, err := uevent.ReadTrace(strings.NewReader(good), "t"); err != nil {
		t.Fatalf("good line refused: %v", err)
	}
	// A device's strings are its maker's: control characters and all, as
	// record writes them, a trace replays them.
	hostile := strings.Replace(good, `}}}`, `}},"sysfs":{"serial":"\u001b[31mX\nY\u0007","product":"\u202eevil"}}`, 1)
	if recs, err := uevent.ReadTrace(strings.NewReader(hostile), "t"); err != nil || recs[0].Sysfs["serial"] != "\x1b[31mX\nY\a" {
		t.Fatalf("a hostile device's strings: %v %+v", err, recs)
	}
	for _, c := range []struct{ name, text, want string }{
		{"not json", good + "\n{", "t:2: "},
		{"unknown field", `{"evnt":{}}`, `t:1: json: unknown field "evnt"`},
		{"empty record", `{}`, "t:1: neither an event nor an overrun"},
		{"both", strings.Replace(good, `{"event"`, `{"overrun":true,"event"`, 1), "t:1: both an event and an overrun"},
		{"sysfs alone", `{"overrun":true,"sysfs":{"serial":"x"}}`, "t:1: sysfs attributes without an event"},
		{"env disagrees", strings.Replace(good, `"SEQNUM":"7"`, `"SEQNUM":"8"`, 1), `SEQNUM is "8" in the environment but "7"`},
		{"bad action", strings.ReplaceAll(good, `"add"`, `"explode"`), `unknown action "explode"`},
		{"relative devpath", strings.ReplaceAll(good, `"/devices/usb1/1-6"`, `"devices/usb1/1-6"`), "not absolute"},
		{"NUL in a value", strings.Replace(good, `"DEVTYPE":"usb_device"`, `"DEVTYPE":"usb_device\u0000X=1"`, 1), "t:1: "},
		{"equals in a key", strings.Replace(good, `"SEQNUM":"7"`, `"SEQNUM":"7","A=B":"c"`, 1), "t:1: "},
		{"attribute path", strings.Replace(good, `}}}`, `}},"sysfs":{"../x":"1"}}`, 1), `sysfs attribute name "../x"`},
		{"attribute NUL", strings.Replace(good, `}}}`, `}},"sysfs":{"serial":"a\u0000b"}}`, 1), "sysfs attribute serial has a NUL byte at 1"},
		{"two values", good + good, "more than one JSON value"},
		{"long line", strings.Repeat(" ", uevent.MaxTraceLine+1), "t:1: bufio.Scanner: token too long"},
	} {
		_, err := uevent.ReadTrace(strings.NewReader(c.text), "t")
		if err == nil || !strings.Contains(err.Error(), c.want) || !errors.Is(err, uevent.ErrTrace) {
			t.Errorf("%s: %v, want an ErrTrace containing %q", c.name, err, c.want)
		}
	}

	hdr := "KERNEL[1.5] add      /devices/usb1/1-6 (usb)\n"
	props := "ACTION=add\nDEVPATH=/devices/usb1/1-6\nSUBSYSTEM=usb\nSEQNUM=3\n"
	if recs, err := uevent.ImportUdevadm(strings.NewReader(hdr+props), "u"); err != nil || len(recs) != 1 {
		t.Fatalf("good block: %v %v", recs, err)
	}
	for _, c := range []struct{ name, text, want string }{
		{"no properties", hdr + "\n", "u:1: an event without properties: capture with `udevadm monitor --property`"},
		{"garbage first", "hello\n" + hdr + props, `u:1: "hello" is not udevadm monitor output`},
		{"not key=value", hdr + "ACTION add\n", `u:2: "ACTION add" is not KEY=VALUE`},
		{"key twice", hdr + props + "SEQNUM=4\n", "u:6: key SEQNUM given twice in the event of line 1"},
		{"header disagrees", strings.Replace(hdr, "add ", "remove ", 1) + props, "u:1: the header says remove"},
		{"bad timestamp", "KERNEL[x] add /devices/usb1/1-6 (usb)\n" + props, "u:1: KERNEL header"},
		{"no subsystem in header", "KERNEL[1.0] add /devices/usb1/1-6\n" + props, `is not "ACTION DEVPATH (SUBSYSTEM)"`},
		{"seqnum", strings.Replace(hdr+props, "SEQNUM=3", "SEQNUM=x", 1), `u:1: SEQNUM "x" is not a number`},
		{"duplicate kernel", hdr + props + "\n" + hdr + props, "u:7: a second KERNEL event with SEQNUM 3"},
		{"property outside", hdr + props + "\n" + "X=1\n", "u:7: \"X=1\" is outside an event block"},
	} {
		_, err := uevent.ImportUdevadm(strings.NewReader(c.text), "u")
		if err == nil || !strings.Contains(err.Error(), c.want) || !errors.Is(err, uevent.ErrTrace) {
			t.Errorf("%s: %v, want an ErrTrace containing %q", c.name, err, c.want)
		}
	}
}

func FuzzReadTrace(f *testing.F) {
	f.Add([]byte(`{"event":{"action":"add","devpath":"/devices/usb1/1-6","subsystem":"usb","seqnum":7,"env":{"ACTION":"add","DEVPATH":"/devices/usb1/1-6","SUBSYSTEM":"usb","SEQNUM":"7"}},"sysfs":{"serial":"x"}}`))
	f.Add([]byte(`{"overrun":true}` + "\n\n"))
	f.Fuzz(func(t *testing.T, b []byte) {
		recs, err := uevent.ReadTrace(bytes.NewReader(b), "fuzz")
		if err != nil {
			if !errors.Is(err, uevent.ErrTrace) {
				t.Fatalf("error without ErrTrace: %v", err)
			}
			return
		}
		// What was accepted writes and reads back the same.
		var buf bytes.Buffer
		w := uevent.NewTraceWriter(&buf)
		for _, r := range recs {
			if err := w.Write(r); err != nil {
				t.Fatal(err)
			}
		}
		w.Flush()
		again, err := uevent.ReadTrace(&buf, "again")
		if err != nil || len(again) != len(recs) {
			t.Fatalf("accepted trace does not read back: %v", err)
		}
	})
}

func FuzzImportUdevadm(f *testing.F) {
	for _, p := range []string{"testdata/mouse-add.txt", "testdata/mouse-add-udev.txt"} {
		b, err := os.ReadFile(p)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	f.Add([]byte("KERNEL[1.5] add /devices/usb1/1-6 (usb)\nACTION=add\nDEVPATH=/devices/usb1/1-6\nSUBSYSTEM=usb\nSEQNUM=3\n"))
	f.Fuzz(func(t *testing.T, b []byte) {
		recs, err := uevent.ImportUdevadm(bytes.NewReader(b), "fuzz")
		if err != nil {
			if !errors.Is(err, uevent.ErrTrace) {
				t.Fatalf("error without ErrTrace: %v", err)
			}
			return
		}
		for _, r := range recs {
			// Every imported event survives the datagram parser.
			if _, err := uevent.Parse(uevent.Marshal(*r.Event)); err != nil {
				t.Fatalf("imported event does not parse: %v", err)
			}
		}
	})
}
