package fakekernel

import (
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
)

// A Write is one write the fake kernel received.
type Write struct {
	Path string // relative to the root, symlinks resolved: "bus/usb/drivers/usbhid/unbind"
	Data string
}

// A Kernel is a fake kernel over a sysfs tree. It is safe for concurrent
// use.
type Kernel struct {
	root string

	mu       sync.Mutex
	writes   []Write           // guarded by mu
	original map[string]string // interface -> driver it had at start; guarded by mu

	// Accept, when set, decides whether a driver takes an interface (for
	// example usbback only with a port rule); the default accepts usbback
	// for any interface and other drivers for the classes they serve.
	Accept func(driver, intf string) bool
	// Fail, when set, can fail a write with an errno before it happens.
	Fail func(w Write) error
}

// NewKernel starts a fake kernel over the tree at root.
func NewKernel(root string) *Kernel {
	k := &Kernel{root: root, original: map[string]string{}}
	des, _ := os.ReadDir(filepath.Join(root, "bus/usb/devices"))
	for _, de := range des {
		if t, err := os.Readlink(filepath.Join(root, "bus/usb/devices", de.Name(), "driver")); err == nil {
			k.original[de.Name()] = filepath.Base(t)
		}
	}
	return k
}

// Writes returns the writes so far, in order.
func (k *Kernel) Writes() []Write {
	k.mu.Lock()
	defer k.mu.Unlock()
	return append([]Write(nil), k.writes...)
}

var classDrivers = map[string]string{"03": "usbhid", "08": "usb-storage", "09": "hub", "01": "snd-usb-audio", "0b": "usbfs", "07": "usblp", "0e": "uvcvideo"}

func errno(path string, e syscall.Errno) error { return &fs.PathError{Op: "write", Path: path, Err: e} }

// WriteAttr implements usbsysfs.Writer.
func (k *Kernel) WriteAttr(path string, data []byte) error {
	k.mu.Lock()
	defer k.mu.Unlock()
	unlock, err := LockTree(k.root)
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
	parts := strings.Split(rel, "/")
	if rel == "bus/usb/drivers_probe" {
		return k.probe(path, strings.TrimSuffix(string(data), "\n"))
	}
	if len(parts) != 5 || parts[0] != "bus" || parts[1] != "usb" || parts[2] != "drivers" || (parts[4] != "bind" && parts[4] != "unbind") {
		return &fs.PathError{Op: "open", Path: path, Err: syscall.EACCES}
	}
	drv := parts[3]
	if len(data) == 0 {
		return nil // the kernel accepts a zero-length write and does nothing
	}
	name := strings.TrimSuffix(string(data), "\n")
	if name == "" || strings.ContainsAny(name, " \t\r\n/") {
		return errno(path, syscall.ENODEV)
	}
	devDir := filepath.Join(k.root, "bus/usb/devices", name)
	real, err := filepath.EvalSymlinks(devDir)
	if err != nil {
		return errno(path, syscall.ENODEV)
	}
	isIntf := strings.Contains(name, ":")
	cur := ""
	if t, err := os.Readlink(filepath.Join(real, "driver")); err == nil {
		cur = filepath.Base(t)
	}
	k.heal(name, real, cur, drv)
	drvDir := filepath.Join(k.root, "bus/usb/drivers", drv)
	if parts[4] == "unbind" {
		if cur != drv {
			return errno(path, syscall.ENODEV)
		}
		os.Remove(filepath.Join(real, "driver"))
		os.Remove(filepath.Join(drvDir, name))
		return nil
	}
	if isIntf == (drv == "usb") {
		return errno(path, syscall.ENODEV) // "usb" takes devices, others interfaces
	}
	if cur != "" {
		return errno(path, syscall.EBUSY)
	}
	if isIntf && !k.accepts(drv, name, real) {
		return errno(path, syscall.ENODEV)
	}
	toDrv, _ := filepath.Rel(real, drvDir)
	toDev, _ := filepath.Rel(drvDir, real)
	if err := os.Symlink(toDrv, filepath.Join(real, "driver")); err != nil {
		return errno(path, syscall.EIO)
	}
	if err := os.Symlink(toDev, filepath.Join(drvDir, name)); err != nil {
		return errno(path, syscall.EIO)
	}
	return nil
}

// heal makes the two links of a binding agree: a fake kernel's process
// killed between them (the agent's, by the soak test) leaves one without
// the other, which the real kernel, binding under the device lock, never
// shows.
func (k *Kernel) heal(name, real, cur, drv string) {
	// Only the two drivers this write involves can disagree with it.
	if drv != cur {
		os.Remove(filepath.Join(k.root, "bus/usb/drivers", drv, name))
	}
	if cur != "" {
		drvDir := filepath.Join(k.root, "bus/usb/drivers", cur)
		if _, err := os.Lstat(filepath.Join(drvDir, name)); err != nil {
			toDev, _ := filepath.Rel(drvDir, real)
			os.Symlink(toDev, filepath.Join(drvDir, name))
		}
	}
}

// probe binds an interface without a driver to the one the kernel would
// pick: the driver it had at start, else the one for its class.
func (k *Kernel) probe(path, name string) error {
	if strings.ContainsAny(name, " \t\r\n/") || !strings.Contains(name, ":") {
		return errno(path, syscall.ENODEV)
	}
	real, err := filepath.EvalSymlinks(filepath.Join(k.root, "bus/usb/devices", name))
	if err != nil {
		return errno(path, syscall.ENODEV)
	}
	if _, err := os.Readlink(filepath.Join(real, "driver")); err == nil {
		return nil // already has one: the kernel does nothing
	}
	drv := k.original[name]
	if drv == "" || drv == "usbback" {
		b, _ := os.ReadFile(filepath.Join(real, "bInterfaceClass"))
		drv = classDrivers[strings.TrimSpace(string(b))]
	}
	if drv == "" {
		return nil // no driver wants it: not an error for the kernel
	}
	drvDir := filepath.Join(k.root, "bus/usb/drivers", drv)
	if _, err := os.Stat(drvDir); err != nil {
		return nil
	}
	toDrv, _ := filepath.Rel(real, drvDir)
	toDev, _ := filepath.Rel(drvDir, real)
	if err := os.Symlink(toDrv, filepath.Join(real, "driver")); err != nil {
		return errno(path, syscall.EIO)
	}
	os.Symlink(toDev, filepath.Join(drvDir, name))
	return nil
}

func (k *Kernel) accepts(drv, intf, dir string) bool {
	if k.Accept != nil {
		return k.Accept(drv, intf)
	}
	if drv == "usbback" || k.original[intf] == drv {
		return true
	}
	b, err := os.ReadFile(filepath.Join(dir, "bInterfaceClass"))
	return err == nil && classDrivers[strings.TrimSpace(string(b))] == drv
}

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

// Unplug removes a device with its interfaces and everything behind it,
// as the kernel does when it is pulled out: the entries under
// bus/usb/devices and the drivers' links go, then the device's directory.
func (k *Kernel) Unplug(busid string) error {
	k.mu.Lock()
	defer k.mu.Unlock()
	unlock, err := LockTree(k.root)
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
	drivers, _ := os.ReadDir(filepath.Join(k.root, "bus/usb/drivers"))
	for _, de := range des {
		p, err := filepath.EvalSymlinks(filepath.Join(devs, de.Name()))
		if err != nil || (p != real && !strings.HasPrefix(p, real+"/")) {
			continue
		}
		for _, drv := range drivers {
			os.Remove(filepath.Join(k.root, "bus/usb/drivers", drv.Name(), de.Name()))
		}
		if err := os.Remove(filepath.Join(devs, de.Name())); err != nil {
			return err
		}
	}
	return os.RemoveAll(real)
}

// LockTree takes the tree's lock: the real kernel serialises binds, unbinds
// and hotplug under the device lock, and so must fake kernels in several
// processes (the agent's and a test driver's) over one fixture tree.
func LockTree(root string) (unlock func(), err error) {
	f, err := os.OpenFile(filepath.Join(root, ".kernel.lock"), os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, err
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX); err != nil {
		f.Close()
		return nil, err
	}
	return func() { f.Close() }, nil
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
