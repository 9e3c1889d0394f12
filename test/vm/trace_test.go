package vmtest

import (
	"os"
	"strings"
	"testing"
)

// The uevents condition on a real kernel's trace (testdata/README): the
// authorization scenario's keyboard for the guest (1-1) and its stick
// (3-1) were never bound by a dom0 driver and made no hid or SCSI device;
// dom0's keyboard (1-2) was bound by usbhid and made an input device; the
// blocked mouse (1-4) had no interface bound.
func TestEvalTraceOnRealKernel(t *testing.T) {
	b, err := os.ReadFile("testdata/authorize.uevents.jsonl")
	if err != nil {
		t.Fatal(err)
	}
	evs := ParseTrace(string(b) + `{"time":"2026-12-02T01:28:24Z","event":{"action":"bi`) // a line cut short
	if len(evs) != 102 {
		t.Fatalf("%d events, want 102", len(evs))
	}
	for _, c := range []struct {
		cond, busid string
		want        bool
	}{
		{"none ACTION=bind DRIVER=usbhid,usb-storage", "1-1", true},
		{"none ACTION=bind DRIVER=usbhid,usb-storage", "3-1", true},
		{"none SUBSYSTEM=hid,input,scsi,scsi_host,block", "1-1", true},
		{"none SUBSYSTEM=hid,input,scsi,scsi_host,block", "3-1", true},
		{"some ACTION=bind DRIVER=usbback", "1-1", true},
		{"some ACTION=bind DRIVER=usbback", "3-1", true},
		{"some ACTION=bind DRIVER=usbhid", "1-2", true},
		{"some SUBSYSTEM=input", "1-2", true},
		{"none ACTION=bind DRIVER=usbhid", "1-2", false},
		{"none ACTION=bind DEVTYPE=usb_interface", "1-4", true},
		{"some ACTION=bind DRIVER=usbhid", "1-5", true}, // the mouse behind the hub
		{"some ACTION=bind DRIVER=usbhid", "1-5.1", false},
		{"some ACTION=bind DRIVER=usbhid", "1-", false}, // a prefix is no device
		{"some ACTION=bind DRIVER=usbhid", "", true},
	} {
		f := strings.Fields(c.cond)
		m, err := parseTraceMatch(f[1:])
		if err != nil {
			t.Fatal(err)
		}
		if got, found := evalTrace(evs, f[0], m, c.busid); got != c.want {
			t.Errorf("uevents %s under %q = %v, want %v (%s)", c.cond, c.busid, got, c.want, found)
		}
	}
}

func TestParseTraceMatchErrors(t *testing.T) {
	for _, c := range []string{"", "under k1", "DRIVER=usbhid under", "DRIVER=usbhid under k1 k2", "DRIVER", "=x", "DRIVER="} {
		if _, err := parseTraceMatch(strings.Fields(c)); err == nil {
			t.Errorf("parseTraceMatch(%q) took it", c)
		}
	}
	if _, err := Parse("x.scn", "expect uevents never DRIVER=usbhid"); err == nil || !strings.Contains(err.Error(), "x.scn:1: uevents none|some") {
		t.Errorf("a bad mode: %v", err)
	}
}
