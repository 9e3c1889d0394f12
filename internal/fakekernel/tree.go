package fakekernel

import (
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"

	"github.com/usbhotplugd/usbhotplugd/internal/usbname"
)

// Copy copies a fixture tree (symlinks kept) into a new directory.
func Copy(src, dst string) error {
	return filepath.WalkDir(src, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(src, p)
		out := filepath.Join(dst, rel)
		switch {
		case d.Type()&fs.ModeSymlink != 0:
			t, err := os.Readlink(p)
			if err != nil {
				return err
			}
			return os.Symlink(t, out)
		case d.IsDir():
			return os.MkdirAll(out, 0o755)
		default:
			b, err := os.ReadFile(p)
			if err != nil {
				return err
			}
			return os.WriteFile(out, b, 0o644)
		}
	})
}

// AddDriver creates an empty driver directory with bind and unbind files.
func AddDriver(root, name string) error {
	d := filepath.Join(root, "bus/usb/drivers", name)
	if err := os.MkdirAll(d, 0o755); err != nil {
		return err
	}
	for _, f := range []string{"bind", "unbind"} {
		if err := os.WriteFile(filepath.Join(d, f), nil, 0o200); err != nil {
			return fmt.Errorf("fixture: %w", err)
		}
	}
	return nil
}

// Plug adds a device as Builder.Add does, and sends the events of its
// arrival as the kernel sends them: the device's add, each interface's
// add and (when a driver took it) bind, the device's bind last.
func (k *Kernel) Plug(d Dev) error {
	unlock, err := k.lock()
	if err != nil {
		return err
	}
	defer unlock()
	if err := (&Builder{Root: k.root}).Add(d).Err(); err != nil {
		return err
	}
	dir, err := filepath.EvalSymlinks(filepath.Join(k.root, "bus/usb/devices", d.BusID))
	if err != nil {
		return err
	}
	k.emit("add", d.BusID, dir, "")
	if authorized(dir) {
		k.wakeupCapable(d.BusID, dir)
	}
	k.plugged(d)
	// By number, as usb_set_configuration adds them: 1-2:1.2 before 1-2:1.10.
	for _, in := range interfaceNames(d.BusID, dir) {
		idir := filepath.Join(dir, in)
		// An interface its first one's driver claimed before it was
		// added is added bound already.
		drv := currentDriver(idir)
		if k.claimer[in] == "" {
			k.emit("add", in, idir, "")
		} else {
			k.emit("add", in, idir, drv)
		}
		if drv != "" {
			k.emit("bind", in, idir, drv)
		}
	}
	k.emit("bind", d.BusID, dir, "usb")
	return nil
}

// plugged notes what the drivers of a new device's interfaces are: the
// ones its interfaces match (whether they probed it now or, deauthorized,
// will later), and the interfaces claimed by its first one's.
func (k *Kernel) plugged(d Dev) {
	for c, intfs := range append([][]Intf{d.Interfaces}, d.Configs...) {
		for i, in := range intfs {
			if in.Driver != "" && in.Driver != "usbback" {
				k.learned[intfName(d.BusID, c+1, i)] = in.Driver
			}
		}
	}
	// Each configuration's first interface's driver claims the same
	// others: usb-net's rndis_host in configuration 2 as cdc_ether in 1.
	for c, intfs := range append([][]Intf{d.Interfaces}, d.Configs...) {
		for _, i := range d.Claimed {
			if i > 0 && i < len(intfs) {
				k.claimer[intfName(d.BusID, c+1, i)] = intfName(d.BusID, c+1, 0)
			}
		}
	}
}

// Unplug removes a device with its interfaces and everything behind it,
// as the kernel does when it is pulled out (disconnect: each one's
// driver and bus/usb/devices entry go before its remove is sent), then the
// device's directory.
func (k *Kernel) Unplug(busid string) error {
	unlock, err := k.lock()
	if err != nil {
		return err
	}
	defer unlock()
	devs := filepath.Join(k.root, "bus/usb/devices")
	real, err := filepath.EvalSymlinks(filepath.Join(devs, busid))
	if err != nil {
		return err
	}
	des, err := os.ReadDir(devs)
	if err != nil {
		return err
	}
	var gone []string
	for _, de := range des {
		if p, err := filepath.EvalSymlinks(filepath.Join(devs, de.Name())); err == nil && (p == real || strings.HasPrefix(p, real+"/")) {
			gone = append(gone, de.Name())
		}
	}
	k.disconnect(busid, real)
	// A driver's link a killed process left (see heal) goes too.
	drivers, _ := os.ReadDir(filepath.Join(k.root, "bus/usb/drivers"))
	for _, n := range gone {
		for _, drv := range drivers {
			os.Remove(filepath.Join(k.root, "bus/usb/drivers", drv.Name(), n))
		}
		os.Remove(filepath.Join(devs, n))
	}
	// The next device in this port is another: the drivers it matches are
	// its own.
	for _, m := range []map[string]string{k.original, k.learned, k.claimer} {
		for n := range m {
			if behind(n, busid) {
				delete(m, n)
			}
		}
	}
	// What waited for the device to be configured again, or for its hub
	// to enumerate again, went with it.
	for _, stash := range []string{stashDir, disconnectedDir, configsDir} {
		des, _ := os.ReadDir(filepath.Join(k.root, stash))
		for _, de := range des {
			if behind(de.Name(), busid) {
				os.RemoveAll(filepath.Join(k.root, stash, de.Name()))
			}
		}
	}
	return os.RemoveAll(real)
}

// behind says whether name (a device or an interface) is busid, one of its
// interfaces, or behind it: "1-3.2:1.0" is behind "1-3", "3-1" behind
// the root hub "usb3".
func behind(name, busid string) bool {
	hub, err := usbname.Parse(busid)
	if err != nil {
		return false
	}
	if d, err := usbname.DeviceOf(name); err == nil {
		name = d
	}
	id, err := usbname.Parse(name)
	if err != nil || id.Bus != hub.Bus || len(id.Ports) < len(hub.Ports) {
		return false
	}
	return slices.Equal(id.Ports[:len(hub.Ports)], hub.Ports)
}

// LockTree takes the tree's lock: the real kernel serialises binds, unbinds
// and hotplug under the device lock, and so must fake kernels in several
// processes (the agent's and a test driver's) over one fixture tree.
func LockTree(root string) (unlock func(), err error) {
	f, err := os.OpenFile(filepath.Join(root, ".kernel.lock"), os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, fmt.Errorf("fakekernel: %w", err)
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX); err != nil {
		f.Close()
		return nil, fmt.Errorf("fakekernel: lock %s: %w", f.Name(), err)
	}
	return func() { f.Close() }, nil
}

// lock takes the kernel's own lock, then the tree's; unlock releases
// both.
func (k *Kernel) lock() (unlock func(), err error) {
	k.mu.Lock()
	u, err := LockTree(k.root)
	if err != nil {
		k.mu.Unlock()
		return nil, err
	}
	return func() { u(); k.mu.Unlock() }, nil
}

// A TB is what TempDir needs of a test or benchmark; testing.TB has it.
// (This package is linked into the daemon for replay, so it does not
// import testing.)
type TB interface {
	Helper()
	TempDir() string
	Cleanup(func())
}

// TempDir is a directory for a fixture tree, removed at the end of the
// test: in memory (/dev/shm) when the machine has it, as /sys is, so that
// the fixture's symlinks cost what sysfs's do rather than a journaled
// disk's; else the test's own temporary directory.
func TempDir(t TB) string {
	t.Helper()
	if st, err := os.Stat("/dev/shm"); err == nil && st.IsDir() {
		if d, err := os.MkdirTemp("/dev/shm", "usbhotplugd-sys-"); err == nil {
			t.Cleanup(func() { os.RemoveAll(d) })
			return d
		}
	}
	return t.TempDir()
}
