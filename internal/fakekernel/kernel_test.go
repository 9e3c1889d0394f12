package fakekernel_test

import (
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"

	"github.com/usbhotplugd/usbhotplugd/internal/fakekernel"
	"github.com/usbhotplugd/usbhotplugd/internal/uevent"
	"github.com/usbhotplugd/usbhotplugd/internal/usbsysfs"
)

func write(t *testing.T, k *fakekernel.Kernel, f *usbsysfs.FS, rel, data string) error {
	t.Helper()
	return k.WriteAttr(filepath.Join(f.Root(), rel), []byte(data))
}

func wantErrno(t *testing.T, err error, want syscall.Errno, what string) {
	t.Helper()
	if want == 0 && err != nil || want != 0 && !errors.Is(err, want) {
		t.Errorf("%s: %v, want %v", what, err, want)
	}
}

// An interface no driver matches keeps no driver through drivers_probe,
// and usbfs, which claims devices through ioctls, binds nothing.
func TestNoDriverMatches(t *testing.T) {
	f, k := realHost(t)
	wantErrno(t, write(t, k, f, "bus/usb/drivers_probe", "4-2:1.0"), 0, "drivers_probe 4-2:1.0")
	driverIs("4-2:1.0", "")(t, f)
	wantErrno(t, write(t, k, f, "bus/usb/drivers/usbfs/bind", "4-2:1.0"), syscall.ENODEV, "bind 4-2:1.0 to usbfs")
	wantErrno(t, f.Unbind("1-1:1.0"), 0, "unbind the keyboard")
	wantErrno(t, write(t, k, f, "bus/usb/drivers/usbfs/bind", "1-1:1.0"), syscall.ENODEV, "bind the keyboard to usbfs")
	wantErrno(t, f.Probe("1-1:1.0"), 0, "probe the keyboard")
	driverIs("1-1:1.0", "usbhid")(t, f)
}

// usbback takes an interface only of a device in a port of one of its
// backends, and never a hub, a SuperSpeed device, or a high-speed device
// in a port of a USB 1.1 backend; a refusal is ENODEV to the bind write.
func TestUsbbackRefuses(t *testing.T) {
	f, k := realHost(t)
	if err := fakekernel.AddDriver(f.Root(), "usbback"); err != nil {
		t.Fatal(err)
	}
	ports := []fakekernel.UsbbackPort{{BusID: "1-1", Version: 2}, {BusID: "1-2", Version: 1}, {BusID: "1-3", Version: 2},
		{BusID: "2-4", Version: 2}, {BusID: "4-1", Version: 1}}
	k.UsbbackPorts = func() ([]fakekernel.UsbbackPort, error) { return ports, nil }
	for _, c := range []struct {
		intf string
		want syscall.Errno
		why  string
	}{
		{"1-1:1.0", 0, "a high-speed keyboard in a port of a USB 2 backend"},
		{"1-2:1.0", syscall.ENODEV, "a high-speed tablet in a port of a USB 1.1 backend"},
		{"1-3:1.0", syscall.ENODEV, "a hub"},
		{"2-4:1.0", syscall.ENODEV, "a SuperSpeed stick"},
		{"4-1:1.0", 0, "a full-speed keyboard in a port of a USB 1.1 backend"},
		{"3-2:1.0", syscall.ENODEV, "a mouse in no port"},
	} {
		drv, _ := f.Driver(c.intf)
		if drv != "" {
			if err := f.Unbind(c.intf); err != nil {
				t.Fatal(err)
			}
		}
		wantErrno(t, f.Bind(c.intf, "usbback"), c.want, c.why)
		if got := f.BoundTo(c.intf, "usbback"); got != (c.want == 0) {
			t.Errorf("%s: in usbback %v", c.why, got)
		}
	}
	// Out of the port, a device's interface found by drivers_probe goes to
	// its dom0 driver; in one with nothing else to take it, to usbback.
	ports = nil
	if err := f.Unbind("1-1:1.0"); err != nil {
		t.Fatal(err)
	}
	wantErrno(t, f.Probe("1-1:1.0"), 0, "probe")
	driverIs("1-1:1.0", "usbhid")(t, f)
	ports = []fakekernel.UsbbackPort{{BusID: "4-2", Version: 2}}
	wantErrno(t, f.Probe("4-2:1.0"), 0, "probe the card reader")
	driverIs("4-2:1.0", "usbback")(t, f)
}

// Authorization as Documentation/usb/authorization.rst describes it and a
// real kernel does it.
func TestAuthorization(t *testing.T) {
	f, k := realHost(t)
	const tablet = "1-2:1.0"
	// A deauthorized interface loses its driver and is never probed.
	wantErrno(t, write(t, k, f, "bus/usb/devices/"+tablet+"/authorized", "0"), 0, "deauthorize the tablet's interface")
	driverIs(tablet, "")(t, f)
	wantErrno(t, f.Bind(tablet, "usbhid"), syscall.ENODEV, "bind a deauthorized interface")
	wantErrno(t, f.Probe(tablet), 0, "probe a deauthorized interface")
	driverIs(tablet, "")(t, f)
	// Authorizing it probes nothing; drivers_probe then does.
	wantErrno(t, write(t, k, f, "bus/usb/devices/"+tablet+"/authorized", "1"), 0, "authorize it")
	driverIs(tablet, "")(t, f)
	wantErrno(t, f.Probe(tablet), 0, "probe it")
	driverIs(tablet, "usbhid")(t, f)
	wantErrno(t, write(t, k, f, "bus/usb/devices/"+tablet+"/authorized", "maybe"), syscall.EINVAL, "authorized = maybe")

	// With the root hub's default at 0, the interfaces a device gets when
	// it is authorized again are deauthorized and have no driver.
	wantErrno(t, write(t, k, f, "bus/usb/devices/usb1/interface_authorized_default", "0"), 0, "default 0")
	wantErrno(t, write(t, k, f, "bus/usb/devices/1-2/authorized", "0"), 0, "deauthorize the tablet")
	interfaces("1-2")(t, f)
	wantErrno(t, write(t, k, f, "bus/usb/devices/1-2/authorized", "1"), 0, "authorize the tablet")
	interfaces("1-2", tablet+"=")(t, f)
	if in, err := f.Interface(tablet); err != nil || in.Authorized {
		t.Errorf("tablet interface %+v, %v: want deauthorized", in, err)
	}
	wantErrno(t, write(t, k, f, "bus/usb/devices/"+tablet+"/authorized", "1"), 0, "authorize the interface")
	driverIs(tablet, "")(t, f)
	wantErrno(t, f.Bind(tablet, "usbhid"), 0, "bind the authorized interface")
	// Devices on other buses keep their own default.
	wantErrno(t, write(t, k, f, "bus/usb/devices/3-2/authorized", "0"), 0, "deauthorize 3-2")
	wantErrno(t, write(t, k, f, "bus/usb/devices/3-2/authorized", "1"), 0, "authorize 3-2")
	interfaces("3-2", "3-2:1.0=usbhid")(t, f)
	wantErrno(t, write(t, k, f, "bus/usb/devices/usb1/interface_authorized_default", "x"), syscall.EINVAL, "default x")
}

// Unbinding hub from a hub's interface removes the devices behind it;
// binding it back enumerates them again, with new devnums.
func TestHubRebindEnumerates(t *testing.T) {
	f, k := realHost(t)
	before, err := f.Device("1-3.2")
	if err != nil {
		t.Fatal(err)
	}
	wantErrno(t, write(t, k, f, "bus/usb/drivers/hub/unbind", "1-3:1.0"), 0, "unbind the hub")
	for _, c := range []string{"1-3.1", "1-3.1:1.0", "1-3.2", "1-3.3"} {
		if _, err := os.Lstat(filepath.Join(f.Root(), "bus/usb/devices", c)); err == nil {
			t.Errorf("%s still there", c)
		}
	}
	wantErrno(t, write(t, k, f, "bus/usb/drivers/hub/bind", "1-3:1.0"), 0, "bind the hub")
	after, err := f.Device("1-3.2")
	if err != nil {
		t.Fatal(err)
	}
	if after.DevNum == before.DevNum || after.Serial != before.Serial || len(after.Interfaces) != 1 || after.Interfaces[0].Driver != "usbhid" {
		t.Errorf("before %+v\nafter %+v", before, after)
	}
	if drv, _ := f.Driver("1-3.2"); drv != "usb" {
		t.Errorf("1-3.2 bound to %q", drv)
	}
}

// A device plugged while its root hub's default is 0 comes with inert
// interfaces: no driver probed them.
func TestPlugUnderAuthorizationDefault(t *testing.T) {
	root := fakekernel.TempDir(t)
	if err := fakekernel.Standard(root); err != nil {
		t.Fatal(err)
	}
	k := fakekernel.NewKernel(root)
	f := usbsysfs.NewFS(root).WithWriter(k)
	if err := f.SetInterfaceAuthorizedDefault("usb1", false); err != nil {
		t.Fatal(err)
	}
	b := &fakekernel.Builder{Root: root}
	if err := b.Add(fakekernel.Dev{BusID: "1-7", DevNum: 20, Vendor: "046d", Product: "c31c", Class: "00",
		Interfaces: []fakekernel.Intf{{Class: "03", SubClass: "01", Protocol: "01", Driver: "usbhid"}}}).Err(); err != nil {
		t.Fatal(err)
	}
	in, err := f.Interface("1-7:1.0")
	if err != nil || in.Authorized || in.Driver != "" {
		t.Fatalf("%+v %v: want deauthorized, unbound", in, err)
	}
	if kb, _ := f.Interface("1-1.6:1.0"); !kb.Authorized || kb.Driver != "usbhid" {
		t.Fatalf("an interface made before the default changed: %+v", kb)
	}
	if err := f.SetInterfaceAuthorized("1-7:1.0", true); err != nil {
		t.Fatal(err)
	}
	if err := f.Probe("1-7:1.0"); err != nil {
		t.Fatal(err)
	}
	driverIs("1-7:1.0", "usbhid")(t, f)
}

// A device unplugged while deauthorized takes its interfaces with it: the
// device plugged next into that port has only its own.
func TestUnplugForgetsInterfaces(t *testing.T) {
	root := fakekernel.TempDir(t)
	if err := fakekernel.Standard(root); err != nil {
		t.Fatal(err)
	}
	k := fakekernel.NewKernel(root)
	f := usbsysfs.NewFS(root).WithWriter(k)
	if err := f.SetAuthorized("1-2", false); err != nil {
		t.Fatal(err)
	}
	if err := k.Unplug("1-2"); err != nil {
		t.Fatal(err)
	}
	b := &fakekernel.Builder{Root: root}
	if err := b.Add(fakekernel.Dev{BusID: "1-2", DevNum: 21, Vendor: "046d", Product: "c31c", Class: "00",
		Interfaces: []fakekernel.Intf{{Class: "03", SubClass: "01", Protocol: "01", Driver: "usbhid"}}}).Err(); err != nil {
		t.Fatal(err)
	}
	if err := f.SetAuthorized("1-2", false); err != nil {
		t.Fatal(err)
	}
	if err := f.SetAuthorized("1-2", true); err != nil {
		t.Fatal(err)
	}
	interfaces("1-2", "1-2:1.0=usbhid")(t, f)
}

// With the root hub's authorized_default at 0, a device plugged is not
// authorized and has no interfaces; authorized, it gets them, probed.
func TestPlugUnderDeviceAuthorizationDefault(t *testing.T) {
	f, k := realHost(t)
	wantErrno(t, write(t, k, f, "bus/usb/devices/usb1/authorized_default", "0"), 0, "authorized_default 0")
	wantErrno(t, write(t, k, f, "bus/usb/devices/usb1/authorized_default", "3"), syscall.EINVAL, "authorized_default 3")
	if err := k.Plug(fakekernel.Dev{BusID: "1-6", DevNum: 7, Vendor: "0627", Product: "0001", Class: "00",
		Interfaces: []fakekernel.Intf{{Class: "03", SubClass: "01", Protocol: "02", Driver: "usbhid"}}}); err != nil {
		t.Fatal(err)
	}
	d, err := f.Device("1-6")
	if err != nil || d.Authorized || len(d.Interfaces) != 0 {
		t.Fatalf("%+v %v: want unauthorized, no interfaces", d, err)
	}
	if err := f.SetAuthorized("1-6", true); err != nil {
		t.Fatal(err)
	}
	interfaces("1-6", "1-6:1.0=usbhid")(t, f)
}

// A hub at the deepest tier is refused by the hub driver (E2BIG): no
// device could hang from it.
func TestHubTooDeep(t *testing.T) {
	root := fakekernel.TempDir(t)
	b := &fakekernel.Builder{Root: root}
	b.Add(fakekernel.Dev{BusID: "usb1", DevNum: 1, Vendor: "1d6b", Product: "0002", Class: "09", Interfaces: fakekernel.Hub})
	for i, id := range []string{"1-1", "1-1.1", "1-1.1.1", "1-1.1.1.1", "1-1.1.1.1.1"} {
		b.Add(fakekernel.Dev{BusID: id, DevNum: 2 + i, Vendor: "05e3", Product: "0610", Class: "09", Interfaces: fakekernel.Hub})
	}
	b.Add(fakekernel.Dev{BusID: "1-1.1.1.1.1.1", DevNum: 7, Vendor: "05e3", Product: "0610", Class: "09",
		Interfaces: []fakekernel.Intf{{Class: "09", SubClass: "00", Protocol: "00"}}})
	if b.Err() != nil {
		t.Fatal(b.Err())
	}
	k := fakekernel.NewKernel(root)
	f := usbsysfs.NewFS(root).WithWriter(k)
	wantErrno(t, f.Bind("1-1.1.1.1.1.1:1.0", "hub"), syscall.E2BIG, "a hub six ports deep")
	wantErrno(t, f.Unbind("1-1.1.1.1.1:1.0"), 0, "unbind a hub five deep")
	wantErrno(t, f.Bind("1-1.1.1.1.1:1.0", "hub"), 0, "bind it back")
}

// A host controller that comes later (a Thunderbolt dock's xHCI, behind
// PCIe bridges): its root hub is plugged as the kernel registers one (add,
// its hub interface's add and bind, its bind), and the devices plugged
// into it go under it, with the port path of that controller.
func TestPlugAController(t *testing.T) {
	root := fakekernel.TempDir(t)
	if err := fakekernel.Standard(root); err != nil {
		t.Fatal(err)
	}
	k := fakekernel.NewKernel(root)
	f := usbsysfs.NewFS(root).WithWriter(k)
	var got []string
	k.OnEvent = func(e uevent.Event) { got = append(got, e.Action+" "+e.DevPath+" "+e.Driver()) }
	const ctrl = "devices/pci0000:00/0000:00:07.0/0000:03:00.0/0000:04:01.0/0000:05:00.0"
	if err := k.Plug(fakekernel.Dev{BusID: "usb3", DevNum: 1, Vendor: "1d6b", Product: "0002", Class: "09", Serial: "0000:05:00.0",
		Controller: ctrl, Interfaces: fakekernel.Hub}); err != nil {
		t.Fatal(err)
	}
	want := []string{"add /" + ctrl + "/usb3 ", "add /" + ctrl + "/usb3/3-0:1.0 ", "bind /" + ctrl + "/usb3/3-0:1.0 hub", "bind /" + ctrl + "/usb3 usb"}
	if !slices.Equal(got, want) {
		t.Errorf("the root hub's events: %q, want %q", got, want)
	}
	if err := k.Plug(fakekernel.Dev{BusID: "3-1", DevNum: 2, Vendor: "046d", Product: "c31c", Class: "00",
		Interfaces: []fakekernel.Intf{{Class: "03", SubClass: "01", Protocol: "01", Driver: "usbhid"}}}); err != nil {
		t.Fatal(err)
	}
	d, err := f.Device("3-1")
	if err != nil || d.PortPath != "pci-0000:05:00.0-usb-0:1" || len(d.Interfaces) != 1 || d.Interfaces[0].Driver != "usbhid" {
		t.Fatalf("the device behind the dock: %+v %v", d, err)
	}
	if p, err := f.DevPath("3-1"); err != nil || p != "/"+ctrl+"/usb3/3-1" {
		t.Errorf("its devpath: %q %v", p, err)
	}
}

// A device with two configurations: writing bConfigurationValue removes
// the interfaces of the one it has (their drivers unbound) and adds the
// other's, named by its value ("1-7:2.0"), probed; writing the value it
// has does the same (usb_set_configuration tears down first); a value it
// has not is EINVAL; 0 leaves it with no configuration, bConfigurationValue
// and bNumInterfaces empty.
func TestConfigurations(t *testing.T) {
	f, k := realHost(t)
	var got []string
	k.OnEvent = func(e uevent.Event) { got = append(got, e.Action+" "+e.Name()+" "+e.Driver()) }
	if err := k.Plug(fakekernel.Dev{BusID: "1-7", DevNum: 9, Vendor: "12d1", Product: "1446", Class: "00",
		Interfaces: []fakekernel.Intf{{Class: "08", SubClass: "06", Protocol: "50", Driver: "usb-storage"}},
		Configs:    [][]fakekernel.Intf{{{Class: "ff", SubClass: "ff", Protocol: "ff"}, {Class: "03", SubClass: "01", Protocol: "01", Driver: "usbhid"}}}}); err != nil {
		t.Fatal(err)
	}
	step := func(what, value string, errno syscall.Errno, want ...string) {
		t.Helper()
		got = nil
		wantErrno(t, write(t, k, f, "bus/usb/devices/1-7/bConfigurationValue", value), errno, what)
		if !slices.Equal(got, want) {
			t.Errorf("%s: events %q, want %q", what, got, want)
		}
	}
	interfaces("1-7", "1-7:1.0=usb-storage")(t, f)
	step("configuration 2", "2", 0, "unbind 1-7:1.0 ", "remove 1-7:1.0 ", "add 1-7:2.0 ", "add 1-7:2.1 ", "bind 1-7:2.1 usbhid")
	interfaces("1-7", "1-7:2.0=", "1-7:2.1=usbhid")(t, f)
	if d, err := f.Device("1-7"); err != nil || d.NumConfigs != 2 || d.NumInterfaces != 2 {
		t.Errorf("in configuration 2: %+v %v", d, err)
	}
	step("configuration 2 again", "2\n", 0, "remove 1-7:2.0 ", "unbind 1-7:2.1 ", "remove 1-7:2.1 ", "add 1-7:2.0 ", "add 1-7:2.1 ", "bind 1-7:2.1 usbhid")
	step("configuration 3", "3", syscall.EINVAL)
	step("configuration 1", "1", 0, "remove 1-7:2.0 ", "unbind 1-7:2.1 ", "remove 1-7:2.1 ", "add 1-7:1.0 ", "bind 1-7:1.0 usb-storage")
	interfaces("1-7", "1-7:1.0=usb-storage")(t, f)
	step("no configuration", "0", 0, "unbind 1-7:1.0 ", "remove 1-7:1.0 ")
	for _, a := range []string{"bConfigurationValue", "bNumInterfaces"} {
		if b, err := os.ReadFile(filepath.Join(f.Root(), "bus/usb/devices/1-7", a)); err != nil || len(b) != 0 {
			t.Errorf("%s of an unconfigured device: %q %v, want empty", a, b, err)
		}
	}
	if d, err := f.Device("1-7"); err != nil || d.NumInterfaces != 0 || len(d.Interfaces) != 0 {
		t.Errorf("unconfigured: %+v %v", d, err)
	}
}

// A reset (usb_reset_device): a driver without pre_reset and post_reset
// (usbback) is unbound and the interface probed again, by whichever driver
// takes it first; usbhid keeps its interface through it; the devnum stays.
func TestReset(t *testing.T) {
	f, k := realHost(t)
	var got []string
	k.OnEvent = func(e uevent.Event) { got = append(got, e.Action+" "+e.Name()+" "+e.Driver()) }
	if err := k.Plug(fakekernel.Dev{BusID: "1-7", DevNum: 9, Vendor: "1234", Product: "0001", Class: "00",
		Interfaces: []fakekernel.Intf{{Class: "03", SubClass: "01", Protocol: "01", Driver: "usbhid"}, {Class: "ff", SubClass: "ff", Protocol: "ff"}, {Class: "03", SubClass: "00", Protocol: "00", Driver: "usbhid"}}}); err != nil {
		t.Fatal(err)
	}
	wantErrno(t, f.UnbindFrom("1-7:1.0", "usbhid"), 0, "unbind 1-7:1.0")
	for _, in := range []string{"1-7:1.0", "1-7:1.1"} {
		wantErrno(t, f.Bind(in, "usbback"), 0, "bind "+in+" to usbback")
	}
	got = nil
	if err := k.Reset("1-7"); err != nil {
		t.Fatal(err)
	}
	want := []string{"unbind 1-7:1.0 ", "unbind 1-7:1.1 ", "bind 1-7:1.0 usbhid"}
	if !slices.Equal(got, want) {
		t.Errorf("the reset's events: %q, want %q", got, want)
	}
	interfaces("1-7", "1-7:1.0=usbhid", "1-7:1.1=", "1-7:1.2=usbhid")(t, f)
	if d, err := f.Device("1-7"); err != nil || d.DevNum != 9 {
		t.Errorf("after the reset: %+v %v", d, err)
	}
	// usbback taking its own back when its port table has the device.
	k.UsbbackPorts = func() ([]fakekernel.UsbbackPort, error) {
		return []fakekernel.UsbbackPort{{BusID: "1-7", Version: 2}}, nil
	}
	wantErrno(t, f.Bind("1-7:1.1", "usbback"), 0, "bind 1-7:1.1 to usbback")
	got = nil
	if err := k.Reset("1-7"); err != nil {
		t.Fatal(err)
	}
	if want := []string{"unbind 1-7:1.1 ", "bind 1-7:1.1 usbback"}; !slices.Equal(got, want) {
		t.Errorf("the reset's events, usbback knowing the port: %q, want %q", got, want)
	}
}

// A device whose configuration can wake the host (a keyboard) loses its
// wakeup attributes when it is unconfigured (usb_set_device_state to
// ADDRESS), and the kernel announces that with a change event after the
// interfaces' removal, as it announces their coming before the
// interfaces' add: an admin's bConfigurationValue 0 then 1, or
// authorized 0 then 1, gives remove, change, change, add, as the real
// kernel's trace of test/vm/scenarios/config.scn and authorized.scn shows.
// An unplug sends no change.
func TestWakeupChangeOnUnconfigure(t *testing.T) {
	f, k := realHost(t)
	var got []string
	k.OnEvent = func(e uevent.Event) { got = append(got, e.Action+" "+e.Name()+" "+e.Driver()) }
	if err := k.Plug(fakekernel.Dev{BusID: "1-7", DevNum: 9, Vendor: "0627", Product: "0001", Class: "00", Wakeup: true,
		Interfaces: []fakekernel.Intf{{Class: "03", SubClass: "01", Protocol: "01", Driver: "usbhid"}}}); err != nil {
		t.Fatal(err)
	}
	for _, attr := range []string{"bConfigurationValue", "authorized"} {
		got = nil
		wantErrno(t, write(t, k, f, "bus/usb/devices/1-7/"+attr, "0"), 0, attr+" 0")
		wantErrno(t, write(t, k, f, "bus/usb/devices/1-7/"+attr, "1"), 0, attr+" 1")
		want := []string{"unbind 1-7:1.0 ", "remove 1-7:1.0 ", "change 1-7 usb", "change 1-7 usb", "add 1-7:1.0 ", "bind 1-7:1.0 usbhid"}
		if !slices.Equal(got, want) {
			t.Errorf("%s 0 then 1: events %q, want %q", attr, got, want)
		}
	}
	got = nil
	if err := k.Unplug("1-7"); err != nil {
		t.Fatal(err)
	}
	if slices.ContainsFunc(got, func(e string) bool { return strings.HasPrefix(e, "change") }) {
		t.Errorf("unplugged: events %q, want no change", got)
	}
}

// The driver of a configuration's first interface claims the interfaces
// Claimed names in every configuration: usb-net's RNDIS configuration 2,
// as its CDC Ethernet configuration 1 (rndis_host claims 2.1 in its probe
// of 2.0, the real kernel's trace of test/vm/scenarios/config.scn shows).
func TestClaimedInEveryConfiguration(t *testing.T) {
	f, k := realHost(t)
	for _, drv := range []string{"cdc_ether", "rndis_host"} {
		if err := os.MkdirAll(filepath.Join(f.Root(), "bus/usb/drivers", drv), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	var got []string
	k.OnEvent = func(e uevent.Event) { got = append(got, e.Action+" "+e.Name()+" "+e.Driver()) }
	if err := k.Plug(fakekernel.Dev{BusID: "1-7", DevNum: 9, Vendor: "0525", Product: "a4a2", Class: "02",
		Interfaces: []fakekernel.Intf{{Class: "02", SubClass: "06", Protocol: "00", Driver: "cdc_ether"}, {Class: "0a", SubClass: "00", Protocol: "00", Driver: "cdc_ether"}},
		Configs:    [][]fakekernel.Intf{{{Class: "02", SubClass: "02", Protocol: "ff", Driver: "rndis_host"}, {Class: "0a", SubClass: "00", Protocol: "00", Driver: "rndis_host"}}},
		Claimed:    []int{1}}); err != nil {
		t.Fatal(err)
	}
	got = nil
	wantErrno(t, write(t, k, f, "bus/usb/devices/1-7/bConfigurationValue", "2"), 0, "configuration 2")
	if i := slices.Index(got, "add 1-7:2.0 "); i >= 0 {
		got = got[i:]
	}
	want := []string{"add 1-7:2.0 ", "bind 1-7:2.0 rndis_host", "add 1-7:2.1 rndis_host", "bind 1-7:2.1 rndis_host"}
	if !slices.Equal(got, want) {
		t.Errorf("configuration 2: events %q, want %q", got, want)
	}
	interfaces("1-7", "1-7:2.0=rndis_host", "1-7:2.1=rndis_host")(t, f)
}
