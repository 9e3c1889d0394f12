package fakekernel

import (
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"

	"github.com/usbhotplugd/usbhotplugd/internal/usbname"
)

// A device's interfaces exist only while it is configured. Unconfigured
// (deauthorized, or unbound from usb), they wait here, by device, with
// their attributes; devices behind a hub whose driver left wait under
// disconnected/, until the hub driver comes back and enumerates them.
// The interfaces of each configuration of a device with several wait
// under configs/, by device and configuration value.
const (
	stashDir        = ".fakekernel/unconfigured"
	disconnectedDir = ".fakekernel/disconnected"
	configsDir      = ".fakekernel/configs"
)

// authorizeDevice is a write to a device's authorized: 0 unconfigures it
// (its interfaces go), any other number authorizes and configures it (its
// interfaces come back, created as the root hub's
// interface_authorized_default says, and the authorized ones are probed).
func (k *Kernel) authorizeDevice(path, dir, name, data string) error {
	var v uint
	if _, err := fmt.Sscanf(data, "%d", &v); err != nil {
		return errno(path, syscall.EINVAL)
	}
	was := authorized(dir)
	if v == 0 {
		if was {
			k.unconfigure(name, dir)
		}
		return writeFlag(dir, "authorized", false)
	}
	if err := writeFlag(dir, "authorized", true); err != nil {
		return errno(path, syscall.EIO)
	}
	if !was {
		k.setConfig(name, dir, 1)
	}
	return nil
}

// authorizeIntf is a write to an interface's authorized: 0 unbinds its
// driver and keeps every driver from probing it; 1 lets them, but
// probes nothing (drivers_probe does).
func (k *Kernel) authorizeIntf(path, dir, name, data string) error {
	v, ok := kstrtobool(data)
	if !ok {
		return errno(path, syscall.EINVAL)
	}
	if !v && authorized(dir) {
		if err := writeFlag(dir, "authorized", false); err != nil {
			return errno(path, syscall.EIO)
		}
		k.detach(name, dir)
		return nil
	}
	return writeFlag(dir, "authorized", v)
}

// configure is a write to bConfigurationValue: 0 or -1 unconfigures the
// device, a configuration it has configures it, anything else is EINVAL.
func (k *Kernel) configure(path, dir, name, data string) error {
	c, err := strconv.Atoi(strings.TrimSpace(data))
	n, _ := strconv.Atoi(readAttr(dir, "bNumConfigurations"))
	if err != nil || c < -1 || c > n {
		return errno(path, syscall.EINVAL)
	}
	k.setConfig(name, dir, max(c, 0))
	return nil
}

// configureDefault is what the usb driver's probe does: it chooses the
// first configuration of an authorized device.
func (k *Kernel) configureDefault(name, dir string) {
	if authorized(dir) && readAttr(dir, "bConfigurationValue") == "" {
		k.setConfig(name, dir, 1)
	}
}

// setConfig makes the device's configuration c (0: none), as
// usb_set_configuration does: a configured device is unconfigured first,
// its interfaces removed (their drivers unbound), even when c is the
// configuration it has (a write of bConfigurationValue is no "cheap
// reset": usbfs's SETCONFIGURATION is, and the fake kernel has no usbfs);
// then configuration c's interfaces are added, named "BUSID:C.N", and
// probed. A device with one configuration has the interfaces it was built
// with; one with several, those of configuration c.
func (k *Kernel) setConfig(name, dir string, c int) {
	if readAttr(dir, "bConfigurationValue") != "" {
		k.unconfigure(name, dir)
	}
	if c == 0 || !authorized(dir) {
		return
	}
	stash := filepath.Join(k.root, stashDir, name)
	if tmpl := filepath.Join(k.root, configDir(name, c)); exists(tmpl) {
		// What waits is another configuration's: this one's are made.
		os.RemoveAll(stash)
		if err := Copy(tmpl, stash); err != nil {
			return
		}
	}
	k.wakeupCapable(name, dir)
	names := interfaceNames(name, stash)
	intfAuth := k.intfAuthorizedDefault(name)
	os.WriteFile(filepath.Join(dir, "bNumInterfaces"), []byte(fmt.Sprintf("%2d\n", len(names))), 0o644)
	os.WriteFile(filepath.Join(dir, "bConfigurationValue"), []byte(strconv.Itoa(c)+"\n"), 0o644)
	// All are in place before the first is added, as usb_set_configuration
	// initializes them all before it adds them one by one: the first's
	// driver claims the others (rndis_host its data interface) before
	// their add, which then says so, and their bind follows it.
	var placed []string
	for _, in := range names {
		idir := filepath.Join(dir, in)
		if os.Rename(filepath.Join(stash, in), idir) != nil {
			continue
		}
		writeFlag(idir, "authorized", intfAuth)
		placed = append(placed, in)
	}
	if k.unadded == nil {
		k.unadded = map[string]bool{}
	}
	for _, in := range placed {
		k.unadded[in] = true
	}
	for _, in := range placed {
		idir := filepath.Join(dir, in)
		delete(k.unadded, in)
		k.linkDevice(in, idir)
		if drv := currentDriver(idir); drv != "" {
			k.emit("add", in, idir, drv)
			k.emit("bind", in, idir, drv)
			continue
		}
		k.emit("add", in, idir, "")
		if intfAuth {
			k.probe(in, idir)
		}
	}
	os.RemoveAll(stash)
}

func exists(p string) bool {
	_, err := os.Stat(p)
	return err == nil
}

// interfaceNames lists the interfaces of device name found in dir, by
// interface number, as a configuration holds them (1-2:1.2 before
// 1-2:1.10).
func interfaceNames(name, dir string) []string {
	des, _ := os.ReadDir(dir)
	var out []string
	for _, de := range des {
		if in, err := usbname.ParseInterface(de.Name()); err == nil && in.Device.String() == name {
			out = append(out, de.Name())
		}
	}
	slices.SortFunc(out, func(a, b string) int {
		x, _ := usbname.ParseInterface(a)
		y, _ := usbname.ParseInterface(b)
		return x.Number - y.Number
	})
	return out
}

// wakeupCapable is what usb_set_configuration does for a configuration
// that can wake the host (bmAttributes bit 5): the device becomes wakeup
// capable, gets its power/wakeup attributes, and the kernel sends a
// change event for them, before the interfaces are added. Unconfiguring
// (usb_disable_device taking the device back to the address state)
// takes them away with another change, after the interfaces' removal;
// an unplug sends none.
func (k *Kernel) wakeupCapable(name, dir string) {
	if canWake(dir) {
		k.emit("change", name, dir, currentDriver(dir))
	}
}

// canWake says whether the device's configuration can wake the host
// (bmAttributes bit 5).
func canWake(dir string) bool {
	a, err := strconv.ParseUint(readAttr(dir, "bmAttributes"), 16, 8)
	return err == nil && a&0x20 != 0
}

// unconfigure removes a device's interfaces, their drivers unbound first
// (a hub's children go with its hub interface), in their order, as
// usb_disable_device does; bConfigurationValue and bNumInterfaces read
// empty then (no active configuration).
func (k *Kernel) unconfigure(name, dir string) {
	stash := filepath.Join(k.root, stashDir, name)
	for _, in := range interfaceNames(name, dir) {
		idir := filepath.Join(dir, in)
		k.detach(in, idir)
		os.Remove(filepath.Join(k.root, "bus/usb/devices", in))
		k.emit("remove", in, idir, "")
		// What drivers made under the interface (hid, SCSI hosts) goes
		// with the driver; the attributes stay for the next configuration.
		subs, _ := os.ReadDir(idir)
		for _, s := range subs {
			if s.IsDir() {
				os.RemoveAll(filepath.Join(idir, s.Name()))
			}
		}
		if os.MkdirAll(stash, 0o755) == nil {
			os.Rename(idir, filepath.Join(stash, in))
		}
	}
	configured := readAttr(dir, "bConfigurationValue") != ""
	os.WriteFile(filepath.Join(dir, "bConfigurationValue"), nil, 0o644)
	os.WriteFile(filepath.Join(dir, "bNumInterfaces"), nil, 0o644)
	if configured && canWake(dir) {
		k.emit("change", name, dir, currentDriver(dir))
	}
}

// intfAuthorizedDefault is the root hub's interface_authorized_default for
// a device: whether its new interfaces are authorized.
func (k *Kernel) intfAuthorizedDefault(name string) bool {
	id, err := usbname.Parse(name)
	if err != nil {
		return true
	}
	root := filepath.Join(k.root, "bus/usb/devices", "usb"+strconv.Itoa(id.Bus))
	return readAttr(root, "interface_authorized_default") != "0"
}

// linkDevice makes the bus/usb/devices entry of a device or interface.
func (k *Kernel) linkDevice(name, dir string) {
	l := filepath.Join(k.root, "bus/usb/devices", name)
	rel, err := filepath.Rel(filepath.Dir(l), dir)
	if err == nil {
		os.Remove(l)
		os.Symlink(rel, l)
	}
}

// disconnectChildren removes the devices behind a hub, as the hub
// driver's disconnect does, keeping them to come back when it binds again.
func (k *Kernel) disconnectChildren(hub, dir string) {
	des := byPort(dir)
	stash := filepath.Join(k.root, disconnectedDir, hub)
	for _, de := range des {
		child := de.Name()
		id, err := usbname.Parse(child)
		if err != nil || id.IsRootHub() || id.Parent().String() != hub {
			continue
		}
		cdir := filepath.Join(dir, child)
		k.disconnect(child, cdir)
		if os.MkdirAll(stash, 0o755) == nil {
			os.Rename(cdir, filepath.Join(stash, child))
		}
	}
}

// byPort lists a directory with the devices in it in port order, as a
// hub walks its ports (1-3.2 before 1-3.10).
func byPort(dir string) []os.DirEntry {
	des, _ := os.ReadDir(dir)
	slices.SortStableFunc(des, func(a, b os.DirEntry) int { return usbname.Compare(a.Name(), b.Name()) })
	return des
}

// reconnectChildren enumerates again the devices a hub had: each gets a
// new devnum, is bound to usb and configured, parents first.
func (k *Kernel) reconnectChildren(hub, dir string) {
	stash := filepath.Join(k.root, disconnectedDir, hub)
	des := byPort(stash)
	for _, de := range des {
		cdir := filepath.Join(dir, de.Name())
		if os.Rename(filepath.Join(stash, de.Name()), cdir) == nil {
			k.enumerate(de.Name(), cdir)
		}
	}
	os.Remove(stash)
}

// enumerate brings back one device found on a port, and the devices
// behind it if it is a hub.
func (k *Kernel) enumerate(name, dir string) {
	os.WriteFile(filepath.Join(dir, "devnum"), []byte(strconv.Itoa(k.nextDevnum(name))+"\n"), 0o644)
	os.WriteFile(filepath.Join(dir, "bConfigurationValue"), nil, 0o644)
	os.WriteFile(filepath.Join(dir, "bNumInterfaces"), nil, 0o644)
	des, _ := os.ReadDir(dir)
	for _, de := range des {
		if in := de.Name(); validIntf(in) {
			if d, _ := usbname.DeviceOf(in); d == name {
				os.MkdirAll(filepath.Join(k.root, stashDir, name), 0o755)
				os.Rename(filepath.Join(dir, in), filepath.Join(k.root, stashDir, name, in))
			}
		}
	}
	for _, de := range des {
		// Devices behind this hub come once its hub interface is probed.
		if id, err := usbname.Parse(de.Name()); err == nil && id.Parent().String() == name {
			k.stashChild(name, dir, de.Name())
		}
	}
	k.linkDevice(name, dir)
	k.emit("add", name, dir, "")
	if _, err := os.Stat(filepath.Join(k.root, "bus/usb/drivers/usb")); err == nil && LinkDriver(k.root, name, dir, "usb") == nil {
		k.bound(name, dir, "usb")
	}
}

func (k *Kernel) stashChild(hub, dir, child string) {
	stash := filepath.Join(k.root, disconnectedDir, hub)
	if os.MkdirAll(stash, 0o755) == nil {
		os.Rename(filepath.Join(dir, child), filepath.Join(stash, child))
	}
}

// devnumFile keeps, in the tree for every fake kernel on it, the last
// devnum given on a bus.
func (k *Kernel) devnumFile(bus int) string {
	return filepath.Join(k.root, ".fakekernel", "devnum-"+strconv.Itoa(bus))
}

// noteDevnum remembers a devnum in use, so none is given again soon.
func (k *Kernel) noteDevnum(dir string) {
	bus, err1 := strconv.Atoi(readAttr(dir, "busnum"))
	n, err2 := strconv.Atoi(readAttr(dir, "devnum"))
	if err1 != nil || err2 != nil {
		return
	}
	p := k.devnumFile(bus)
	if last, _ := strconv.Atoi(readAttr(filepath.Dir(p), filepath.Base(p))); n > last {
		os.MkdirAll(filepath.Dir(p), 0o755)
		os.WriteFile(p, []byte(strconv.Itoa(n)+"\n"), 0o644)
	}
}

// nextDevnum allocates a devnum as the kernel does, round the bus: one
// above the last given and above every device present.
func (k *Kernel) nextDevnum(name string) int {
	id, err := usbname.Parse(name)
	if err != nil {
		return 1
	}
	bus := strconv.Itoa(id.Bus)
	p := k.devnumFile(id.Bus)
	top, _ := strconv.Atoi(readAttr(filepath.Dir(p), filepath.Base(p)))
	des, _ := os.ReadDir(filepath.Join(k.root, "bus/usb/devices"))
	for _, de := range des {
		d := filepath.Join(k.root, "bus/usb/devices", de.Name())
		if validDevice(de.Name()) && readAttr(d, "busnum") == bus {
			if n, err := strconv.Atoi(readAttr(d, "devnum")); err == nil && n > top {
				top = n
			}
		}
	}
	n := top + 1
	if n > 127 {
		n = 2 // 1 is the root hub's
	}
	os.MkdirAll(filepath.Dir(p), 0o755)
	os.WriteFile(p, []byte(strconv.Itoa(n)+"\n"), 0o644)
	return n
}
