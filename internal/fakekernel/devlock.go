package fakekernel

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
)

// HoldDevice takes the device lock of busid in the tree at root, as the
// real kernel holds it while drivers probe the device's interfaces (or a
// child of the hub: the hub's lock is held through its enumeration), and
// while it resets the device: the attributes that need the lock (serial,
// manufacturer, product, bConfigurationValue, bNumInterfaces) cannot be
// read, and drivers cannot be bound to or unbound from its interfaces,
// until release. Any Kernel over the tree, in any process, waits for it.
func HoldDevice(root, busid string) (release func(), err error) {
	return lockFile(root, busid)
}

func lockFile(root, busid string) (func(), error) {
	if !validDevice(busid) {
		return nil, fmt.Errorf("fakekernel: %q is no device", busid)
	}
	f, err := os.OpenFile(filepath.Join(root, ".device."+busid+".lock"), os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, fmt.Errorf("fakekernel: %w", err)
	}
	for {
		err = syscall.Flock(int(f.Fd()), syscall.LOCK_EX)
		if err != syscall.EINTR {
			break
		}
	}
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("fakekernel: lock %s: %w", f.Name(), err)
	}
	return func() { f.Close() }, nil
}

// LockDevice implements usbsysfs.DeviceLocker: it waits while the device
// is held (HoldDevice). A tree where the lock cannot be taken (read-only)
// locks nothing.
func (k *Kernel) LockDevice(busid string) (unlock func()) {
	u, err := lockFile(k.root, busid)
	if err != nil {
		return func() {}
	}
	return u
}

// lockedBy is the device whose lock a write to the attribute at path
// takes, as the real kernel takes it: a driver's bind or unbind of an
// interface, by the driver's directory or by the interface's driver link,
// and drivers_probe, take its device's (the USB bus needs the parent's
// lock); an interface's authorized its device's (as
// usb_deauthorize_interface does); a device's authorized and
// bConfigurationValue its own. "" when it takes none.
func lockedBy(path, data string) string {
	path = filepath.Clean(path)
	dir, name := filepath.Split(path)
	dir = filepath.Clean(dir)
	ofIntf := func(intf string) string {
		dev, _, ok := strings.Cut(strings.TrimSpace(intf), ":")
		if ok && validDevice(dev) {
			return dev
		}
		return ""
	}
	switch name {
	case "bind", "unbind":
		switch {
		case filepath.Base(filepath.Dir(dir)) == "drivers":
			return ofIntf(data)
		case name == "unbind" && filepath.Base(dir) == "driver":
			return ofIntf(filepath.Base(filepath.Dir(dir)))
		}
	case "drivers_probe":
		return ofIntf(data)
	case "authorized", "bConfigurationValue":
		if b := filepath.Base(dir); validDevice(b) {
			return b
		} else if name == "authorized" && strings.TrimSpace(data) == "0" {
			// An interface's deauthorize unbinds it under the device's
			// lock; its authorize takes only the interface's own
			// (usb_authorize_interface), so it goes on while a driver
			// probes another interface.
			return ofIntf(b)
		}
	}
	return ""
}
