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
// interface takes its device's (the USB bus needs the parent's lock), a
// device's authorized and bConfigurationValue its own. "" when it takes
// none.
func lockedBy(path, data string) string {
	dir, name := filepath.Split(filepath.Clean(path))
	dir = filepath.Base(dir)
	switch name {
	case "bind", "unbind":
		if filepath.Base(filepath.Dir(filepath.Dir(filepath.Clean(path)))) != "drivers" {
			return ""
		}
		dev, _, ok := strings.Cut(strings.TrimSpace(data), ":")
		if ok && validDevice(dev) {
			return dev
		}
	case "authorized", "bConfigurationValue":
		if validDevice(dir) {
			return dir
		}
	}
	return ""
}
