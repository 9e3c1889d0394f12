package policy_test

import (
	"errors"
	"strings"
	"testing"

	"github.com/usbhotplugd/usbhotplugd/policy"
)

const (
	hashA = "8/lRg7fpexFN+jJomk6FgUUsLpiO7e+jszr8VYERqBk="
	hashH = "9zGHdRu8cMEN2pQxXm0f/vfMObNBmWD25NI9LTkzdRk="
)

// twinHost: two identical mice without serials behind one hub, and a
// keyboard on the root hub, with the identities sysfs gives them.
func twinHost() []policy.Device {
	pp := func(port string) (string, string) {
		return "pci-0000:00:14.0-usb-0:" + port, "pci-0000:00:14.0-usbv2-0:" + port
	}
	mk := func(busid, port string, devnum int, vendor, product uint16, hash, parent string) policy.Device {
		d := policy.Device{BusID: busid, BusNum: 1, DevNum: devnum, Vendor: vendor, Product: product, Hash: hash, ParentHash: parent,
			Interfaces: []policy.Interface{{3, 1, 2}}, Plugged: uint64(devnum)}
		d.PortPath, d.PortPathRev = pp(port)
		return d
	}
	return []policy.Device{
		mk("1-3.1", "3.1", 3, 0x0627, 0x0001, hashA, hashH),
		mk("1-3.2", "3.2", 4, 0x0627, 0x0001, hashA, hashH),
		mk("1-1", "1", 2, 0x0627, 0x0002, "aiRHSJfz50dYJ9X5sFiPEeBJr10u2CYnT2GweD0Lq4I=", "KNTbulRTcDNnApG8p1r/KWdSgFLautm23piAJjdb5IA="),
		{BusID: "2-1", BusNum: 2, DevNum: 2, Vendor: 0x1111, Product: 0x2222, Interfaces: []policy.Interface{{3, 1, 1}}}, // no identities known
	}
}

func TestIdentityMatchKeys(t *testing.T) {
	inv := twinHost()
	for _, c := range []struct{ match, want string }{
		{`port_path = "pci-0000:00:14.0-usb-0:3.2"`, "1-3.2"},
		{`port_path = "pci-0000:00:14.0-usbv2-0:3.2"`, "1-3.2"},
		{`port_path = "pci-0000:00:14.0-usbv3-0:3.2"`, ""},
		{`port_path = "pci-0000:00:14.0-usb-0:3.*"`, "1-3.1 1-3.2"},
		{`port_path = ["pci-0000:00:14.0-usb-0:1", "pci-0000:00:14.0-usb-0:3.1"]`, "1-3.1 1-1"},
		{`port_path = "pci-0000:00:15.0-usb-0:3.2"`, ""},
		// Twins share a hash: a rule by hash alone cannot tell them apart.
		{`hash = "` + hashA + `"`, "1-3.1! 1-3.2!"},
		{`hash = "` + hashA + `", port_path = "pci-0000:00:14.0-usb-0:3.1"`, "1-3.1"},
		{`parent_hash = "` + hashH + `", id = "0627:0001"`, "1-3.1! 1-3.2!"},
		{`parent_hash = "` + hashH + `", port_path = "*-usb-0:3.2"`, "1-3.2"},
		{`hash = "` + hashH + `"`, ""},
	} {
		if got := attached(t, c.match, inv); got != c.want {
			t.Errorf("match { %s }: attaches %q, want %q", c.match, got, c.want)
		}
	}
}

// explain says which identity did not match, and a refusal among twins
// suggests the port path.
func TestIdentityExplain(t *testing.T) {
	inv := twinHost()
	p := parse(t, `
[[rule]]
name = "by-path"
action = "attach"
match = { port_path = "pci-0000:00:14.0-usb-0:9" }
target = { domain = "vm" }
[[rule]]
name = "by-hash"
action = "attach"
match = { hash = "`+hashH+`" }
target = { domain = "vm" }
[[rule]]
name = "by-parent"
action = "attach"
match = { parent_hash = "`+hashA+`" }
target = { domain = "vm" }
[[rule]]
name = "mice"
action = "attach"
match = { id = "0627:0001" }
target = { domain = "vm" }
`)
	ex := p.Explain(&inv[1], inv)
	var whys []string
	for _, s := range ex.Skipped {
		whys = append(whys, s.Why)
	}
	want := []string{
		`port path pci-0000:00:14.0-usb-0:3.2 is not "pci-0000:00:14.0-usb-0:9"`,
		`hash "` + hashA + `" is not "` + hashH + `"`,
		`parent hash "` + hashH + `" is not "` + hashA + `"`,
	}
	if strings.Join(whys, "\n") != strings.Join(want, "\n") {
		t.Errorf("skips:\n%s\nwant:\n%s", strings.Join(whys, "\n"), strings.Join(want, "\n"))
	}
	if ex.Action != policy.Refuse || !strings.Contains(ex.Reason, `add port_path = "pci-0000:00:14.0-usb-0:3.2" to name the socket`) {
		t.Errorf("twins: %v %s", ex.Action, ex.Reason)
	}
	ex = p.Explain(&inv[3], inv)
	if len(ex.Skipped) < 2 || !strings.Contains(ex.Skipped[0].Why, "no stable path") || !strings.Contains(ex.Skipped[1].Why, "no descriptor hash") {
		t.Errorf("a device without identities: %+v", ex.Skipped)
	}
}

func TestIdentityKeyErrors(t *testing.T) {
	for _, c := range []struct {
		match string
		kind  error
		msg   string
	}{
		{`port_path = "1-3.2"`, policy.ErrValue, `is a busid, which changes with bus numbers: write it as port = "1-3.2"`},
		{`port_path = "*"`, policy.ErrValue, "matches every port"},
		{`port_path = "usb-0:3.2"`, policy.ErrValue, "does not start at a controller"},
		{`port_path = "pci-0000:00:14.0"`, policy.ErrNeverMatches, "root hubs are never passed through"},
		{`port_path = "pci-0000:00:14.0-usb-0:3.2:1.0"`, policy.ErrValue, "names an interface"},
		{`port_path = "pci-0000:00:14.0-usb-0:0"`, policy.ErrValue, "is not a port path"},
		{`port_path = "pci-0000:00:14.0-usbv4-0:1"`, policy.ErrValue, "is not a port path"},
		{`port_path = "pci-0000:00:14.0-usb-0:1 "`, policy.ErrValue, "is not a port path"},
		{`port_path = []`, policy.ErrNeverMatches, "an empty list"},
		{`port_path = 3`, policy.ErrType, "a string in quotes"},
		{`hash = "abc"`, policy.ErrValue, "is not a device hash"},
		{`parent_hash = "` + hashA[:40] + `"`, policy.ErrValue, "is not a device hash"},
		{`id_path = "x"`, policy.ErrUnknownKey, "did you mean port_path?"},
	} {
		src := "[[rule]]\nname = \"r\"\naction = \"attach\"\nmatch = { " + c.match + " }\ntarget = { domain = \"vm\" }\n"
		_, err := policy.Parse("test.toml", []byte(src), nil)
		if !errors.Is(err, c.kind) || !strings.Contains(err.Error(), c.msg) {
			t.Errorf("match { %s }: %v; want %v with %q", c.match, err, c.kind, c.msg)
		}
	}
	for _, ok := range []string{"pci-0000:00:14.0-usb-0:1.4", "pci-0000:00:1c.7-pci-0000:08:00.0-usb-0:4.3", "platform-xhci-hcd.0.auto-usbv3-0:1",
		"pci-0000:00:15.0-platform-xhci-hcd.1.auto-usb-0:2.1.3", "acpi-PNP0D10:00-usb-0:7"} {
		src := "[[rule]]\nname = \"r\"\naction = \"deny\"\nmatch = { port_path = \"" + ok + "\" }\n"
		if _, err := policy.Parse("test.toml", []byte(src), nil); err != nil {
			t.Errorf("%s refused: %v", ok, err)
		}
	}
}

// A rule by port path or hash shadows only the rules it covers.
func TestIdentityShadowed(t *testing.T) {
	p := parse(t, `
[[rule]]
name = "hub-3"
action = "deny"
match = { port_path = "pci-0000:00:14.0-usb-0:3.*" }
[[rule]]
name = "one-behind-hub-3"
action = "deny"
match = { port_path = "pci-0000:00:14.0-usb-0:3.2", hash = "`+hashA+`" }
[[rule]]
name = "elsewhere"
action = "deny"
match = { port_path = "pci-0000:00:14.0-usb-0:4" }
[[rule]]
name = "by-hash"
action = "deny"
match = { hash = "`+hashA+`" }
[[rule]]
name = "by-hash-and-parent"
action = "deny"
match = { hash = "`+hashA+`", parent_hash = "`+hashH+`" }
[[rule]]
name = "by-parent"
action = "deny"
match = { parent_hash = "`+hashH+`" }
`)
	var got []string
	for _, f := range p.Shadowed() {
		got = append(got, f.Rule.Name+"<"+f.By.Name)
	}
	if want := "one-behind-hub-3<hub-3 by-hash-and-parent<by-hash"; strings.Join(got, " ") != want {
		t.Errorf("shadowed %v, want %s", got, want)
	}
}
