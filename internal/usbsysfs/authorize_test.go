package usbsysfs_test

import (
	"errors"
	"testing"

	"github.com/usbhotplugd/usbhotplugd/internal/usbsysfs"
)

// The agent's authorization calls, against the fake kernel: the default
// of a root hub, a device's and an interface's authorized.
func TestAuthorization(t *testing.T) {
	f, _ := standard(t)
	const kb = "1-1.6:1.0"
	d, err := f.Device("1-1.6")
	if err != nil || !d.Authorized || !d.Interfaces[0].Authorized {
		t.Fatalf("keyboard %+v %v: want authorized", d, err)
	}
	if on, err := f.InterfaceAuthorizedDefault("usb1"); err != nil || !on {
		t.Fatalf("default %v %v", on, err)
	}
	if err := f.SetInterfaceAuthorizedDefault("usb1", false); err != nil {
		t.Fatal(err)
	}
	if on, err := f.InterfaceAuthorizedDefault("usb1"); err != nil || on {
		t.Fatalf("default after setting it to 0: %v %v", on, err)
	}
	// A device authorized again gets deauthorized interfaces, unbound.
	if err := f.SetAuthorized("1-1.6", false); err != nil {
		t.Fatal(err)
	}
	if d, _ := f.Device("1-1.6"); d.Authorized || len(d.Interfaces) != 0 {
		t.Fatalf("deauthorized keyboard %+v", d)
	}
	if err := f.SetAuthorized("1-1.6", true); err != nil {
		t.Fatal(err)
	}
	in, err := f.Interface(kb)
	if err != nil || in.Authorized || in.Driver != "" {
		t.Fatalf("keyboard interface %+v %v: want deauthorized, no driver", in, err)
	}
	// Authorized, it is still unbound until bound or probed.
	if err := f.SetInterfaceAuthorized(kb, true); err != nil {
		t.Fatal(err)
	}
	if drv, _ := f.Driver(kb); drv != "" {
		t.Fatalf("authorizing probed %s: %q", kb, drv)
	}
	if err := f.Bind(kb, "usbback"); err != nil {
		t.Fatal(err)
	}
	// Deauthorized, it loses its driver.
	if err := f.SetInterfaceAuthorized(kb, false); err != nil {
		t.Fatal(err)
	}
	if drv, _ := f.Driver(kb); drv != "" {
		t.Fatalf("deauthorized %s still bound to %q", kb, drv)
	}
	for _, err := range []error{f.SetInterfaceAuthorizedDefault("1-1", true), f.SetAuthorized("../x", true), f.SetInterfaceAuthorized("1-1.6", true)} {
		if !errors.Is(err, usbsysfs.ErrInvalidName) {
			t.Errorf("bad name: %v", err)
		}
	}
}

// A tree from a kernel that shows no authorized attributes (the real
// capture kept none) reads as authorized, as the kernel's default is.
func TestAuthorizedByDefault(t *testing.T) {
	f, _ := realTree(t)
	d, err := f.Device("1-1")
	if err != nil || !d.Authorized || !d.Interfaces[0].Authorized {
		t.Fatalf("%+v %v", d, err)
	}
	if on, err := f.InterfaceAuthorizedDefault("usb1"); err != nil || !on {
		t.Fatalf("default %v %v", on, err)
	}
	if _, err := f.InterfaceAuthorizedDefault("usb9"); err == nil {
		t.Fatal("a root hub that is not there has a default")
	}
}
