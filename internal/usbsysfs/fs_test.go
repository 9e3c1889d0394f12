package usbsysfs_test

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"

	"github.com/usbhotplugd/usbhotplugd/internal/fakekernel"
	"github.com/usbhotplugd/usbhotplugd/internal/usbsysfs"
)

func standard(t testing.TB) (*usbsysfs.FS, *fakekernel.Kernel) {
	root := t.TempDir()
	if err := fakekernel.Standard(root); err != nil {
		t.Fatal(err)
	}
	k := fakekernel.NewKernel(root)
	return usbsysfs.NewFS(root).WithWriter(k), k
}

// realTree is a copy of the sysfs of a real kernel (shared/real-kernel).
func realTree(t testing.TB) (*usbsysfs.FS, *fakekernel.Kernel) {
	root := filepath.Join(t.TempDir(), "sys")
	if err := fakekernel.Copy("testdata/real/sys", root); err != nil {
		t.Fatal(err)
	}
	if err := fakekernel.AddDriver(root, "usbback"); err != nil {
		t.Fatal(err)
	}
	k := fakekernel.NewKernel(root)
	return usbsysfs.NewFS(root).WithWriter(k), k
}

func TestRealKernelTree(t *testing.T) {
	f, _ := realTree(t)
	devs, err := f.Devices()
	if err != nil {
		t.Fatal(err)
	}
	var ids []string
	for _, d := range devs {
		ids = append(ids, d.BusID)
	}
	want := []string{"usb1", "1-1", "1-2", "1-3", "1-3.1", "1-3.2", "1-3.3", "usb2", "2-4", "2-5", "usb3", "3-1", "3-2", "usb4", "4-1", "4-2"}
	if !slices.Equal(ids, want) {
		t.Fatalf("devices %v, want parents before children %v", ids, want)
	}
	d, err := f.Device("1-1")
	if err != nil {
		t.Fatal(err)
	}
	if d.ID() != "0627:0001" || d.BusNum != 1 || d.NumInterfaces != 1 || d.Version != "2.00" || d.ProductName != "QEMU USB Keyboard" || d.Parent != "usb1" {
		t.Fatalf("keyboard %+v", d)
	}
	if len(d.Interfaces) != 1 || d.Interfaces[0].Name != "1-1:1.0" || d.Interfaces[0].Class != 3 || d.Interfaces[0].Driver != "usbhid" {
		t.Fatalf("keyboard interfaces %+v", d.Interfaces)
	}
	hub, err := f.Device("1-3")
	if err != nil || !hub.IsHub() {
		t.Fatalf("hub %+v %v", hub, err)
	}
	child, _ := f.Device("1-3.2")
	if child.Parent != "1-3" || child.Serial != "MOUSE-DUP" {
		t.Fatalf("child %+v", child)
	}
	root, _ := f.Device("usb2")
	if !root.IsRootHub() || root.Serial != "0000:00:01.0" || len(root.Interfaces) != 1 || root.Interfaces[0].Name != "2-0:1.0" {
		t.Fatalf("root hub %+v", root)
	}
	// The interfaces of 1-3 are its own, not those of 1-3.1.
	ifs, _ := f.Interfaces("1-3")
	if len(ifs) != 1 || ifs[0].Name != "1-3:1.0" {
		t.Fatalf("hub interfaces %+v", ifs)
	}
}

// A root hub's interface (1-0:1.0) belongs to the root hub, never to a
// device 1-0, which no kernel makes: on a real kernel's tree, every
// interface is its device's.
func TestRootHubInterfaces(t *testing.T) {
	f, _ := realTree(t)
	des, err := os.ReadDir(filepath.Join(f.Root(), "bus/usb/devices"))
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, de := range des {
		if usbsysfs.ValidInterface(de.Name()) != nil {
			continue
		}
		dev := usbsysfs.InterfaceBusID(de.Name())
		ifs, err := f.Interfaces(dev)
		if err != nil {
			t.Fatalf("%s: device %q: %v", de.Name(), dev, err)
		}
		if !slices.ContainsFunc(ifs, func(in usbsysfs.Interface) bool { return in.Name == de.Name() }) {
			t.Errorf("%s is not among the interfaces of %s: %v", de.Name(), dev, ifs)
		}
		n++
	}
	if n != 16 {
		t.Errorf("%d interfaces", n)
	}
	if got := usbsysfs.InterfaceBusID("1-0:1.0"); got != "usb1" {
		t.Errorf("InterfaceBusID(1-0:1.0) = %q", got)
	}
	if _, err := f.Device("1-0"); !errors.Is(err, usbsysfs.ErrInvalidName) {
		t.Errorf("Device(1-0): %v", err)
	}
}

func TestBusIDByAddr(t *testing.T) {
	f, _ := standard(t)
	id, err := f.BusIDByAddr(1, 6)
	if err != nil || id != "1-1.6" {
		t.Fatalf("BusIDByAddr(1,6) = %q, %v", id, err)
	}
	for _, c := range [][2]int{{1, 99}, {0, 6}, {1, 0}, {9, 1}} {
		if _, err := f.BusIDByAddr(c[0], c[1]); !errors.Is(err, fs.ErrNotExist) {
			t.Errorf("BusIDByAddr%v: %v, want ErrNotExist", c, err)
		}
	}
}

// A tree with /sys/dev/char is looked up through it; a link that names
// another device, or none, leaves the device to the scan.
func TestBusIDByAddrDevt(t *testing.T) {
	f, _ := standard(t)
	char := filepath.Join(f.Root(), "dev", "char")
	if err := os.MkdirAll(char, 0o755); err != nil {
		t.Fatal(err)
	}
	link := func(minor, busid string) {
		t.Helper()
		target, err := os.Readlink(filepath.Join(f.Root(), "bus/usb/devices", busid))
		if err != nil {
			t.Fatal(err)
		}
		target = filepath.Join("../../bus/usb/devices", target)
		if err := os.Symlink(target, filepath.Join(char, "189:"+minor)); err != nil {
			t.Fatal(err)
		}
	}
	link("5", "1-1.6") // bus 1, addr 6
	link("0", "1-1.6") // bus 1, addr 1: the numbers read back do not agree
	for _, c := range []struct {
		bus, addr int
		want      string
	}{{1, 6, "1-1.6"}, {1, 1, "usb1"}} {
		if id, err := f.BusIDByAddr(c.bus, c.addr); err != nil || id != c.want {
			t.Errorf("BusIDByAddr(%d, %d) = %q, %v; want %s", c.bus, c.addr, id, err, c.want)
		}
	}
}

func TestNamesValidated(t *testing.T) {
	good := []string{"usb1", "1-1", "1-1.6", "3-11", "12-1.2.3.4.5.6"}
	bad := []string{"", "../", "1-1/../..", "usb", "usb0", "0-1", "1-", "1-1.", "1-1..2", "-1", "1-01", "1-1.6:1.0", "a-1", "1-1.2.3.4.5.6.7", "1-0", "1-32", "usb64", "usb1 ", "1-1\n"}
	for _, s := range good {
		if err := usbsysfs.ValidBusID(s); err != nil {
			t.Errorf("ValidBusID(%q): %v", s, err)
		}
	}
	for _, s := range bad {
		if err := usbsysfs.ValidBusID(s); !errors.Is(err, usbsysfs.ErrInvalidName) {
			t.Errorf("ValidBusID(%q) = %v, want ErrInvalidName", s, err)
		}
	}
	for _, s := range []string{"3-11:1.0", "1-0:1.0", "1-1.6:2.13"} {
		if err := usbsysfs.ValidInterface(s); err != nil {
			t.Errorf("ValidInterface(%q): %v", s, err)
		}
	}
	for _, s := range []string{"3-11", "usb1:1.0", "../x:1.0", "1-1:1", "1-1:1.0/..", "1-1:.0"} {
		if err := usbsysfs.ValidInterface(s); !errors.Is(err, usbsysfs.ErrInvalidName) {
			t.Errorf("ValidInterface(%q) = %v", s, err)
		}
	}
	f, _ := standard(t)
	if _, err := f.Device("../../etc"); !errors.Is(err, usbsysfs.ErrInvalidName) {
		t.Fatalf("Device(../../etc): %v", err)
	}
	if err := f.BindPath("1-1.6:1.0", "/etc"); !errors.Is(err, usbsysfs.ErrInvalidName) {
		t.Fatalf("BindPath outside drivers: %v", err)
	}
}

func TestBindUnbindWithKernelErrors(t *testing.T) {
	f, k := standard(t)
	const kb = "1-1.6:1.0"
	if err := f.Unbind(kb); err != nil {
		t.Fatal(err)
	}
	if drv, _ := f.Driver(kb); drv != "" {
		t.Fatalf("driver after unbind %q", drv)
	}
	// No driver: the unbind file is not there.
	if err := f.Unbind(kb); !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("unbind of an unbound interface: %v", err)
	}
	// A driver that does not serve the interface: ENODEV.
	if err := f.Bind(kb, "usb-storage"); !errors.Is(err, syscall.ENODEV) {
		t.Fatalf("bind to usb-storage: %v", err)
	}
	if err := f.Bind(kb, "usbback"); err != nil {
		t.Fatal(err)
	}
	if !f.BoundTo(kb, "usbback") {
		t.Fatal("not bound to usbback")
	}
	// Already bound: EBUSY, with the path in the error.
	err := f.Bind(kb, "usbhid")
	var pe *fs.PathError
	if !errors.Is(err, syscall.EBUSY) || !errors.As(err, &pe) || filepath.Base(pe.Path) != "bind" {
		t.Fatalf("bind when bound: %v", err)
	}
	if err := f.Bind("9-9:9.9", "usbhid"); !errors.Is(err, syscall.ENODEV) {
		t.Fatalf("bind of a missing interface: %v", err)
	}
	want := []fakekernel.Write{
		{Path: "bus/usb/drivers/usbhid/unbind", Data: kb},
		{Path: "bus/usb/drivers/usb-storage/bind", Data: kb},
		{Path: "bus/usb/drivers/usbback/bind", Data: kb},
		{Path: "bus/usb/drivers/usbhid/bind", Data: kb},
		{Path: "bus/usb/drivers/usbhid/bind", Data: "9-9:9.9"},
	}
	if got := k.Writes(); !slices.Equal(got, want) {
		t.Fatalf("writes %v\nwant %v", got, want)
	}
}

// UnbindFrom unbinds only from the driver it names: an interface another
// driver has now is refused (ENODEV) and keeps that driver.
func TestUnbindFromNamesTheDriver(t *testing.T) {
	f, k := standard(t)
	const kb = "1-1.6:1.0"
	if err := f.UnbindFrom(kb, "usbback"); !errors.Is(err, syscall.ENODEV) {
		t.Fatalf("unbind from usbback of an interface usbhid has: %v", err)
	}
	if !f.BoundTo(kb, "usbhid") {
		t.Fatal("usbhid lost the interface")
	}
	if err := f.UnbindFrom(kb, "usbhid"); err != nil {
		t.Fatal(err)
	}
	if drv, _ := f.Driver(kb); drv != "" {
		t.Fatalf("driver after unbind %q", drv)
	}
	if err := f.UnbindFrom(kb, "../usbhid"); !errors.Is(err, usbsysfs.ErrInvalidName) {
		t.Fatalf("unbind from a path: %v", err)
	}
	want := []fakekernel.Write{{Path: "bus/usb/drivers/usbback/unbind", Data: kb}, {Path: "bus/usb/drivers/usbhid/unbind", Data: kb}}
	if got := k.Writes(); !slices.Equal(got, want) {
		t.Fatalf("writes %v\nwant %v", got, want)
	}
}

func TestQuirks(t *testing.T) {
	f, _ := standard(t)
	root := f.Root()
	dir := filepath.Join(root, "bus/usb/devices/1-1.6")
	// bNumInterfaces has a leading space, as in a real kernel.
	d, err := f.Device("1-1.6")
	if err != nil || d.NumInterfaces != 1 || d.Serial != "" {
		t.Fatalf("keyboard %+v %v", d, err)
	}
	// A malformed hex attribute names the file.
	os.WriteFile(filepath.Join(dir, "idVendor"), []byte("zz\n"), 0o644)
	if _, err := f.Device("1-1.6"); err == nil || !strings.Contains(err.Error(), "idVendor") {
		t.Fatalf("bad idVendor: %v", err)
	}
	// A device that vanished: ErrNotExist.
	os.Remove(filepath.Join(root, "bus/usb/devices/1-2"))
	if _, err := f.Device("1-2"); !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("vanished device: %v", err)
	}
}

func BenchmarkScan200(b *testing.B) {
	root := b.TempDir()
	bld := &fakekernel.Builder{Root: root}
	bld.Add(fakekernel.Dev{BusID: "usb1", DevNum: 1, Vendor: "1d6b", Product: "0002", Class: "09", Interfaces: fakekernel.Hub})
	n := 2
	for h := 1; h <= 14; h++ {
		bld.Add(fakekernel.Dev{BusID: fmt.Sprintf("1-%d", h), DevNum: n, Vendor: "05e3", Product: "0610", Class: "09", Interfaces: fakekernel.Hub})
		n++
		for p := 1; p <= 14 && n <= 201; p++ {
			bld.Add(fakekernel.Dev{BusID: fmt.Sprintf("1-%d.%d", h, p), DevNum: n, Vendor: "046d", Product: "c31c", Class: "00",
				Serial: fmt.Sprint(n), Interfaces: []fakekernel.Intf{{Class: "03", SubClass: "01", Protocol: "01", Driver: "usbhid"}}})
			n++
		}
	}
	if bld.Err() != nil {
		b.Fatal(bld.Err())
	}
	f := usbsysfs.NewFS(root)
	b.ReportAllocs()
	for b.Loop() {
		devs, err := f.Devices()
		if err != nil || len(devs) < 200 {
			b.Fatalf("%d devices, %v", len(devs), err)
		}
	}
}

// A storage stick's disks, as the kernel lays them out under its
// interface; other devices have none.
func TestBlockDevs(t *testing.T) {
	root := fakekernel.TempDir(t)
	if err := fakekernel.Standard(root); err != nil {
		t.Fatal(err)
	}
	f := usbsysfs.NewFS(root)
	if bs, err := f.BlockDevs("1-3"); err != nil || len(bs) != 0 {
		t.Fatalf("before the disk is made: %v %v", bs, err)
	}
	err := (&fakekernel.Builder{Root: root}).AddDisk("1-3:1.0", fakekernel.Disk{Name: "sde", Dev: "8:64",
		Parts: []fakekernel.Disk{{Name: "sde1", Dev: "8:65"}, {Name: "sde2", Dev: "8:66", Holders: []string{"dm-0"}}}}).Err()
	if err != nil {
		t.Fatal(err)
	}
	bs, err := f.BlockDevs("1-3")
	if err != nil {
		t.Fatal(err)
	}
	got := fmt.Sprint(bs)
	if want := "[{sde 8:64 [] true} {sde1 8:65 [] false} {sde2 8:66 [dm-0] false}]"; got != want {
		t.Errorf("BlockDevs = %s, want %s", got, want)
	}
	if bs, err := f.BlockDevs("1-2"); err != nil || len(bs) != 0 {
		t.Errorf("audio: %v %v", bs, err)
	}
	if _, err := f.BlockDevs("../x"); !errors.Is(err, usbsysfs.ErrInvalidName) {
		t.Errorf("bad busid: %v", err)
	}
	// A dev attribute that is not MAJOR:MINOR is an error naming it.
	dev := filepath.Join(root, "devices/pci0000:00/0000:00:14.0/usb1/1-3/1-3:1.0/host4/target4:0:0/4:0:0:0/block/sde/dev")
	if err := os.WriteFile(dev, []byte("8:x\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := f.BlockDevs("1-3"); !errors.Is(err, usbsysfs.ErrBadAttr) || !strings.Contains(err.Error(), "sde/dev") {
		t.Errorf("bad dev: %v", err)
	}
}

// One device whose attributes cannot be read (one the kernel answers
// with an error, one malformed) is left out of the scan and named; the
// rest of the bus is still listed.
func TestDevicesLeavesOutAnUnreadableDevice(t *testing.T) {
	f, _ := realTree(t)
	dev := func(busid string) string { return filepath.Join(f.Root(), "bus/usb/devices", busid) }
	if err := os.WriteFile(filepath.Join(dev("1-2"), "busnum"), []byte("one\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	// A directory in a file's place: its read fails (EISDIR), also as root.
	serial := filepath.Join(dev("1-3.2"), "serial")
	if err := os.Remove(serial); err != nil && !errors.Is(err, fs.ErrNotExist) {
		t.Fatal(err)
	}
	if err := os.Mkdir(serial, 0o755); err != nil {
		t.Fatal(err)
	}
	devs, err := f.Devices()
	var u *usbsysfs.UnreadableError
	if !errors.As(err, &u) {
		t.Fatalf("Devices: %v, want an UnreadableError", err)
	}
	var left []string
	for _, d := range u.Devices {
		left = append(left, d.BusID)
	}
	if !slices.Equal(left, []string{"1-2", "1-3.2"}) {
		t.Errorf("left out %v, want [1-2 1-3.2]", left)
	}
	if !errors.Is(err, syscall.EISDIR) || !strings.Contains(err.Error(), "1-2/busnum") || !strings.Contains(err.Error(), "device 1-3.2 could not be read") {
		t.Errorf("error %q names neither the devices nor their attributes", err)
	}
	var ids []string
	for _, d := range devs {
		ids = append(ids, d.BusID)
	}
	want := []string{"usb1", "1-1", "1-3", "1-3.1", "1-3.3", "usb2", "2-4", "2-5", "usb3", "3-1", "3-2", "usb4", "4-1", "4-2"}
	if !slices.Equal(ids, want) {
		t.Errorf("devices %v, want every other one %v", ids, want)
	}
	unread, rest := usbsysfs.Partial(err)
	if len(unread) != 2 || rest != nil {
		t.Errorf("Partial: %v, %v", unread, rest)
	}
	if !errors.Is(usbsysfs.UnreadOf(unread, "1-3.2"), syscall.EISDIR) || usbsysfs.UnreadOf(unread, "1-1") != nil {
		t.Errorf("UnreadOf: %v, %v", usbsysfs.UnreadOf(unread, "1-3.2"), usbsysfs.UnreadOf(unread, "1-1"))
	}
	if _, rest := usbsysfs.Partial(fs.ErrPermission); rest != fs.ErrPermission {
		t.Errorf("Partial of another error: %v", rest)
	}
}
