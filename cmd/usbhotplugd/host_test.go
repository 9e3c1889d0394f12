package main

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/usbhotplugd/usbhotplugd/internal/fakekernel"
	"github.com/usbhotplugd/usbhotplugd/internal/uevent"
)

// runCmd runs one command in-process and returns its exit code and output.
func runCmd(t *testing.T, args ...string) (int, string, string) {
	t.Helper()
	var out, errb bytes.Buffer
	code := run(context.Background(), args, &out, &errb)
	return code, out.String(), errb.String()
}

func TestDevices(t *testing.T) {
	root := t.TempDir()
	if err := fakekernel.Standard(root); err != nil {
		t.Fatal(err)
	}
	code, out, errs := runCmd(t, "devices", "--sysfs", root)
	if code != 0 {
		t.Fatalf("exit %d: %s", code, errs)
	}
	lines := strings.Split(strings.TrimSpace(out), "\n")
	if len(lines) != 10 || !strings.HasPrefix(lines[0], "BUSID") {
		t.Fatalf("table:\n%s", out)
	}
	for _, want := range []string{
		"1-1.6  046d:c31c  001:006   1.5    -      -                     pci-0000:00:14.0-usb-0:1.6  hid:usbhid",
		"1-2    0d8c:0014  001:003   12     -      -                     pci-0000:00:14.0-usb-0:2    audio:snd-usb-audio,audio:snd-usb-audio,audio:snd-usb-audio,hid:usbhid",
		"1-3    0781:5567  001:004   480    -      4C530001230517117244  pci-0000:00:14.0-usb-0:3    storage:usb-storage",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("table lacks %q:\n%s", want, out)
		}
	}

	code, out, _ = runCmd(t, "devices", "--json", "--sysfs", root)
	var devs []map[string]any
	if code != 0 || json.Unmarshal([]byte(out), &devs) != nil || len(devs) != 9 {
		t.Fatalf("json: exit %d\n%s", code, out)
	}
	kbd := devs[4]
	if kbd["busid"] != "1-1.6" || kbd["id"] != "046d:c31c" || kbd["vendor"] != "046d" || kbd["class"] != "00" || kbd["bus"] != float64(1) || kbd["addr"] != float64(6) ||
		kbd["port_path"] != "pci-0000:00:14.0-usb-0:1.6" || kbd["port_path_with_usb_revision"] != "pci-0000:00:14.0-usbv2-0:1.6" || kbd["ports"] != "1.6" {
		t.Fatalf("keyboard in JSON: %v", kbd)
	}

	if code, _, errs := runCmd(t, "devices", "--sysfs", filepath.Join(root, "nope")); code != exitFailure || !strings.Contains(errs, "nope/bus/usb/devices") {
		t.Fatalf("missing sysfs: exit %d, %s", code, errs)
	}
	if code, _, _ := runCmd(t, "devices", "extra"); code != exitUsage {
		t.Fatalf("extra argument: exit %d", code)
	}
}

// A device that cannot be read is named, and the exit status says so;
// the rest are listed (and get their rules from generate), and explaining
// another device is not failed by it.
func TestDevicesListsPastAnUnreadableDevice(t *testing.T) {
	root := t.TempDir()
	if err := fakekernel.Standard(root); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(root, "bus/usb/devices/1-4/devnum"), []byte("x\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	code, out, errs := runCmd(t, "devices", "--sysfs", root)
	if code != exitFailure || !strings.Contains(errs, "device 1-4 could not be read") || !strings.Contains(errs, "1-4/devnum") {
		t.Errorf("exit %d, stderr %q", code, errs)
	}
	if lines := strings.Split(strings.TrimSpace(out), "\n"); len(lines) != 9 || !strings.Contains(out, "MOUSE-B") || strings.Contains(out, "MOUSE-A") {
		t.Errorf("table:\n%s", out)
	}
	code, out, errs = runCmd(t, "devices", "--json", "--sysfs", root)
	var devs []map[string]any
	if code != exitFailure || json.Unmarshal([]byte(out), &devs) != nil || len(devs) != 8 || !strings.Contains(errs, "1-4") {
		t.Errorf("json: exit %d, %d devices, stderr %q", code, len(devs), errs)
	}
	pol := filepath.Join(t.TempDir(), "p.toml")
	if err := os.WriteFile(pol, []byte(""), 0o644); err != nil {
		t.Fatal(err)
	}
	if code, _, errs := runCmd(t, "explain", "--policy", pol, "--sysfs", root, "1-5"); code != 0 {
		t.Errorf("explain 1-5: exit %d, %s", code, errs)
	}
	if code, _, errs := runCmd(t, "explain", "--policy", pol, "--sysfs", root, "1-4"); code != exitFailure || !strings.Contains(errs, "1-4/devnum") {
		t.Errorf("explain 1-4: exit %d, %s", code, errs)
	}
	code, out, errs = runCmd(t, "generate", "--domain", "kiosk", "-o", "-", "--sysfs", root)
	if code != exitFailure || !strings.Contains(out, "MOUSE-B") || strings.Contains(out, "MOUSE-A") || !strings.Contains(errs, "device 1-4 could not be read") || !strings.Contains(errs, "no rule was written for it") {
		t.Errorf("generate: exit %d, stderr %q, policy:\n%s", code, errs, out)
	}
	// Its twin or not: an identity is chosen only when every device is read.
	code, _, errs = runCmd(t, "assign", "--policy", pol, "--sysfs", root, "--state-dir", t.TempDir(), "--no-reload", "1-5", "kiosk")
	if code != exitFailure || !strings.Contains(errs, "cannot tell which identity names 1-5 alone") || !strings.Contains(errs, "1-4/devnum") {
		t.Errorf("assign: exit %d, stderr %q", code, errs)
	}
	if _, err := os.Stat(filepath.Join(filepath.Dir(pol), "rules.d")); err == nil {
		t.Error("assign wrote a drop-in")
	}
}

// `record --import-udevadm` turns a capture from an admin's machine into a
// trace that reads back to the kernel's events.
func TestRecordImportUdevadm(t *testing.T) {
	dir := t.TempDir()
	trace := filepath.Join(dir, "plug.jsonl")
	code, _, errs := runCmd(t, "record", "--import-udevadm", "../../internal/uevent/testdata/mouse-add-udev.txt", "-o", trace)
	if code != 0 || !strings.Contains(errs, "imported 11 events") {
		t.Fatalf("exit %d: %s", code, errs)
	}
	f, err := os.Open(trace)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	recs, err := uevent.ReadTrace(f, trace)
	if err != nil || len(recs) != 11 || recs[0].Sysfs["serial"] == "" {
		t.Fatalf("trace: %d records, %v", len(recs), err)
	}

	bad := filepath.Join(dir, "bad.txt")
	os.WriteFile(bad, []byte("KERNEL[1.0] add /devices/usb1/1-6 (usb)\nACTION=remove\n"), 0o644)
	code, _, errs = runCmd(t, "record", "--import-udevadm", bad)
	if code != exitFailure || !strings.Contains(errs, bad+":1: ") {
		t.Fatalf("bad import: exit %d, %s", code, errs)
	}
}

// A serial with spaces is quoted in the table: a trailing one would not
// show, an inner one would look like the next column.
func TestDevicesQuotesASerialWithSpaces(t *testing.T) {
	for _, tc := range []struct{ serial, want string }{
		{"AB12  ", `"AB12  "`}, {" AB 12", `" AB 12"`}, {"-", `"-"`}, {`"q`, `"\"q"`}, {"AB12", "AB12"}, {"", "-"},
		{"a\x1bb c", `"a\x1bb c"`},
	} {
		root := t.TempDir()
		err := fakekernel.XL(root, fakekernel.Dev{BusID: "1-2", DevNum: 9, Vendor: "1234", Product: "5678", Class: "00", Serial: tc.serial,
			Interfaces: []fakekernel.Intf{{Class: "03", SubClass: "01", Protocol: "01", Driver: "usbhid"}}})
		if err != nil {
			t.Fatal(err)
		}
		code, out, errs := runCmd(t, "devices", "--sysfs", root)
		var row string
		for l := range strings.Lines(out) {
			if strings.HasPrefix(l, "1-2 ") {
				row = l
			}
		}
		if code != 0 || !strings.Contains(row, "  "+tc.want+"  ") {
			t.Errorf("serial %q: want %s in its row: exit %d %s\n%s", tc.serial, tc.want, code, errs, out)
		}
	}
}
