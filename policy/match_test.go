package policy_test

import (
	"fmt"
	"slices"
	"strings"
	"testing"

	"github.com/usbhotplugd/usbhotplugd/policy"
)

// host is the standard test host, as fakekernel.Standard builds it.
func host() []policy.Device {
	hid := func(p uint8) []policy.Interface { return []policy.Interface{{3, 1, p}} }
	return []policy.Device{
		{BusID: "usb1", BusNum: 1, DevNum: 1, Vendor: 0x1d6b, Product: 0x0002, Class: 9, Interfaces: []policy.Interface{{9, 0, 0}}, Plugged: 1},
		{BusID: "1-1", BusNum: 1, DevNum: 2, Vendor: 0x8087, Product: 0x0024, Class: 9, Interfaces: []policy.Interface{{9, 0, 0}}, Plugged: 2},
		{BusID: "1-1.6", BusNum: 1, DevNum: 6, Vendor: 0x046d, Product: 0xc31c, Manufacturer: "Logitech", ProductName: "USB Keyboard", Interfaces: hid(1), Plugged: 3},
		{BusID: "1-2", BusNum: 1, DevNum: 3, Vendor: 0x0d8c, Product: 0x0014, Manufacturer: "C-Media", ProductName: "USB Audio Device",
			Interfaces: []policy.Interface{{1, 1, 0}, {1, 2, 0}, {1, 2, 0}, {3, 0, 0}}, Plugged: 4},
		{BusID: "1-3", BusNum: 1, DevNum: 4, Vendor: 0x0781, Product: 0x5567, Serial: "4C530001230517117244", Manufacturer: "SanDisk", ProductName: "Cruzer Blade",
			Interfaces: []policy.Interface{{8, 6, 0x50}}, Plugged: 5},
		{BusID: "1-4", BusNum: 1, DevNum: 5, Vendor: 0x046d, Product: 0xc077, Serial: "MOUSE-A", Manufacturer: "Logitech", ProductName: "USB Optical Mouse", Interfaces: hid(2), Plugged: 7},
		{BusID: "1-5", BusNum: 1, DevNum: 7, Vendor: 0x046d, Product: 0xc077, Serial: "MOUSE-B", Manufacturer: "Logitech", ProductName: "USB Optical Mouse", Interfaces: hid(2), Plugged: 6},
		{BusID: "1-1.2", BusNum: 1, DevNum: 8, Vendor: 0x0c27, Product: 0x3bfa, Manufacturer: "RFIDeas", ProductName: "USB Keyboard Badge Reader", Interfaces: hid(1), Plugged: 8},
		{BusID: "1-1.3", BusNum: 1, DevNum: 9, Vendor: 0x0c27, Product: 0x3bfa, Manufacturer: "RFIDeas", ProductName: "USB Keyboard Badge Reader", Interfaces: hid(1), Plugged: 9},
	}
}

func find(inv []policy.Device, busid string) *policy.Device {
	for i := range inv {
		if inv[i].BusID == busid {
			return &inv[i]
		}
	}
	panic("no device " + busid)
}

// attached lists which devices a single rule `match` attaches to "vm",
// as "busid" for attach and "busid!" for a refusal.
func attached(t *testing.T, match string, inv []policy.Device) string {
	t.Helper()
	p := parse(t, fmt.Sprintf("[[rule]]\nname = \"r\"\naction = \"attach\"\nmatch = { %s }\ntarget = { domain = \"vm\" }\n", match))
	var out []string
	for i := range inv {
		switch d := p.Match(&inv[i], inv); d.Action {
		case policy.Attach:
			out = append(out, inv[i].BusID)
		case policy.Refuse:
			out = append(out, inv[i].BusID+"!")
		}
	}
	return strings.Join(out, " ")
}

// Every match key, alone and combined.
func TestMatchKeys(t *testing.T) {
	inv := host()
	for _, c := range []struct{ match, want string }{
		{`bus = 1, addr = 6`, "1-1.6"},
		{`bus = 1, addr = 99`, ""},
		{`bus = 2, addr = 6`, ""},
		{`id = "046d:c31c"`, "1-1.6"},
		{`id = "046D:C31C"`, "1-1.6"},
		{`id = "046d:*", port = "1-*"`, "1-1.6 1-4! 1-5!"},
		{`id = "046d:*"`, "1-1.6 1-4! 1-5!"},
		{`id = "*:c077", serial = "MOUSE-B"`, "1-5"},
		{`id = ["0781:5567", "0d8c:0014"]`, "1-2 1-3"},
		{`serial = "MOUSE-A"`, "1-4"},
		{`serial = ["MOUSE-A", "4C530001230517117244"]`, "1-3 1-4"},
		{`port = "1-1.6"`, "1-1.6"},
		{`port = "1-1.*"`, "1-1.6 1-1.2 1-1.3"},
		{`port = "1-?"`, "1-2 1-3 1-4 1-5"},
		{`port = ["1-2", "1-3"]`, "1-2 1-3"},
		{`class = "per-interface", port = "1-2"`, "1-2"},
		{`class = "00", port = "1-2"`, "1-2"},
		{`class = "audio"`, ""},
		{`interface = "audio"`, "1-2"},
		{`interface = "audio", interfaces = "all"`, ""},
		{`interface = ["audio", "hid"], interfaces = "all"`, "1-1.6 1-2 1-4 1-5 1-1.2 1-1.3"},
		{`interface = "hid:01:02"`, "1-4 1-5"},
		{`interface = "03:01:*", port = "1-1.6"`, "1-1.6"},
		{`interface = "storage:06:50"`, "1-3"},
		{`interface = "08:06:62"`, ""},
		{`manufacturer = "Logitech", product_name = "*Keyboard*"`, "1-1.6"},
		{`manufacturer = "Logi*", product_name = "USB ?ptical Mouse"`, "1-4 1-5"},
		{`product_name = "*Badge*", port = "1-1.3"`, "1-1.3"},
		{`id = "046d:c31c", port = "1-4"`, ""},
	} {
		if got := attached(t, c.match, inv); got != c.want {
			t.Errorf("match { %s }: attached [%s], want [%s]", c.match, got, c.want)
		}
	}
}

// Hubs are never attached, whatever matches them.
func TestHubGuard(t *testing.T) {
	inv := host()
	p := parse(t, "[[rule]]\nname = \"all\"\naction = \"attach\"\ntarget = { domain = \"vm\" }\n")
	for _, b := range []string{"usb1", "1-1"} {
		d := p.Match(find(inv, b), inv)
		if d.Action != policy.Deny || d.Guard != "hub" || d.Rule != nil || !strings.Contains(d.Reason, "hubs are never passed through") {
			t.Errorf("%s: %+v", b, d)
		}
	}
	if d := p.Match(find(inv, "1-3"), inv); d.Action != policy.Attach || d.Rule.Name != "all" || d.Target.Domain != "vm" {
		t.Errorf("catch-all rule: %+v", d)
	}
}

// A disk dom0 uses is denied by the guard whatever the rules, and says
// what they do with it once dom0 lets go: passed only when a rule attaches
// it, named with its rule.
func TestInUseGuardSaysWhatComesAfter(t *testing.T) {
	inv := host()
	d := find(inv, "1-3")
	d.InUse = "/dev/sde1 is mounted on /srv/data"
	for _, c := range []struct{ pol, want, not string }{
		{"", "once dom0 unmounts it (or stops the device-mapper or md device holding it), it stays with dom0 all the same: no rule matches it", "passes"},
		{"[[rule]]\nname = \"sticks\"\naction = \"attach\"\nmatch = { interface = \"storage\" }\ntarget = { domain = \"vm\" }\n",
			`holding it), the agent passes it to vm (rule 1 "sticks")`, ""},
		{"[[rule]]\nname = \"keep\"\naction = \"deny\"\nmatch = { interface = \"storage\" }\n", `holding it), rule 1 "keep" denies 1-3 (0781:5567): it stays with dom0`, "passes"},
	} {
		p := parse(t, c.pol)
		for _, dec := range []policy.Decision{p.Match(d, inv), p.Explain(d, inv).Decision} {
			if dec.Action != policy.Deny || dec.Guard != "in-use" || dec.Rule != nil || !strings.Contains(dec.Reason, c.want) || c.not != "" && strings.Contains(dec.Reason, c.not) {
				t.Errorf("policy %q: %+v", c.pol, dec)
			}
		}
	}
}

// The first rule that matches decides; no match leaves the device in dom0.
func TestFirstMatchDecides(t *testing.T) {
	inv := host()
	p := parse(t, `
[[rule]]
name = "keep-storage"
action = "deny"
match = { interface = "storage" }

[[rule]]
name = "everything-on-port-1-3"
action = "attach"
match = { port = "1-3" }
target = { domain = "vm" }

[[rule]]
name = "keyboard"
action = "attach"
match = { id = "046d:c31c" }
target = { domain = "desk", controller = 0, port = 2 }
`)
	d := p.Match(find(inv, "1-3"), inv)
	if d.Action != policy.Deny || d.Rule.Index != 1 || d.Reason != `rule 1 "keep-storage" denies 1-3 (0781:5567): it stays with dom0` {
		t.Errorf("storage: %+v", d)
	}
	d = p.Match(find(inv, "1-1.6"), inv)
	if d.Action != policy.Attach || d.Rule.Index != 3 || d.Target.Controller != 0 || d.Target.Port != 2 || d.Reason != `rule 3 "keyboard" attaches 1-1.6 (046d:c31c) to desk` {
		t.Errorf("keyboard: %+v", d)
	}
	d = p.Match(find(inv, "1-2"), inv)
	if d.Action != policy.None || d.Rule != nil || d.Reason != "no rule matches 1-2 (0d8c:0014): it stays with dom0" {
		t.Errorf("audio: %+v", d)
	}
}

// Twins: refuse by default (naming them and how to tell them apart),
// first plugged for "first", every one for "all"; a serial or a port
// settles it; the check re-runs when a twin leaves.
func TestDuplicates(t *testing.T) {
	inv := host()
	rule := func(dup string) *policy.Policy {
		extra := ""
		if dup != "" {
			extra = fmt.Sprintf("duplicates = %q\n", dup)
		}
		return parse(t, "[[rule]]\nname = \"r\"\naction = \"attach\"\nmatch = { id = \"0c27:3bfa\" }\ntarget = { domain = \"kiosk\" }\n"+extra+
			"[[rule]]\nname = \"mice\"\naction = \"attach\"\nmatch = { id = \"046d:c077\" }\ntarget = { domain = \"kiosk\" }\n"+extra)
	}
	p := rule("")
	d := p.Match(find(inv, "1-1.2"), inv)
	if d.Action != policy.Refuse || len(d.Twins) != 1 || d.Twins[0] != "1-1.3" {
		t.Fatalf("badge readers: %+v", d)
	}
	want := `rule 1 "r" matches 1-1.2 (0c27:3bfa) and its twins 1-1.3, and cannot tell them apart: none is attached (duplicates = "refuse"); they have no serials that tell them apart: add port = "1-1.2" to name the socket, or set duplicates = "first" or "all"`
	if d.Reason != want {
		t.Errorf("reason:\n%s\nwant\n%s", d.Reason, want)
	}
	if d := p.Match(find(inv, "1-4"), inv); d.Action != policy.Refuse || !strings.HasSuffix(d.Reason, `add serial = "MOUSE-A" to name this one`) {
		t.Errorf("mice with serials: %+v", d)
	}

	// The twin leaves: the check runs again and the reader is attached.
	var without []policy.Device
	for _, x := range inv {
		if x.BusID != "1-1.3" {
			without = append(without, x)
		}
	}
	if d := p.Match(find(without, "1-1.2"), without); d.Action != policy.Attach || d.Twins != nil {
		t.Errorf("after the twin left: %+v", d)
	}

	// The attached twin keeps its place, whatever the mode; the other is
	// refused, naming it.
	for _, mode := range []string{"", "first"} {
		p := rule(mode)
		twins := append([]policy.Device(nil), inv...)
		find(twins, "1-1.3").Attached = true
		if d := p.Match(find(twins, "1-1.3"), twins); d.Action != policy.Attach || !strings.Contains(d.Reason, "attached before its twins 1-1.2") {
			t.Errorf("%q: the attached twin: %+v", mode, d)
		}
		if d := p.Match(find(twins, "1-1.2"), twins); d.Action != policy.Refuse || !strings.Contains(d.Reason, "its twin 1-1.3 is attached and keeps its place") {
			t.Errorf("%q: the other twin: %+v", mode, d)
		}
	}

	p = rule("first")
	if a, b := p.Match(find(inv, "1-5"), inv), p.Match(find(inv, "1-4"), inv); a.Action != policy.Attach || b.Action != policy.Refuse ||
		!strings.Contains(b.Reason, "a twin (1-5) was plugged first") {
		t.Errorf("first: 1-5 (plugged first) %+v; 1-4 %+v", a, b)
	}
	p = rule("all")
	if a, b := p.Match(find(inv, "1-1.2"), inv), p.Match(find(inv, "1-1.3"), inv); a.Action != policy.Attach || b.Action != policy.Attach {
		t.Errorf("all: %+v %+v", a, b)
	}
	// A serial or a port tells twins apart: no refusal.
	if got := attached(t, `id = "046d:c077", serial = "MOUSE-A"`, inv); got != "1-4" {
		t.Errorf("by serial: %s", got)
	}
	if got := attached(t, `id = "0c27:3bfa", port = "1-1.3"`, inv); got != "1-1.3" {
		t.Errorf("by port: %s", got)
	}
}

// explain: the deciding rule, and why each earlier one did not match.
func TestExplain(t *testing.T) {
	inv := host()
	p := parse(t, `
[[rule]]
name = "by-bus"
action = "deny"
match = { bus = 2, addr = 1 }
[[rule]]
name = "class"
action = "deny"
match = { class = "audio" }
[[rule]]
name = "id"
action = "deny"
match = { id = ["1050:*", "0781:5567"] }
[[rule]]
name = "serial"
action = "deny"
match = { serial = "X" }
[[rule]]
name = "port"
action = "deny"
match = { port = "2-*" }
[[rule]]
name = "ifaces"
action = "deny"
match = { interface = ["storage", "printer"], interfaces = "all" }
[[rule]]
name = "names"
action = "deny"
match = { manufacturer = "Apple*" }
[[rule]]
name = "names-2"
action = "deny"
match = { product_name = "Magic*" }
[[rule]]
name = "kbd"
action = "attach"
match = { port = "1-1.6" }
target = { domain = "desk" }
`)
	ex := p.Explain(find(inv, "1-1.6"), inv)
	var b strings.Builder
	for _, s := range ex.Skipped {
		fmt.Fprintf(&b, "%s: %s\n", s.Rule, s.Why)
	}
	fmt.Fprintf(&b, "=> %s: %s\n", ex.Action, ex.Reason)
	golden(t, "explain.golden", b.String())
	if hub := p.Explain(find(inv, "1-1"), inv); hub.Guard != "hub" || hub.Skipped != nil {
		t.Errorf("hub: %+v", hub)
	}
}

func TestShadowed(t *testing.T) {
	p := parse(t, `
[[rule]]
name = "logitech"
action = "deny"
match = { id = "046d:*" }
[[rule]]
name = "logitech-keyboard"
action = "attach"
match = { id = "046d:c31c", port = "1-1.6" }
target = { domain = "vm" }
[[rule]]
name = "behind-hub"
action = "attach"
match = { port = "1-1.*" }
target = { domain = "vm" }
[[rule]]
name = "one-port-behind-hub"
action = "attach"
match = { port = ["1-1.2", "1-1.3.*"] }
target = { domain = "vm" }
[[rule]]
name = "other-port"
action = "attach"
match = { port = "1-2" }
target = { domain = "vm" }
[[rule]]
name = "rest"
action = "deny"
[[rule]]
name = "after-rest"
action = "deny"
match = { class = "hid" }
`)
	var got []string
	for _, f := range p.Shadowed() {
		got = append(got, f.Rule.Name+"<"+f.By.Name)
	}
	if s := strings.Join(got, " "); s != "logitech-keyboard<logitech one-port-behind-hub<behind-hub after-rest<rest" {
		t.Errorf("shadowed: %s", s)
	}
	if f := p.Shadowed()[0].String(); f != `test.toml:6: rule 2 "logitech-keyboard" is shadowed by rule 1 "logitech" (test.toml:2): it matches every device this rule matches, so this rule never decides` {
		t.Errorf("finding: %s", f)
	}
}

// Two sticks with the same vendor:product and the same serial are twins
// even for a rule that names the serial; a port pattern each matches on
// its own tells them apart, one they both match does not.
func TestTwinsShareASerial(t *testing.T) {
	inv := append(host(),
		policy.Device{BusID: "1-6", BusNum: 1, DevNum: 20, Vendor: 0x0781, Product: 0x5581, Serial: "4C530001", Plugged: 20},
		policy.Device{BusID: "1-7", BusNum: 1, DevNum: 21, Vendor: 0x0781, Product: 0x5581, Serial: "4C530001", Plugged: 21})
	for _, m := range []string{`serial = "4C530001"`, `id = "0781:5581", serial = "4C530001"`, `id = "0781:5581", port = "1-*"`} {
		if got := attached(t, m, inv); got != "1-6! 1-7!" {
			t.Errorf("%s: attached %s, want both refused", m, got)
		}
	}
	if got := attached(t, `id = "0781:5581", serial = "4C530001", port = ["1-6", "1-7"]`, inv); got != "1-6 1-7" {
		t.Errorf("told apart by their sockets: attached %q", got)
	}
}

// A class the USB spec gives only per interface, in match.class, matches
// almost no device: the policy warns, naming the file, the line of
// match.class and the rule, and says to write interface instead. A class
// a device may give as its own (vendor, misc, comm, wireless) is no
// warning.
func TestClassPerInterfaceWarns(t *testing.T) {
	p := parse(t, `[[rule]]
name = "no-storage"
action = "deny"
match = { class = "storage" }

[[rule]]
name = "no-hid"
action = "deny"
[rule.match]
port = "1-*"
class = "03"

[[rule]]
name = "vendor"
action = "deny"
match = { class = "vendor" }

[[rule]]
name = "misc"
action = "deny"
match = { class = "ef" }

[[rule]]
name = "bluetooth"
action = "deny"
match = { class = "wireless" }

[[rule]]
name = "comm"
action = "deny"
match = { class = "comm" }

[[rule]]
name = "rest"
action = "attach"
target = { domain = "vm" }
`)
	got := p.Warnings()
	want := []string{
		`test.toml:4: rule 1 "no-storage": match.class = "storage" matches almost no device: the USB spec gives class 08 (storage) per interface, so such a device's own class is 00 (per-interface); to match a device with a storage interface, write interface = "storage" instead`,
		`test.toml:11: rule 2 "no-hid": match.class = "hid" matches almost no device: the USB spec gives class 03 (hid) per interface, so such a device's own class is 00 (per-interface); to match a device with a hid interface, write interface = "hid" instead`,
	}
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Errorf("warnings:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
	for _, c := range []uint8{0x01, 0x03, 0x06, 0x07, 0x08, 0x0b, 0x0e, 0x10, 0x3c, 0xfe} {
		if !policy.InterfaceOnly(c) {
			t.Errorf("class %02x is given per interface", c)
		}
	}
	for _, c := range []uint8{0x00, 0x02, 0x09, 0x11, 0xdc, 0xe0, 0xef, 0xff} {
		if policy.InterfaceOnly(c) {
			t.Errorf("class %02x may be a device's own", c)
		}
	}
}

// Explain says why such a rule does not match a device whose class is
// given per interface, and what does.
func TestExplainClassPerInterface(t *testing.T) {
	inv := host()
	p := parse(t, "[[rule]]\nname = \"no-storage\"\naction = \"deny\"\nmatch = { class = \"storage\" }\n")
	ex := p.Explain(find(inv, "1-3"), inv)
	want := `the device's class is 00 (given per interface), not storage; interface = "storage" matches its interfaces`
	if len(ex.Skipped) != 1 || ex.Skipped[0].Why != want {
		t.Errorf("skipped: %+v\nwant: %s", ex.Skipped, want)
	}
	if why := p.Explain(&policy.Device{BusID: "1-9", Class: 0xff}, nil).Skipped[0].Why; why != "device class vendor is not storage" {
		t.Errorf("a device with a class of its own: %s", why)
	}
}

// A target that is a declared domain's name mistyped is warned of, with
// the name meant; a guest of a numbered series, an undeclared name far
// from any declared one, and a declared one are not.
func TestTargetTyposWarn(t *testing.T) {
	rule := func(name, target string) string {
		return fmt.Sprintf("[[rule]]\nname = %q\naction = \"attach\"\nmatch = { id = \"1234:5678\" }\ntarget = { domain = %q }\n", name, target)
	}
	p := parse(t, "[domain.kiosk]\nusbctrl = [\"version=2, ports=4\"]\n[domain.desk-1]\n[domain.desk-2]\n"+
		rule("typo", "kiosks")+rule("case", "Kiosk")+rule("series", "desk-4")+rule("far", "office")+rule("declared", "kiosk")+rule("two-off", "kosk-"))
	var got []string
	for _, f := range p.TargetTypos() {
		got = append(got, f.Rule.Name+"→"+f.Meant.Name)
	}
	if want := []string{"typo→kiosk", "case→kiosk", "two-off→kiosk"}; !slices.Equal(got, want) {
		t.Errorf("typos %v, want %v", got, want)
	}
	ws := strings.Join(p.Warnings(), "\n")
	if !strings.Contains(ws, `rule 1 "typo" targets domain "kiosks", which no [domain] section declares: did you mean "kiosk" (test.toml:1)?`) {
		t.Errorf("warnings:\n%s", ws)
	}
}
