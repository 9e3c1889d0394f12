package main

import (
	"strings"
	"testing"

	"github.com/usbhotplugd/usbhotplugd/internal/agent"
	"github.com/usbhotplugd/usbhotplugd/internal/daemon"
)

// The device table's port is where the device is: one that left its port
// (detached by xl, its port cleared) shows the port it was at as such.
func TestDeviceTablePorts(t *testing.T) {
	st := &daemon.Status{Devices: []agent.Audit{
		{BusID: "1-4", ID: "046d:c077", Action: agent.ActAttached, Domain: "kiosk", Domid: 1, Ctrl: 0, Port: 1},
		{BusID: "1-5", ID: "046d:c077", Action: agent.ActHeld, Domain: "kiosk", Domid: 1, Ctrl: 1, Port: 2},
	}}
	var b strings.Builder
	if err := deviceTable(&b, st); err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(b.String(), "\n")
	if !strings.Contains(lines[1], "1-4") || !strings.Contains(lines[1], " 0:1 ") {
		t.Errorf("an attached device's port:\n%s", b.String())
	}
	if !strings.Contains(lines[2], "1-5") || !strings.Contains(lines[2], " (was 1:2) ") {
		t.Errorf("a held device's port:\n%s", b.String())
	}
}

// Every status entry is a row: one whose action the table's order does
// not name (cleared) too, and one the agent could not read (no id).
func TestDeviceTableListsEveryEntry(t *testing.T) {
	st := &daemon.Status{Devices: []agent.Audit{
		{BusID: "1-4", ID: "046d:c077", Action: agent.ActAttached, Domain: "kiosk", Domid: 1, Ctrl: 0, Port: 1},
		{BusID: "1-7", Action: agent.ActCleared, Domid: 1, Ctrl: 0, Port: 2, Reason: "1-7 left the host: its port 0:2 of domain 1 is cleared"},
		{BusID: "1-8", Action: agent.ActPending, Reason: "1-8 waits: the kernel holds its device lock"},
	}}
	var b strings.Builder
	if err := deviceTable(&b, st); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"\n1-7    -          cleared", "\n1-8    -          pending"} {
		if !strings.Contains(b.String(), want) {
			t.Errorf("no %q row:\n%s", want, b.String())
		}
	}
}
