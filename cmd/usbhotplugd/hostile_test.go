package main

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/rs/zerolog"

	"github.com/usbhotplugd/usbhotplugd/internal/daemon"
	"github.com/usbhotplugd/usbhotplugd/internal/fakekernel"
	"github.com/usbhotplugd/usbhotplugd/internal/xenstore/xenstoretest"
)

// A device's strings are chosen by whoever plugs it in.
const (
	hostileSerial = "\x1b[2J\x1b]0;owned\x07X\n1-9    dead:beef  001:099"
	hostileMaker  = "\u202eevil"
	hostileName   = "csi\u009b31m"
)

func hostileHost(t *testing.T) string {
	root := t.TempDir()
	err := fakekernel.XL(root, fakekernel.Dev{BusID: "1-2", DevNum: 9, Vendor: "1234", Product: "5678", Class: "00",
		Serial: hostileSerial, Manufacturer: hostileMaker, Name: hostileName,
		Interfaces: []fakekernel.Intf{{Class: "03", SubClass: "01", Protocol: "01", Driver: "usbhid"}}})
	if err != nil {
		t.Fatal(err)
	}
	return root
}

// raw reports a character that would act on a terminal.
func raw(s string) bool { return strings.ContainsAny(s, "\x1b\x07\u009b\u202e") }

// devices and explain show device strings escaped, one device per line;
// JSON keeps them exact.
func TestHostileStrings(t *testing.T) {
	root := hostileHost(t)
	code, out, errs := runCmd(t, "devices", "--sysfs", root)
	if code != 0 || raw(out) || strings.Contains(out, "\n1-9") || !strings.Contains(out, `\x1b[2J\x1b]0;owned\x07X\n1-9`) || !strings.Contains(out, `\u202eevil csi\u009b31m`) {
		t.Fatalf("devices: exit %d %s\n%s", code, errs, out)
	}
	code, out, _ = runCmd(t, "devices", "--json", "--sysfs", root)
	var devs []map[string]any
	if code != 0 || json.Unmarshal([]byte(out), &devs) != nil {
		t.Fatalf("json: exit %d\n%s", code, out)
	}
	found := false
	for _, d := range devs {
		if d["busid"] == "1-2" {
			found = d["serial"] == hostileSerial && d["manufacturer"] == hostileMaker
		}
	}
	if !found || strings.ContainsAny(out, "\x1b\x07") {
		t.Errorf("JSON does not keep the strings exact (JSON-escaped):\n%s", out)
	}
	pol := writeFile(t, t.TempDir(), "p.toml", "[[rule]]\nname = \"by-maker\"\naction = \"deny\"\nmatch = { manufacturer = \"Apple*\" }\n")
	code, out, errs = runCmd(t, "explain", "--policy", pol, "--sysfs", root, "1-2")
	if code != 0 || raw(out) || !strings.Contains(out, `\u202eevil csi\u009b31m`) {
		t.Fatalf("explain: exit %d %s\n%s", code, errs, out)
	}
}

// Completion describes busids by the device's strings, escaped: zsh and
// fish print the descriptions.
func TestCompletionEscapes(t *testing.T) {
	root := hostileHost(t)
	code, out, errs := runCmd(t, "__complete", "explain", "--sysfs", root, "")
	if code != 0 || !strings.Contains(out, "1-2\t") || raw(out) || strings.Contains(out, "\n1-9") {
		t.Fatalf("__complete: exit %d %s\n%q", code, errs, out)
	}
}

// The console log escapes what it prints: messages and field values.
func TestConsoleLogEscapes(t *testing.T) {
	var b bytes.Buffer
	log := zerolog.New(daemon.SafeConsole(zerolog.ConsoleWriter{Out: &b, NoColor: true}))
	log.Info().Str("serial", hostileSerial).Str("name", hostileMaker).Msg("attached " + hostileName)
	if raw(b.String()) || strings.Count(b.String(), "\n") != 1 {
		t.Fatalf("console log:\n%q", b.String())
	}
	// Values that are no string come as their JSON text, not as bytes.
	b.Reset()
	log.Info().Bool("dry_run", true).Uints32("domids", []uint32{1, 2}).Strs("twins", []string{"1-2", "1-3"}).Msg("x")
	for _, want := range []string{`dry_run=true`, `domids=[1,2]`, `twins=["1-2","1-3"]`} {
		if !strings.Contains(b.String(), want) {
			t.Errorf("console log %q, want %s in it", b.String(), want)
		}
	}
}

// What xenstore holds is anyone's with write access to it (an admin's
// xenstore-write, a crashed toolstack): the xl commands' errors and
// warnings that quote it reach the terminal escaped.
func TestStoreValuesReachTheTerminalEscaped(t *testing.T) {
	xenstoretest.ForEach(t, func(t *testing.T, store xenstoretest.Store) {
		ctx := context.Background()
		xs := store.Dial(t)
		seedXL(t, xs)
		root, k := xlHost(t)
		sysfsWriter = k
		defer func() { sysfsWriter = nil }()
		c := func(args ...string) (int, string, string) {
			return runCmd(t, append([]string{args[0], "--xenstore", store.SocketPath(), "--sysfs", root}, args[1:]...)...)
		}
		if code, _, errs := c("usbctrl-attach", "kiosk", "ports=2", "--backend-timeout", "1ms"); code != exitFailure && code != 0 {
			t.Fatalf("usbctrl-attach: %d %s", code, errs)
		}
		for _, kv := range [][2]string{
			{"/local/domain/0/backend/vusb/1/0/port/1", hostileSerial},
			{"/libxl/1/device/vusb/5/type", "pv"},
			{"/libxl/1/device/vusb/5/backend", "/local/domain/" + hostileMaker + hostileSerial + "/backend/vusb/1/5"},
			{"/libxl/1/device/vusb/5/frontend", "/local/domain/1/device/vusb/5"},
		} {
			if err := xs.Write(ctx, kv[0], []byte(kv[1])); err != nil {
				t.Fatal(err)
			}
		}
		for _, args := range [][]string{
			{"usb-list", "kiosk"},
			{"usbdev-attach", "kiosk", "busid=1-1.6", "controller=0", "port=1"},
			{"usbdev-attach", "kiosk", "busid=1-1.6"},
		} {
			code, out, errs := c(args...)
			if raw(out) || raw(errs) || strings.Count(errs, "\n") > 3 {
				t.Errorf("%v: exit %d, raw store bytes on the terminal:\n%q\n%q", args, code, out, errs)
			}
		}
	})
}

// A reason may quote what is not the device's own but follows from it: a
// mount point made of a stick's filesystem label (an automounter's
// /media/USER/LABEL), which mountinfo keeps raw but for \040 and the
// like. explain shows reasons escaped, as status does.
func TestExplainEscapesReasons(t *testing.T) {
	root := t.TempDir()
	b := &fakekernel.Builder{Root: root}
	b.Add(fakekernel.Dev{BusID: "usb1", DevNum: 1, Vendor: "1d6b", Product: "0002", Class: "09", Interfaces: fakekernel.Hub})
	b.Add(fakekernel.Dev{BusID: "1-3", DevNum: 4, Vendor: "0781", Product: "5567", Class: "00",
		Interfaces: []fakekernel.Intf{{Class: "08", SubClass: "06", Protocol: "50", Driver: "usb-storage"}}})
	b.AddDisk("1-3:1.0", fakekernel.Disk{Name: "sde", Dev: "8:64"})
	if err := b.Err(); err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	mi := writeFile(t, dir, "mountinfo", "28 1 8:1 / / rw - ext4 /dev/sda1 rw\n41 28 8:64 / /media/alice/\x1b]0;owned\x07\x1b[2J rw - vfat /dev/sde rw\n")
	pol := writeFile(t, dir, "p.toml", "[[rule]]\nname = \"sticks\"\naction = \"attach\"\nmatch = { id = \"0781:5567\" }\ntarget = { domain = \"kiosk\" }\n")
	code, out, errs := runCmd(t, "explain", "--policy", pol, "--sysfs", root, "--mountinfo", mi, "1-3")
	if code != 0 || raw(out) || !strings.Contains(out, `/media/alice/\x1b]0;owned\x07\x1b[2J`) {
		t.Fatalf("explain: exit %d %s\n%q", code, errs, out)
	}
}

// A port path is named after the controller, and a platform controller's
// name is whatever its firmware says: devices and explain escape it as they
// escape the device's strings.
func TestHostilePortPath(t *testing.T) {
	root := t.TempDir()
	ctrl := "devices/platform/fe\x1b]0;owned\x07.usb"
	b := &fakekernel.Builder{Root: root}
	b.Add(fakekernel.Dev{BusID: "usb3", DevNum: 1, Vendor: "1d6b", Product: "0002", Class: "09", Controller: ctrl, Interfaces: fakekernel.Hub})
	b.Add(fakekernel.Dev{BusID: "3-1", DevNum: 2, Vendor: "1234", Product: "5678", Class: "00",
		Interfaces: []fakekernel.Intf{{Class: "03", SubClass: "01", Protocol: "01", Driver: "usbhid"}}})
	if err := b.Err(); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink("../../bus/platform", filepath.Join(root, ctrl, "subsystem")); err != nil {
		t.Fatal(err)
	}
	const want = `platform-fe\x1b]0;owned\x07.usb-usb-0:1`
	pol := writeFile(t, t.TempDir(), "p.toml", "[[rule]]\nname = \"kbd\"\naction = \"deny\"\nmatch = { id = \"1234:5678\" }\n")
	code, out, errs := runCmd(t, "explain", "--policy", pol, "--sysfs", root, "3-1")
	if code != 0 || raw(out) || !strings.Contains(out, want) {
		t.Fatalf("explain: exit %d %s\n%q", code, errs, out)
	}
	code, out, errs = runCmd(t, "devices", "--sysfs", root)
	if code != 0 || raw(out) || !strings.Contains(out, want) {
		t.Fatalf("devices: exit %d %s\n%q", code, errs, out)
	}
}
