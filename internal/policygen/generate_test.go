package policygen

import (
	"strings"
	"testing"

	"github.com/usbhotplugd/usbhotplugd/internal/usbsysfs"
	"github.com/usbhotplugd/usbhotplugd/policy"
)

func realDevices(t *testing.T) []usbsysfs.Device {
	t.Helper()
	devs, err := usbsysfs.NewFS("../usbsysfs/testdata/real/sys").Devices()
	if err != nil {
		t.Fatal(err)
	}
	return devs
}

// A disk dom0 uses gets a comment saying why, and no rule; twins are
// named by their sockets, a unique serial by itself.
func TestGenerateInUseAndTwins(t *testing.T) {
	devs := realDevices(t)
	out, err := Generate(devs, Options{Domain: "lab.example", InUse: func(d usbsysfs.Device) string {
		if d.BusID == "2-5" {
			return "/dev/sdb1 is mounted on /"
		}
		return ""
	}})
	if err != nil {
		t.Fatal(err)
	}
	s := string(out)
	for _, want := range []string{
		"# 2-5  46f4:0001  QEMU QEMU USB HARDDRIVE: in use by dom0 (/dev/sdb1 is mounted on /); it stays there\n",
		`match = { id = "0627:0001", port_path = "pci-0000:00:01.0-usb-0:3.1" }`,
		`match = { id = "0627:0001", port_path = "pci-0000:00:01.0-usb-0:3.2" }`,
		`match = { id = "46f4:0001", serial = "EHCI-0001" }`,
		`target = { domain = "lab.example" }`,
		"# [domain.\"lab.example\"]\n",
	} {
		if !strings.Contains(s, want) {
			t.Errorf("generated policy lacks %q:\n%s", want, s)
		}
	}
	if strings.Contains(s, "STICK-B-0002") {
		t.Error("a rule for the disk dom0 uses")
	}
	p, err := policy.Parse("gen", out, nil)
	if err != nil || len(p.Rules) != 10 {
		t.Fatalf("%v, %d rules", err, len(p.Rules))
	}
}

// Two devices on the two root hubs of one xHCI controller that share the
// plain port path are named by the form with the USB revision.
func TestChooseRevisionWhenPathsCollide(t *testing.T) {
	a := usbsysfs.Device{BusID: "1-4", Vendor: 1, Product: 2, PortPath: "pci-0000:00:14.0-usb-0:4", PortPathRev: "pci-0000:00:14.0-usbv2-0:4"}
	b := usbsysfs.Device{BusID: "2-4", Vendor: 1, Product: 2, PortPath: "pci-0000:00:14.0-usb-0:4", PortPathRev: "pci-0000:00:14.0-usbv3-0:4"}
	for _, d := range []usbsysfs.Device{a, b} {
		id, err := Choose(d, []usbsysfs.Device{a, b}, "")
		if err != nil || id.Key != ByPortPath || id.Value != d.PortPathRev {
			t.Errorf("%s: %+v %v", d.BusID, id, err)
		}
	}
	if id, _ := Choose(a, []usbsysfs.Device{a}, ByHash); id.Key != ByPortPath || id.Value != a.PortPath {
		t.Errorf("alone: %+v", id)
	}
	if id, _ := Choose(usbsysfs.Device{BusID: "3-1"}, nil, ""); id.Key != ByPort || id.Value != "3-1" {
		t.Errorf("no identity at all: %+v", id)
	}
	if _, err := Choose(a, nil, "busid"); err == nil {
		t.Error("a bad prefer accepted")
	}
}

// A serial no rule can name (a control character in it: whoever made the
// device chose it) is passed over for the port path, and the rule made
// with that loads: one such device does not stop generate for the host.
func TestChooseSkipsASerialNoRuleNames(t *testing.T) {
	d := usbsysfs.Device{BusID: "1-6", Vendor: 0xdead, Product: 0xbeef, Serial: "EVIL\x1b[31mRED\u202e", PortPath: "pci-0000:00:14.0-usb-0:6"}
	id, err := Choose(d, []usbsysfs.Device{d}, "")
	if err != nil || id.Key != ByPortPath || !strings.Contains(id.Why, "control characters") {
		t.Fatalf("%+v %v", id, err)
	}
	data, err := policy.FormatDropIn("x", nil, policy.RuleSpec{Name: ruleName(d, id), Action: policy.Attach, Domain: "kiosk", Match: id.Match(d)})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := policy.Parse("x.toml", data, nil); err != nil {
		t.Fatalf("the rule made: %v\n%s", err, data)
	}
}
