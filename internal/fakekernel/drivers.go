package fakekernel

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"

	"github.com/usbhotplugd/usbhotplugd/internal/usbname"
)

// classDriver is the dom0 driver of the fixture hosts for an interface
// class ("" for none). No driver takes class 0b (smart cards: no CCID driver in the
// kernel) or vendor-specific interfaces; usbfs binds nothing by itself.
// (A switch, not a map: nothing is built at every command's start.)
func classDriver(class string) string {
	switch class {
	case "03":
		return "usbhid"
	case "08":
		return "usb-storage"
	case "09":
		return "hub"
	case "01":
		return "snd-usb-audio"
	case "07":
		return "usblp"
	case "0e":
		return "uvcvideo"
	}
	return ""
}

func validDevice(name string) bool { return usbname.Valid(name) == nil }
func validIntf(name string) bool   { return usbname.ValidInterface(name) == nil }

// lookup finds a device or interface by name, as bus_find_device_by_name
// does: its real directory, or "" when there is none.
func (k *Kernel) lookup(name string) string {
	if !validDevice(name) && !validIntf(name) {
		return ""
	}
	real, err := filepath.EvalSymlinks(filepath.Join(k.root, "bus/usb/devices", name))
	if err != nil {
		return ""
	}
	return real
}

func currentDriver(dir string) string {
	if t, err := os.Readlink(filepath.Join(dir, "driver")); err == nil {
		return filepath.Base(t)
	}
	return ""
}

func (k *Kernel) unbindWrite(path, drv, name string) error {
	real := k.lookup(name)
	if real == "" {
		return errno(path, syscall.ENODEV)
	}
	cur := currentDriver(real)
	k.heal(name, real, cur, drv)
	if cur != drv {
		return errno(path, syscall.ENODEV)
	}
	k.detach(name, real)
	return nil
}

// detach unbinds a device or interface from its driver, with what the
// driver's disconnect does: usb's unconfigures the device (its
// interfaces go), hub's disconnects the devices behind the hub.
func (k *Kernel) detach(name, dir string) {
	drv := currentDriver(dir)
	switch drv {
	case "usb":
		k.unconfigure(name, dir)
	case "hub":
		if dev, err := usbname.DeviceOf(name); err == nil {
			k.disconnectChildren(dev, filepath.Dir(dir))
		}
	default:
		k.release(name, dir, drv)
	}
	unlink(k.root, name, dir)
	if drv != "" {
		k.emit("unbind", name, dir, "")
	}
}

// claim is what a driver's probe does with the device's interfaces it
// claims (usb_driver_claim_interface): each that is free and authorized is
// bound to it, its bind sent before the one of the interface probed.
func (k *Kernel) claim(name, dir, drv string) {
	if drv == "usbback" {
		return
	}
	for _, in := range k.claimedBy(name) {
		idir := filepath.Join(filepath.Dir(dir), in)
		if currentDriver(idir) == "" && authorized(idir) && LinkDriver(k.root, in, idir, drv) == nil && !k.unadded[in] {
			k.emit("bind", in, idir, drv)
		}
	}
}

// claimedBy lists the interfaces name's driver claims, in order.
func (k *Kernel) claimedBy(name string) []string {
	var out []string
	for in, by := range k.claimer {
		if by == name {
			out = append(out, in)
		}
	}
	slices.SortFunc(out, usbname.Compare)
	return out
}

// releasing says whether drv's disconnect lets go of the interfaces its
// probe claimed: usbnet's (cdc_ether unbinds the data interface
// before the control one, a real kernel's trace shows). snd-usb-audio
// keeps its streaming interfaces until each is unbound itself.
func releasing(drv string) bool {
	return drv == "cdc_ether" || drv == "rndis_host" || drv == "cdc_ncm"
}

// release is what a releasing driver's disconnect does with the
// interfaces its probe claimed.
func (k *Kernel) release(name, dir, drv string) {
	if !releasing(drv) {
		return
	}
	for _, in := range k.claimedBy(name) {
		idir := filepath.Join(filepath.Dir(dir), in)
		if currentDriver(idir) == drv {
			unlink(k.root, in, idir)
			k.emit("unbind", in, idir, "")
		}
	}
}

// bindWrite binds as bind_store does: the name must exist (ENODEV), the
// driver must match it (ENODEV, even when it is bound elsewhere), it must
// be free (EBUSY), and the driver's probe must take it (its errno).
func (k *Kernel) bindWrite(path, drv, name string) error {
	real := k.lookup(name)
	if real == "" {
		return errno(path, syscall.ENODEV)
	}
	if _, err := os.Stat(filepath.Join(k.root, "bus/usb/drivers", drv)); err != nil {
		return errno(path, syscall.ENODEV)
	}
	cur := currentDriver(real)
	k.heal(name, real, cur, drv)
	isIntf := validIntf(name)
	if isIntf == (drv == "usb") || isIntf && !k.matches(drv, name, real) {
		return errno(path, syscall.ENODEV) // "usb" takes devices, others interfaces
	}
	if cur != "" {
		return errno(path, syscall.EBUSY)
	}
	if isIntf {
		if e := k.probeErr(drv, name, real); e != 0 {
			return errno(path, e)
		}
	}
	if err := LinkDriver(k.root, name, real, drv); err != nil {
		return errno(path, syscall.EIO)
	}
	k.bound(name, real, drv)
	return nil
}

// bound sends the bind event of a new binding and does what the driver's
// probe does: a device's bind comes after its interfaces' (the usb
// driver configures it first), a hub's children after the hub's.
func (k *Kernel) bound(name, dir, drv string) {
	if validIntf(name) {
		k.claim(name, dir, drv)
		k.emit("bind", name, dir, drv)
		k.attached(name, dir, drv)
		return
	}
	k.attached(name, dir, drv)
	k.emit("bind", name, dir, drv)
}

// attached does what a driver's probe does beyond binding: usb's
// configures the device, hub's enumerates the devices behind it.
func (k *Kernel) attached(name, dir, drv string) {
	switch drv {
	case "usb":
		k.configureDefault(name, dir)
	case "hub":
		if dev, err := usbname.DeviceOf(name); err == nil {
			k.reconnectChildren(dev, filepath.Dir(dir))
		}
	}
}

// matches is driver_match_device for an interface.
func (k *Kernel) matches(drv, intf, dir string) bool {
	switch drv {
	case "usbback":
		return true // its id table matches every interface; its probe decides
	case "usbfs":
		return false // claimed through ioctls, never bound by a write
	}
	if k.Accept != nil {
		return k.Accept(drv, intf)
	}
	if k.original[intf] == drv || k.learned[intf] == drv {
		return true
	}
	return classDriver(readAttr(dir, "bInterfaceClass")) == drv
}

// probeErr is what usb_probe_interface and the driver's probe answer: an
// interface of a deauthorized device, or a deauthorized interface, is not
// probed (ENODEV); usbback refuses what it cannot serve.
func (k *Kernel) probeErr(drv, intf, dir string) syscall.Errno {
	if !authorized(filepath.Dir(dir)) || !authorized(dir) {
		return syscall.ENODEV
	}
	switch drv {
	case "usbback":
		return k.usbbackProbe(intf, filepath.Dir(dir))
	case "hub":
		// hub_probe refuses a hub at the deepest tier: nothing can hang
		// from it.
		if id, err := usbname.Parse(filepath.Base(filepath.Dir(dir))); err == nil && len(id.Ports) == usbname.MaxDepth {
			return syscall.E2BIG
		}
	}
	return 0
}

// probeWrite is drivers_probe: an interface without a driver is offered
// to the drivers; none taking it is no error.
func (k *Kernel) probeWrite(path, data string) error {
	name := strings.TrimSuffix(data, "\n")
	if strings.ContainsAny(name, " \t\r\n/") {
		return errno(path, syscall.ENODEV)
	}
	real := k.lookup(name)
	if real == "" {
		return errno(path, syscall.ENODEV)
	}
	if validIntf(name) && currentDriver(real) == "" {
		k.probe(name, real)
	}
	return nil
}

// probe binds an interface to the first driver whose match and probe take
// it: the driver it had at start or that bound it before, else the one of
// its class, else usbback when the device is in one of its ports (the dom0
// drivers were loaded first, so they are tried first; with no port table,
// usbback takes only what it is explicitly given).
func (k *Kernel) probe(name, dir string) {
	cands := []string{k.original[name], k.learned[name], classDriver(readAttr(dir, "bInterfaceClass"))}
	if k.UsbbackPorts != nil {
		cands = append(cands, "usbback") // without a port table it takes only what it is given
	}
	seen := map[string]bool{}
	for i, drv := range cands {
		// usbback only as the last resort: it had the interface at start
		// only because a port held it.
		if drv == "" || seen[drv] || drv == "usbback" && i < len(cands)-1 {
			continue
		}
		seen[drv] = true
		if _, err := os.Stat(filepath.Join(k.root, "bus/usb/drivers", drv)); err != nil {
			continue
		}
		if !k.matches(drv, name, dir) || k.probeErr(drv, name, dir) != 0 {
			continue
		}
		if LinkDriver(k.root, name, dir, drv) == nil {
			k.bound(name, dir, drv)
		}
		return
	}
}

// LinkDriver binds name (at dir, in the tree at root) to drv as the
// kernel shows a binding: the device's driver link and the driver's link
// to the device, which replaces one left alone (by a process killed
// between its two unlinks; the real kernel, under the device lock, never
// shows that).
func LinkDriver(root, name, dir, drv string) error {
	drvDir := filepath.Join(root, "bus/usb/drivers", drv)
	toDrv, _ := filepath.Rel(dir, drvDir)
	toDev, _ := filepath.Rel(drvDir, dir)
	if err := os.Symlink(toDrv, filepath.Join(dir, "driver")); err != nil {
		return err
	}
	os.Remove(filepath.Join(drvDir, name))
	return os.Symlink(toDev, filepath.Join(drvDir, name))
}

func unlink(root, name, dir string) {
	if drv := currentDriver(dir); drv != "" {
		os.Remove(filepath.Join(root, "bus/usb/drivers", drv, name))
	}
	os.Remove(filepath.Join(dir, "driver"))
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

func readAttr(dir, name string) string {
	b, err := os.ReadFile(filepath.Join(dir, name))
	if err != nil {
		return ""
	}
	return strings.TrimSpace(string(b))
}
