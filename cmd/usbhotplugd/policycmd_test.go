package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/usbhotplugd/usbhotplugd/internal/fakekernel"
	"github.com/usbhotplugd/usbhotplugd/policy"
)

func writeFile(t *testing.T, dir, name, body string) string {
	t.Helper()
	p := filepath.Join(dir, name)
	if err := os.WriteFile(p, []byte(body), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestCheck(t *testing.T) {
	code, out, errs := runCmd(t, "check", "../../rules/examples/vdi.toml")
	if code != 0 || !strings.Contains(out, "vdi.toml: valid: 10 rules (6 from ../../rules/deny-defaults.toml), 2 domain sections, 0 warnings") {
		t.Fatalf("vdi: exit %d\n%s%s", code, out, errs)
	}
	dir := t.TempDir()
	shadow := writeFile(t, dir, "shadow.toml", "[[rule]]\nname = \"all\"\naction = \"deny\"\n\n[[rule]]\nname = \"kbd\"\naction = \"attach\"\nmatch = { id = \"046d:c31c\" }\ntarget = { domain = \"desk\" }\n")
	code, out, _ = runCmd(t, "check", shadow)
	if code != 0 || !strings.Contains(out, `warning: `+shadow+`:5: rule 2 "kbd" is shadowed by rule 1 "all"`) || !strings.Contains(out, "1 warning\n") {
		t.Fatalf("shadowed: exit %d\n%s", code, out)
	}
	if code, _, errs = runCmd(t, "check", "--strict", shadow); code != exitFailure || !strings.Contains(errs, "1 warning with --strict") {
		t.Fatalf("strict: exit %d %s", code, errs)
	}
	// --policy names the file as the argument does, as for the other
	// policy commands; two different files are a usage error.
	if code, byFlag, errs := runCmd(t, "check", "--policy", shadow); code != 0 || byFlag != out {
		t.Fatalf("--policy: exit %d %s\n%s", code, errs, byFlag)
	}
	if code, byFlag, _ := runCmd(t, "check", "--policy", shadow, shadow); code != 0 || byFlag != out {
		t.Fatalf("--policy and the same file: exit %d\n%s", code, byFlag)
	}
	if code, _, errs = runCmd(t, "check", "--policy", shadow, filepath.Join(dir, "other.toml")); code != exitUsage || !strings.Contains(errs, "two policy files") {
		t.Fatalf("--policy and another file: exit %d %s", code, errs)
	}
	bad := writeFile(t, dir, "bad.toml", "[[rule]]\nname = \"a\"\naction = \"attach\"\nmatch = { id = 1133 }\ntarget = { domain = \"7\" }\n")
	code, out, errs = runCmd(t, "check", bad)
	if code != exitFailure || !strings.Contains(out, bad+`:4: rule 1 "a": match.id:`) || !strings.Contains(out, bad+`:5: rule 1 "a": target.domain: "7" is a domid`) ||
		!strings.Contains(errs, "2 errors; the policy is not valid") {
		t.Fatalf("bad: exit %d\n%s%s", code, out, errs)
	}
	if code, _, errs = runCmd(t, "check", filepath.Join(dir, "none.toml")); code != exitFailure || !strings.Contains(errs, "no such file") {
		t.Fatalf("missing: exit %d %s", code, errs)
	}
	if code, _, _ = runCmd(t, "check", "a", "b"); code != exitUsage {
		t.Fatalf("two files: exit %d", code)
	}
}

// A deny rule by a class given per interface, before a catch-all attach,
// would let the very devices it names through: check warns, naming the
// file, line and rule and the interface key that does match them, and
// explain says why the rule does not match.
func TestCheckWarnsOfAClassGivenPerInterface(t *testing.T) {
	pol := writeFile(t, t.TempDir(), "policy.toml", "[[rule]]\nname = \"no-storage\"\naction = \"deny\"\nmatch = { class = \"storage\" }\n\n"+
		"[[rule]]\nname = \"rest\"\naction = \"attach\"\ntarget = { domain = \"kiosk\" }\n")
	code, out, errs := runCmd(t, "check", pol)
	if code != 0 || !strings.Contains(out, "warning: "+pol+`:4: rule 1 "no-storage": match.class = "storage" matches almost no device: `+
		`the USB spec gives class 08 (storage) per interface, so such a device's own class is 00 (per-interface); `+
		`to match a device with a storage interface, write interface = "storage" instead`+"\n") || !strings.Contains(out, "1 warning\n") {
		t.Fatalf("check: exit %d\n%s%s", code, out, errs)
	}
	if code, _, _ = runCmd(t, "check", "--strict", pol); code != exitFailure {
		t.Errorf("check --strict: exit %d", code)
	}
	root := t.TempDir()
	if err := fakekernel.Standard(root); err != nil {
		t.Fatal(err)
	}
	_, out, errs = runCmd(t, "explain", "--policy", pol, "--sysfs", root, "1-3")
	if want := `rule 1 "no-storage" (` + pol + `:1) does not match: the device's class is 00 (given per interface), not storage; interface = "storage" matches its interfaces`; !strings.Contains(out, want) {
		t.Errorf("explain lacks\n%s\n--- in ---\n%s%s", want, out, errs)
	}
}

// check reads the drop-ins beside the policy, names each rule's file in
// the order they are tried, and with --host checks another host's set.
func TestCheckDropIns(t *testing.T) {
	dir := t.TempDir()
	main := writeFile(t, dir, "policy.toml", "[[rule]]\nname = \"no-storage\"\naction = \"deny\"\nmatch = { class = \"storage\" }\n")
	if err := os.Mkdir(filepath.Join(dir, "rules.d"), 0o755); err != nil {
		t.Fatal(err)
	}
	a := writeFile(t, dir, "rules.d/10-desk.toml", "[[rule]]\nname = \"kbd\"\naction = \"attach\"\nmatch = { id = \"046d:c31c\" }\ntarget = { domain = \"desk\" }\n")
	vdi := writeFile(t, dir, "rules.d/20-vdi.toml", "hosts = [\"vdi-*\"]\n[[rule]]\nname = \"yubikey\"\naction = \"attach\"\nmatch = { id = \"1050:*\" }\ntarget = { domain = \"vdi\" }\n")
	code, out, errs := runCmd(t, "check", "--host", "desk-3", main)
	if code != 0 || !strings.Contains(out, "valid: 2 rules (1 from "+a+")") || !strings.Contains(out, "  1             "+main+"\n  2             "+a+"\n") ||
		!strings.Contains(out, "not for host desk-3: "+vdi+" (hosts = vdi-*)") {
		t.Fatalf("desk-3: exit %d\n%s%s", code, out, errs)
	}
	code, out, errs = runCmd(t, "check", "--host", "vdi-1", main)
	if code != 0 || !strings.Contains(out, "valid: 3 rules") || !strings.Contains(out, "  3             "+vdi+"\n") {
		t.Fatalf("vdi-1: exit %d\n%s%s", code, out, errs)
	}
}

func TestExplain(t *testing.T) {
	root := t.TempDir()
	if err := fakekernel.Standard(root); err != nil {
		t.Fatal(err)
	}
	code, out, errs := runCmd(t, "explain", "--policy", "../../rules/examples/kiosk.toml", "--sysfs", root)
	if code != 0 {
		t.Fatalf("exit %d: %s", code, errs)
	}
	for _, want := range []string{
		"1-1  8087:0024  bus 1 addr 2  pci-0000:00:14.0-usb-0:1  Intel USB2.0 Hub\n  => deny: 1-1 (8087:0024) is a hub: hubs are never passed through (built-in guard)",
		"1-1.2  0c27:3bfa  bus 1 addr 8  pci-0000:00:14.0-usb-0:1.2  RFIDeas USB Keyboard Badge Reader\n  => refuse: rule 1 \"badge-reader\" matches 1-1.2 (0c27:3bfa) and its twins 1-1.3",
		"1-1.6  046d:c31c  bus 1 addr 6  pci-0000:00:14.0-usb-0:1.6  Logitech USB Keyboard\n  rule 1 \"badge-reader\" (../../rules/examples/kiosk.toml:8) does not match: id 046d:c31c is not 0c27:3bfa",
		"  => deny: rule 7 \"deny-boot-keyboards-and-mice\" denies 1-1.6 (046d:c31c): it stays with dom0",
		"1-3  0781:5567  bus 1 addr 4  pci-0000:00:14.0-usb-0:3  SanDisk Cruzer Blade\n",
		"  => deny: rule 10 \"rest-stays-in-dom0\" denies 1-3 (0781:5567)",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("explain lacks\n%s\n--- in ---\n%s", want, out)
		}
	}

	code, out, _ = runCmd(t, "explain", "--policy", "../../rules/examples/kiosk.toml", "--sysfs", root, "--json", "1-4")
	var got []map[string]any
	if code != 0 || json.Unmarshal([]byte(out), &got) != nil || len(got) != 1 {
		t.Fatalf("json: exit %d\n%s", code, out)
	}
	if got[0]["action"] != "attach" || got[0]["target"].(map[string]any)["domain"] != "kiosk" || got[0]["rule"] != "front-left-socket" || got[0]["rule_source"] != "../../rules/examples/kiosk.toml:21" || fmt.Sprint(got[0]["exec"]) != "[/usr/bin/logger -t kiosk-socket]" {
		t.Fatalf("1-4 in JSON: %v", got[0])
	}

	// The built-in guard: a disk dom0 has mounted stays, whatever the rules.
	if err := (&fakekernel.Builder{Root: root}).AddDisk("1-3:1.0", fakekernel.Disk{Name: "sde", Dev: "8:64"}).Err(); err != nil {
		t.Fatal(err)
	}
	mi := filepath.Join(t.TempDir(), "mountinfo")
	if err := os.WriteFile(mi, []byte("41 28 8:64 / /mnt rw - vfat /dev/sde rw\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, out, _ = runCmd(t, "explain", "--policy", "../../rules/examples/kiosk.toml", "--sysfs", root, "--mountinfo", mi, "1-3"); !strings.Contains(out, "=> deny: 1-3 (0781:5567) is in use by dom0: /dev/sde is mounted on /mnt") {
		t.Errorf("a mounted disk:\n%s", out)
	}

	// when = "present" / "plugged": by default the devices count as present.
	pol := filepath.Join(t.TempDir(), "when.toml")
	if err := os.WriteFile(pol, []byte("[[rule]]\nname = \"boot\"\naction = \"attach\"\nmatch = { port = \"1-4\", when = \"present\" }\ntarget = { domain = \"kiosk\" }\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, out, _ = runCmd(t, "explain", "--policy", pol, "--sysfs", root, "1-4"); !strings.Contains(out, "=> attach: rule 1 \"boot\"") {
		t.Errorf("present by default:\n%s", out)
	}
	if _, out, _ = runCmd(t, "explain", "--policy", pol, "--sysfs", root, "--plugged", "1-4"); !strings.Contains(out, `rule is for devices present then (when = "present")`) {
		t.Errorf("--plugged:\n%s", out)
	}

	if code, _, errs = runCmd(t, "explain", "--policy", "../../rules/examples/kiosk.toml", "--sysfs", root, "9-9"); code != exitFailure || !strings.Contains(errs, "no USB device 9-9") {
		t.Fatalf("absent busid: exit %d %s", code, errs)
	}
	if code, _, _ = runCmd(t, "explain", "../x"); code != exitUsage {
		t.Fatalf("bad busid: exit %d", code)
	}
}

// A device at a UHCI companion of an EHCI (the same PCI slot) is
// explained with a note that its busid and port path are the
// companion's, not those of the EHCI socket it is plugged into, which a
// rule may name; a device at the EHCI itself has no such note.
func TestExplainCompanion(t *testing.T) {
	root := t.TempDir()
	slot := "devices/pci0000:00/0000:00:1d."
	b := &fakekernel.Builder{Root: root}
	b.Add(fakekernel.Dev{BusID: "usb1", DevNum: 1, Vendor: "1d6b", Product: "0002", Class: "09", Serial: "0000:00:1d.7", Speed: "480", Interfaces: fakekernel.Hub, Controller: slot + "7"})
	b.Add(fakekernel.Dev{BusID: "usb2", DevNum: 1, Vendor: "1d6b", Product: "0001", Class: "09", Serial: "0000:00:1d.0", Speed: "12", Interfaces: fakekernel.Hub, Controller: slot + "0"})
	b.Add(fakekernel.Dev{BusID: "2-1", DevNum: 2, Vendor: "0627", Product: "0001", Class: "00", Speed: "12", Interfaces: []fakekernel.Intf{{Class: "03", SubClass: "01", Protocol: "01"}}})
	b.Add(fakekernel.Dev{BusID: "1-2", DevNum: 2, Vendor: "46f4", Product: "0001", Class: "00", Speed: "480", Interfaces: []fakekernel.Intf{{Class: "08", SubClass: "06", Protocol: "50"}}})
	if err := b.Err(); err != nil {
		t.Fatal(err)
	}
	for fn, class := range map[string]string{"7": "0x0c0320", "0": "0x0c0300"} {
		if err := os.WriteFile(filepath.Join(root, slot+fn, "class"), []byte(class+"\n"), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	pol := writeFile(t, t.TempDir(), "p.toml", "[[rule]]\nname = \"socket 1\"\naction = \"attach\"\nmatch = { port_path = \"pci-0000:00:1d.7-usb-0:1\" }\ntarget = { domain = \"kiosk\" }\n")
	code, out, errs := runCmd(t, "explain", "--policy", pol, "--sysfs", root, "2-1")
	if code != 0 || !strings.Contains(out, "2-1  0627:0001  bus 2 addr 2  pci-0000:00:1d.0-usb-0:1") ||
		!strings.Contains(out, "  at a companion controller of the EHCI 0000:00:1d.7: ") {
		t.Fatalf("at the companion: exit %d\n%s%s", code, out, errs)
	}
	if code, out, errs = runCmd(t, "explain", "--policy", pol, "--sysfs", root, "1-2"); code != 0 || strings.Contains(out, "companion") {
		t.Fatalf("at the EHCI: exit %d\n%s%s", code, out, errs)
	}
}

// check stops when its context is done (SIGINT or SIGTERM cancel it).
func TestCheckStopsWithItsContext(t *testing.T) {
	var b strings.Builder
	for i := range 5000 {
		fmt.Fprintf(&b, "[[rule]]\nname = \"r%d\"\naction = \"deny\"\nmatch = { serial = \"S%d\" }\n", i, i)
	}
	p := writeFile(t, t.TempDir(), "big.toml", b.String())
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	var out strings.Builder
	if err := runCheck(ctx, p, policy.Options{Host: "h"}, false, &out); !errors.Is(err, context.Canceled) {
		t.Fatalf("want context.Canceled, got %v\n%s", err, out.String())
	}
}
