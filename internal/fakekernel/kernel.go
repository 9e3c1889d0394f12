package fakekernel

import (
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"

	"github.com/usbhotplugd/usbhotplugd/internal/uevent"
)

// A Write is one write the fake kernel received.
type Write struct {
	Path string // relative to the root, symlinks resolved: "bus/usb/drivers/usbhid/unbind"
	Data string
}

// A Kernel is a fake kernel over a sysfs tree. It is safe for concurrent
// use, and several Kernels in several processes may share one tree: every
// change is made under the tree's lock (LockTree), as the real kernel
// makes it under the device lock.
//
// What it answers, and how the tree changes, follows a real kernel's
// captures (testdata/errno-table.md): bind, unbind and drivers_probe;
// a device's authorized and bConfigurationValue, which remove and bring
// back its interfaces; an interface's authorized and a root hub's
// interface_authorized_default, which gate probing; and the usbback
// driver of Xen's dom0 kernels, which takes only devices in its backends'
// ports.
type Kernel struct {
	root string

	mu       sync.Mutex
	writes   []Write           // guarded by mu
	original map[string]string // interface -> driver it had at start; guarded by mu
	learned  map[string]string // interface -> a driver seen binding it; guarded by mu
	claimer  map[string]string // interface -> the interface whose driver claims it; guarded by mu
	// unadded are the interfaces of a configuration being set that are
	// in place but not added yet: one claimed meanwhile has its bind
	// sent with its add; guarded by mu.
	unadded map[string]bool

	// Accept, when set, decides whether a dom0 driver matches an
	// interface; the default matches the driver the interface had at
	// start, one Learn was told of, and the driver of its class.
	Accept func(driver, intf string) bool
	// Fail, when set, can fail a write with an errno before it happens.
	Fail func(w Write) error
	// UsbbackPorts, when set, is usbback's table of port rules: the busids
	// in the ports of its backends (each backend's port/N in xenstore).
	// usbback refuses a device in none of them; when nil, every device
	// is taken to be in a port (a fake kernel with no store).
	UsbbackPorts func() ([]UsbbackPort, error)
	// OnEvent, when set, hears the usb events a real kernel sends for each
	// change the fake kernel makes, in the real kernel's order. It is
	// called with the tree locked, and must not write to the kernel.
	OnEvent func(uevent.Event)

	seqnum uint64 // guarded by mu
}

// NewKernel starts a fake kernel over the tree at root.
func NewKernel(root string) *Kernel {
	k := &Kernel{root: root, original: map[string]string{}, learned: map[string]string{}, claimer: map[string]string{}}
	des, _ := os.ReadDir(filepath.Join(root, "bus/usb/devices"))
	for _, de := range des {
		if t, err := os.Readlink(filepath.Join(root, "bus/usb/devices", de.Name(), "driver")); err == nil {
			k.original[de.Name()] = filepath.Base(t)
		}
	}
	return k
}

// Learn tells the kernel that driver matches intf: a replayed trace saw
// the driver bind it.
func (k *Kernel) Learn(intf, driver string) {
	k.mu.Lock()
	defer k.mu.Unlock()
	if driver != "usbback" {
		k.learned[intf] = driver
	}
}

// Writes returns the writes so far, in order.
func (k *Kernel) Writes() []Write {
	k.mu.Lock()
	defer k.mu.Unlock()
	return append([]Write(nil), k.writes...)
}

func errno(path string, e syscall.Errno) error { return &fs.PathError{Op: "write", Path: path, Err: e} }

// WriteAttr implements usbsysfs.Writer.
func (k *Kernel) WriteAttr(path string, data []byte) error {
	// The device's lock first, as the kernel takes it before it changes
	// anything: a write waits while a probe or a reset holds it.
	if dev := lockedBy(path, string(data)); dev != "" {
		defer k.LockDevice(dev)()
	}
	unlock, err := k.lock()
	if err != nil {
		return &fs.PathError{Op: "write", Path: path, Err: syscall.EIO}
	}
	defer unlock()
	dir, err := filepath.EvalSymlinks(filepath.Dir(path))
	if err != nil {
		return &fs.PathError{Op: "open", Path: path, Err: syscall.ENOENT}
	}
	rel, err := filepath.Rel(k.root, filepath.Join(dir, filepath.Base(path)))
	if err != nil || strings.HasPrefix(rel, "..") {
		return &fs.PathError{Op: "open", Path: path, Err: syscall.EACCES}
	}
	w := Write{Path: rel, Data: string(data)}
	k.writes = append(k.writes, w)
	if k.Fail != nil {
		if err := k.Fail(w); err != nil {
			return err
		}
	}
	return k.dispatch(path, rel, string(data))
}

// dispatch makes the change a write to the attribute at rel asks for.
func (k *Kernel) dispatch(path, rel, data string) error {
	parts := strings.Split(rel, "/")
	base := parts[len(parts)-1]
	switch {
	case rel == "bus/usb/drivers_probe":
		return k.probeWrite(path, data)
	case len(parts) == 5 && parts[0] == "bus" && parts[1] == "usb" && parts[2] == "drivers" && (base == "bind" || base == "unbind"):
		if len(data) == 0 {
			return nil // the kernel accepts a zero-length write and does nothing
		}
		name := strings.TrimSuffix(data, "\n") // exactly one newline is the kernel's
		if name == "" || strings.ContainsAny(name, " \t\r\n/") {
			return errno(path, syscall.ENODEV)
		}
		if base == "unbind" {
			return k.unbindWrite(path, parts[3], name)
		}
		return k.bindWrite(path, parts[3], name)
	case base == "uevent":
		return k.synthUevent(path, rel, data)
	case parts[0] == "devices" && len(parts) > 2:
		return k.deviceAttr(path, filepath.Join(k.root, filepath.Dir(rel)), base, data)
	}
	return &fs.PathError{Op: "open", Path: path, Err: syscall.EACCES}
}

// deviceAttr writes one of the attributes of a device's or interface's
// own directory that the kernel lets userspace change.
func (k *Kernel) deviceAttr(path, dir, attr, data string) error {
	name := filepath.Base(dir)
	isDev := validDevice(name)
	switch {
	case attr == "authorized" && isDev:
		return k.authorizeDevice(path, dir, name, data)
	case attr == "authorized" && validIntf(name):
		return k.authorizeIntf(path, dir, name, data)
	case attr == "bConfigurationValue" && isDev:
		return k.configure(path, dir, name, data)
	case attr == "authorized_default" && isDev && strings.HasPrefix(name, "usb"):
		var v int
		if _, err := fmt.Sscanf(data, "%d", &v); err != nil || v < -1 || v > 2 {
			return errno(path, syscall.EINVAL)
		}
		return os.WriteFile(filepath.Join(dir, attr), []byte(strconv.Itoa(v)+"\n"), 0o644)
	case attr == "interface_authorized_default" && isDev && strings.HasPrefix(name, "usb"):
		v, ok := kstrtobool(data)
		if !ok {
			return errno(path, syscall.EINVAL)
		}
		return writeFlag(dir, attr, v)
	}
	return &fs.PathError{Op: "open", Path: path, Err: syscall.EACCES}
}
