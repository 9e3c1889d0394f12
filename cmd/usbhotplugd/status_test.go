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

// Each entry's rule says where it is written: the main file's and a
// drop-in's relative to the policy's directory, an include elsewhere in
// full; the columns stay aligned.
func TestDeviceTableRuleSources(t *testing.T) {
	st := &daemon.Status{Policy: daemon.PolicyState{File: "/etc/usbhotplugd/policy.toml"}, Devices: []agent.Audit{
		{BusID: "1-1.2", ID: "0c27:3bfa", Action: agent.ActAttached, Rule: "badge-reader", RuleAt: "/etc/usbhotplugd/policy.toml:4", Domain: "kiosk", Domid: 2, Port: 1, Reason: "r1"},
		{BusID: "1-3", ID: "04b8:0202", Action: agent.ActPending, Rule: "printer", RuleAt: "/etc/usbhotplugd/rules.d/10-printers.toml:2", Domain: "kiosk", Reason: "r2"},
		{BusID: "1-4", ID: "0781:5567", Action: agent.ActDenied, Rule: "sticks", RuleAt: "/srv/site/deny.toml:7", Reason: "r3"},
		{BusID: "1-5", ID: "046d:c077", Action: agent.ActCleared, Rule: "mouse", Domid: 2, Port: 2, Reason: "r4"},
		{BusID: "1-6", ID: "046d:c31c", Action: agent.ActUnmatched, Reason: "r5"},
	}}
	var b strings.Builder
	if err := deviceTable(&b, st); err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSuffix(b.String(), "\n"), "\n")
	if len(lines) != 6 {
		t.Fatalf("table:\n%s", b.String())
	}
	rule, why := strings.Index(lines[0], "RULE"), strings.Index(lines[0], "WHY")
	want := map[string][2]string{
		"1-1.2": {"badge-reader (policy.toml:4)", "r1"},
		"1-3":   {"printer (rules.d/10-printers.toml:2)", "r2"},
		"1-4":   {"sticks (/srv/site/deny.toml:7)", "r3"},
		"1-5":   {"mouse", "r4"},
		"1-6":   {"-", "r5"},
	}
	for _, l := range lines[1:] {
		w, ok := want[strings.Fields(l)[0]]
		if !ok || !strings.HasPrefix(l[rule:], w[0]+" ") || l[why:] != w[1] {
			t.Errorf("row %q: want rule %q and reason %q in their columns:\n%s", l, w[0], w[1], b.String())
		}
	}
}
