package usbsysfs_test

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/usbhotplugd/usbhotplugd/internal/fakekernel"
	"github.com/usbhotplugd/usbhotplugd/internal/usbsysfs"
)

// The real kernel's tree: an xHCI controller with a USB 2 and a USB 3 root
// hub on one PCI function, an EHCI and a UHCI controller.
var realPortPaths = map[string][2]string{
	"usb1":  {"pci-0000:00:01.0", "pci-0000:00:01.0"},
	"usb2":  {"pci-0000:00:01.0", "pci-0000:00:01.0"},
	"1-1":   {"pci-0000:00:01.0-usb-0:1", "pci-0000:00:01.0-usbv2-0:1"},
	"1-3":   {"pci-0000:00:01.0-usb-0:3", "pci-0000:00:01.0-usbv2-0:3"},
	"1-3.2": {"pci-0000:00:01.0-usb-0:3.2", "pci-0000:00:01.0-usbv2-0:3.2"},
	"2-4":   {"pci-0000:00:01.0-usb-0:4", "pci-0000:00:01.0-usbv3-0:4"},
	"3-1":   {"pci-0000:00:02.0-usb-0:1", "pci-0000:00:02.0-usbv2-0:1"},
	"4-2":   {"pci-0000:00:03.0-usb-0:2", "pci-0000:00:03.0-usbv1-0:2"},
}

// Hashes computed apart from this package, with sha256sum and base64 over
// the same attributes of the fixture.
var realHashes = map[string]string{
	"usb1":  "KNTbulRTcDNnApG8p1r/KWdSgFLautm23piAJjdb5IA=",
	"1-1":   "aiRHSJfz50dYJ9X5sFiPEeBJr10u2CYnT2GweD0Lq4I=",
	"1-3":   "9zGHdRu8cMEN2pQxXm0f/vfMObNBmWD25NI9LTkzdRk=",
	"1-3.1": "8/lRg7fpexFN+jJomk6FgUUsLpiO7e+jszr8VYERqBk=",
	"1-3.2": "8/lRg7fpexFN+jJomk6FgUUsLpiO7e+jszr8VYERqBk=",
	"2-4":   "N5/oY+42DAUGjFtOEVQarb4BYzEqtBXG73y75I5Koh8=",
}

func TestRealPortPathsAndHashes(t *testing.T) {
	f, _ := realTree(t)
	devs, err := f.Devices()
	if err != nil {
		t.Fatal(err)
	}
	byID := map[string]usbsysfs.Device{}
	for _, d := range devs {
		byID[d.BusID] = d
		if d.PortPath == "" || d.Hash == "" || d.ParentHash == "" {
			t.Errorf("%s: identity missing: %q %q %q", d.BusID, d.PortPath, d.Hash, d.ParentHash)
		}
	}
	for id, want := range realPortPaths {
		d := byID[id]
		if d.PortPath != want[0] || d.PortPathRev != want[1] {
			t.Errorf("%s: port paths %q %q, want %q %q", id, d.PortPath, d.PortPathRev, want[0], want[1])
		}
		pp, err := f.PortPaths(id)
		if err != nil || pp.Path != want[0] || pp.WithRevision != want[1] {
			t.Errorf("PortPaths(%s) = %+v, %v", id, pp, err)
		}
	}
	for id, want := range realHashes {
		if got := byID[id].Hash; got != want {
			t.Errorf("%s: hash %q, want %q", id, got, want)
		}
		if h, err := f.Hash(id); err != nil || h != want {
			t.Errorf("Hash(%s) = %q, %v", id, h, err)
		}
	}
	// A hub's children carry its hash; a root hub carries the hash of its
	// controller's path, as USBGuard gives it.
	if got := byID["1-3.2"].ParentHash; got != realHashes["1-3"] {
		t.Errorf("1-3.2 parent hash %q, want the hub's %q", got, realHashes["1-3"])
	}
	if got := byID["1-1"].ParentHash; got != realHashes["usb1"] {
		t.Errorf("1-1 parent hash %q", got)
	}
	if got, want := byID["usb1"].ParentHash, "uKiuZeEquKpscAHkOOhRBLBpIxajCkLrPWqP55jBSes="; got != want {
		t.Errorf("usb1 parent hash %q, want %q", got, want)
	}
	if ph, err := f.ParentHash("usb1"); err != nil || ph != byID["usb1"].ParentHash {
		t.Errorf("ParentHash(usb1) = %q, %v", ph, err)
	}
	if ph, err := f.ParentHash("1-3.2"); err != nil || ph != realHashes["1-3"] {
		t.Errorf("ParentHash(1-3.2) = %q, %v", ph, err)
	}
	if byID["1-3"].Ports != "3" || byID["1-3.2"].Ports != "3.2" {
		t.Errorf("devpath attributes %q %q", byID["1-3"].Ports, byID["1-3.2"].Ports)
	}
}

// Twins (two mice with the same serial and descriptors) share a hash and
// are told apart by their port paths.
func TestTwins(t *testing.T) {
	f, _ := realTree(t)
	a, err1 := f.Device("1-3.1")
	b, err2 := f.Device("1-3.2")
	if err1 != nil || err2 != nil {
		t.Fatal(err1, err2)
	}
	if a.Hash != b.Hash || a.ParentHash != b.ParentHash {
		t.Errorf("twins' hashes differ: %q/%q, %q/%q", a.Hash, b.Hash, a.ParentHash, b.ParentHash)
	}
	if a.PortPath == b.PortPath || a.PortPathRev == b.PortPathRev {
		t.Errorf("twins share a port path: %q", a.PortPath)
	}
}

// The same device keeps its port path and its hashes when the kernel
// numbers the buses in another order.
func TestRenumberedTreeKeepsIdentities(t *testing.T) {
	f, _ := realTree(t)
	before, err := f.Devices()
	if err != nil {
		t.Fatal(err)
	}
	dst := filepath.Join(t.TempDir(), "sys")
	swap := map[int]int{1: 3, 3: 1, 2: 4, 4: 2}
	if err := fakekernel.Renumber(f.Root(), dst, swap); err != nil {
		t.Fatal(err)
	}
	after, err := usbsysfs.NewFS(dst).Devices()
	if err != nil {
		t.Fatal(err)
	}
	if len(after) != len(before) {
		t.Fatalf("%d devices after renumbering, %d before", len(after), len(before))
	}
	byPath := map[string]usbsysfs.Device{}
	for _, d := range after {
		byPath[d.PortPathRev] = d
	}
	for _, d := range before {
		r, ok := byPath[d.PortPathRev]
		if !ok {
			t.Errorf("%s (%s) lost its port path", d.BusID, d.PortPathRev)
			continue
		}
		if d.IsRootHub() {
			continue // both root hubs of the xHCI share their controller's path
		}
		if r.BusNum != swap[d.BusNum] || r.Serial != d.Serial {
			t.Errorf("%s became %s on bus %d: not the renumbered device", d.BusID, r.BusID, r.BusNum)
		}
		if r.Hash != d.Hash || r.ParentHash != d.ParentHash || r.PortPath != d.PortPath {
			t.Errorf("%s → %s: identity changed: %q %q %q → %q %q %q", d.BusID, r.BusID, d.PortPath, d.Hash, d.ParentHash, r.PortPath, r.Hash, r.ParentHash)
		}
	}
}

// mkdev writes the least a device needs for PortPaths: its directory, its
// bus/usb/devices link and, for a root hub, the attributes that tell the
// USB revision. subsys gives directories a subsystem link.
func mkdev(t *testing.T, root, devpath string, subsys map[string]string) {
	t.Helper()
	dir := filepath.Join(root, devpath)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	name := filepath.Base(devpath)
	if strings.HasPrefix(name, "usb") {
		os.WriteFile(filepath.Join(dir, "bDeviceProtocol"), []byte("03\n"), 0o644)
		os.WriteFile(filepath.Join(dir, "speed"), []byte("5000\n"), 0o644)
	}
	for d, s := range subsys {
		p := filepath.Join(root, d)
		os.MkdirAll(p, 0o755)
		os.Symlink("../../bus/"+s, filepath.Join(p, "subsystem"))
	}
	link := filepath.Join(root, "bus/usb/devices", name)
	os.MkdirAll(filepath.Dir(link), 0o755)
	if err := os.Symlink(filepath.Join("../../..", devpath), link); err != nil && !os.IsExist(err) {
		t.Fatal(err)
	}
}

// Controllers behind a PCI bridge, on the platform bus, on a platform
// device of a PCI glue, and nowhere stable, as path_id names them.
func TestPortPathForms(t *testing.T) {
	root := t.TempDir()
	cases := []struct {
		devpath string
		subsys  map[string]string
		want    string
	}{
		{"devices/pci0000:00/0000:00:1c.7/0000:08:00.0/usb3/3-4/3-4.3", nil, "pci-0000:08:00.0-usbv3-0:4.3"},
		{"devices/platform/soc/fe9c0000.usb/xhci-hcd.0.auto/usb5/5-1",
			map[string]string{"devices/platform/soc": "platform", "devices/platform/soc/fe9c0000.usb": "platform", "devices/platform/soc/fe9c0000.usb/xhci-hcd.0.auto": "platform"},
			"platform-xhci-hcd.0.auto-usbv3-0:1"},
		{"devices/pci0000:00/0000:00:15.0/dwc3.0.auto/xhci-hcd.1.auto/usb6/6-2",
			map[string]string{"devices/pci0000:00/0000:00:15.0": "pci", "devices/pci0000:00/0000:00:15.0/dwc3.0.auto": "platform", "devices/pci0000:00/0000:00:15.0/dwc3.0.auto/xhci-hcd.1.auto": "platform"},
			"pci-0000:00:15.0-platform-xhci-hcd.1.auto-usbv3-0:2"},
	}
	f := usbsysfs.NewFS(root)
	for _, c := range cases {
		parts := strings.Split(c.devpath, "/")
		for i := range parts {
			if strings.HasPrefix(parts[i], "usb") && usbsysfs.ValidBusID(parts[i]) == nil {
				mkdev(t, root, strings.Join(parts[:i+1], "/"), c.subsys)
				for j := i + 1; j < len(parts); j++ {
					mkdev(t, root, strings.Join(parts[:j+1], "/"), nil)
				}
				break
			}
		}
		busid := parts[len(parts)-1]
		pp, err := f.PortPaths(busid)
		if err != nil || pp.WithRevision != c.want || pp.Path != strings.Replace(c.want, "usbv3", "usb", 1) {
			t.Errorf("%s: %+v, %v; want %s", c.devpath, pp, err, c.want)
		}
	}
	mkdev(t, root, "devices/virtual/thing/usb7/7-1", nil)
	if pp, err := f.PortPaths("7-1"); !errors.Is(err, usbsysfs.ErrNoPortPath) || pp.Path != "" {
		t.Errorf("a controller on no stable bus: %+v, %v", pp, err)
	}
}

// A configuration the kernel trimmed (the device's descriptor too short,
// or one of length 0 inside it) keeps the device's own wTotalLength in its
// header, though fewer bytes follow: the device is read and hashed as the
// kernel shows it, and the whole bus still lists.
func TestTrimmedConfigurationIsRead(t *testing.T) {
	f, _ := realTree(t)
	p := filepath.Join(f.Root(), "devices/pci0000:00/0000:00:01.0/usb1/1-1/descriptors")
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	before, err := f.Device("1-1")
	if err != nil {
		t.Fatal(err)
	}
	if total := int(b[20]) | int(b[21])<<8; total <= 25 || len(b) < 18+25 {
		t.Fatalf("the fixture's configuration is %d bytes of %d", total, len(b))
	}
	b[0] = 0x12 + 1 // a bLength as a quirky device sends it
	if err := os.WriteFile(p, b[:18+25], 0o644); err != nil {
		t.Fatal(err)
	}
	d, err := f.Device("1-1")
	if err != nil || d.Hash == "" || d.Hash == before.Hash {
		t.Fatalf("trimmed: %q (before %q), %v", d.Hash, before.Hash, err)
	}
	if _, err := f.Devices(); err != nil {
		t.Fatalf("the bus: %v", err)
	}
}

// A descriptors attribute that is not one is an error naming the file; a
// tree without the attribute gives no hash.
func TestBadDescriptors(t *testing.T) {
	f, _ := realTree(t)
	p := filepath.Join(f.Root(), "devices/pci0000:00/0000:00:01.0/usb1/1-1/descriptors")
	for _, b := range [][]byte{{}, {18, 1, 0}, append(make([]byte, 18), 9, 4, 200, 0, 0, 0, 0, 0, 0), append(make([]byte, 18), 9, 2, 9)} {
		if len(b) >= 18 {
			b[0], b[1] = 18, 1
		}
		os.WriteFile(p, b, 0o644)
		if _, err := f.Device("1-1"); !errors.Is(err, usbsysfs.ErrBadAttr) || !strings.Contains(err.Error(), "1-1/descriptors") {
			t.Errorf("descriptors %x: %v", b, err)
		}
	}
	os.Remove(p)
	d, err := f.Device("1-1")
	if err != nil || d.Hash != "" || d.PortPath == "" {
		t.Errorf("no descriptors: %q %q %v", d.Hash, d.PortPath, err)
	}
	root := fakekernel.TempDir(t)
	if err := fakekernel.Standard(root); err != nil {
		t.Fatal(err)
	}
	kb, err := usbsysfs.NewFS(root).Device("1-1.6")
	if err != nil || kb.PortPath != "pci-0000:00:14.0-usb-0:1.6" || kb.PortPathRev != "pci-0000:00:14.0-usbv2-0:1.6" {
		t.Errorf("built tree: %q %q %v", kb.PortPath, kb.PortPathRev, err)
	}
}

func BenchmarkIdentity(b *testing.B) {
	root := filepath.Join(b.TempDir(), "sys")
	if err := fakekernel.Copy("testdata/real/sys", root); err != nil {
		b.Fatal(err)
	}
	f := usbsysfs.NewFS(root)
	for b.Loop() {
		if _, err := f.Device("1-3.2"); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkIdentityLockWait is BenchmarkIdentity through the agent's
// reads, which wait for the device lock in a goroutine of their own: the
// difference is what that wait costs a device no driver is probing.
func BenchmarkIdentityLockWait(b *testing.B) {
	root := filepath.Join(b.TempDir(), "sys")
	if err := fakekernel.Copy("testdata/real/sys", root); err != nil {
		b.Fatal(err)
	}
	f := usbsysfs.NewFS(root).WithLockWait(usbsysfs.DefaultLockWait)
	for b.Loop() {
		if _, err := f.Device("1-3.2"); err != nil {
			b.Fatal(err)
		}
	}
}
