package replay

import (
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/usbhotplugd/usbhotplugd/internal/fakekernel"
	"github.com/usbhotplugd/usbhotplugd/internal/uevent"
	"github.com/usbhotplugd/usbhotplugd/internal/usbname"
	"github.com/usbhotplugd/usbhotplugd/internal/usbsysfs"
)

// A Host is a sysfs tree that trace events are applied to, as the kernel
// applied them when they were recorded.
type Host struct {
	Root string
	// Kernel, when set, is told which driver each interface was bound to,
	// so that it lets that driver take it back.
	Kernel *fakekernel.Kernel
}

// NewHost prepares an empty tree with the usual USB drivers.
func NewHost(root string) (*Host, error) {
	if err := os.MkdirAll(filepath.Join(root, "bus/usb/devices"), 0o755); err != nil {
		return nil, err
	}
	for _, d := range []string{"usb", "hub", "usbhid", "usb-storage", "usbback", "snd-usb-audio", "usbfs", "uas", "cdc_acm", "cdc_ether", "btusb", "usblp"} {
		if err := fakekernel.AddDriver(root, d); err != nil {
			return nil, err
		}
	}
	return &Host{Root: root}, nil
}

func (h *Host) dir(e uevent.Event) (string, error) {
	p := filepath.Clean(e.DevPath)
	if !strings.HasPrefix(p, "/devices/") || strings.Contains(p, "..") {
		return "", fmt.Errorf("replay: devpath %q", e.DevPath)
	}
	return filepath.Join(h.Root, p), nil
}

func (h *Host) link(name, dir string) error {
	l := filepath.Join(h.Root, "bus/usb/devices", name)
	rel, err := filepath.Rel(filepath.Dir(l), dir)
	if err != nil {
		return err
	}
	os.Remove(l)
	return os.Symlink(rel, l)
}

// intfAuthorized is the authorized attribute of an added interface: as
// recorded, else its root hub's interface_authorized_default, else "1".
func (h *Host) intfAuthorized(intf string, attrs map[string]string) string {
	if v := attrs["authorized"]; v == "0" || v == "1" {
		return v
	}
	in, err := usbname.ParseInterface(intf)
	if err != nil {
		return "1"
	}
	b, err := os.ReadFile(filepath.Join(h.Root, "bus/usb/devices", fmt.Sprintf("usb%d", in.Device.Bus), "interface_authorized_default"))
	if err == nil && strings.TrimSpace(string(b)) == "0" {
		return "0"
	}
	return "1"
}

func exists(dir string) bool {
	_, err := os.Stat(dir)
	return err == nil
}

func write(dir, name, v string) error {
	return os.WriteFile(filepath.Join(dir, name), []byte(v+"\n"), 0o644)
}

// Apply makes the change an event reports; attrs are the device's or
// interface's sysfs attributes recorded with its add.
func (h *Host) Apply(e uevent.Event, attrs map[string]string) error {
	if e.Subsystem != "usb" || (!e.IsUSBDevice() && !e.IsUSBInterface()) {
		return nil
	}
	unlock, err := fakekernel.LockTree(h.Root)
	if err != nil {
		return err
	}
	defer unlock()
	dir, err := h.dir(e)
	if err != nil {
		return err
	}
	name := e.Name()
	if e.Synthetic() && (e.Action != "add" || exists(dir)) {
		// Written to a uevent file, not made by a change: the kernel
		// changes nothing. A synthetic add of what the tree lacks says it
		// was there before the trace began (the kernel synthesises events
		// only for what exists), as it was, bound or not.
		return nil
	}
	switch e.Action {
	case "add":
		if err := h.add(e, dir, attrs); err != nil {
			return err
		}
		// A kernel's own add never names a driver, as nothing is bound
		// yet; a coldplug scan's and a synthetic add's do: the device was
		// there already, bound to it.
		if e.Driver() == "" {
			return nil
		}
		fallthrough
	case "bind":
		return h.bindTo(e, dir)
	case "unbind":
		return h.unbind(dir, name)
	case "remove":
		h.unbind(dir, name)
		os.Remove(filepath.Join(h.Root, "bus/usb/devices", name))
		return os.RemoveAll(dir)
	}
	return nil
}

// bindGeneric binds a device still there, and bound to nothing, to usb,
// as the kernel's generic driver is bound to every device it configures;
// bound says it did.
func (h *Host) bindGeneric(devpath, busid string) (bound bool, err error) {
	unlock, err := fakekernel.LockTree(h.Root)
	if err != nil {
		return false, err
	}
	defer unlock()
	dir, err := h.dir(uevent.Event{DevPath: devpath})
	if err != nil {
		return false, err
	}
	if !exists(dir) || exists(filepath.Join(dir, "driver")) {
		return false, nil
	}
	return true, fakekernel.LinkDriver(h.Root, busid, dir, "usb")
}

// add makes the directory of an added device or interface, with its
// attributes, and its bus/usb/devices entry.
func (h *Host) add(e uevent.Event, dir string, attrs map[string]string) error {
	name := e.Name()
	if e.IsUSBDevice() && usbsysfs.ValidBusID(name) != nil || e.IsUSBInterface() && usbsysfs.ValidInterface(name) != nil {
		return fmt.Errorf("replay: %q is not a USB name", name)
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	if e.IsUSBDevice() {
		if err := h.deviceAttrs(dir, name, e, attrs); err != nil {
			return err
		}
		return h.link(name, dir)
	}
	c, s, p, err := e.Interface()
	if err != nil {
		return err
	}
	num := "00"
	if i := strings.LastIndexByte(name, '.'); i >= 0 {
		if n, err := strconv.Atoi(name[i+1:]); err == nil {
			num = fmt.Sprintf("%02x", n)
		}
	}
	for k, v := range map[string]string{"bInterfaceClass": fmt.Sprintf("%02x", c), "bInterfaceSubClass": fmt.Sprintf("%02x", s),
		"bInterfaceProtocol": fmt.Sprintf("%02x", p), "bInterfaceNumber": num, "bAlternateSetting": " 0",
		"authorized": h.intfAuthorized(name, attrs)} {
		if err := write(dir, k, v); err != nil {
			return err
		}
	}
	return h.link(name, dir)
}

// bindTo binds what an event names to the driver it names.
func (h *Host) bindTo(e uevent.Event, dir string) error {
	drv := e.Driver()
	if drv == "" || strings.ContainsAny(drv, "/.") {
		return nil
	}
	if _, err := os.Stat(filepath.Join(h.Root, "bus/usb/drivers", drv)); err != nil {
		if err := fakekernel.AddDriver(h.Root, drv); err != nil {
			return err
		}
	}
	if h.Kernel != nil && e.IsUSBInterface() {
		h.Kernel.Learn(e.Name(), drv)
	}
	return h.bind(dir, e.Name(), drv)
}

func (h *Host) bind(dir, name, drv string) error {
	h.unbind(dir, name)
	return fakekernel.LinkDriver(h.Root, name, dir, drv)
}

func (h *Host) unbind(dir, name string) error {
	t, err := os.Readlink(filepath.Join(dir, "driver"))
	if err != nil {
		return nil
	}
	os.Remove(filepath.Join(h.Root, "bus/usb/drivers", filepath.Base(t), name))
	return os.Remove(filepath.Join(dir, "driver"))
}

// deviceAttrs writes a device's attributes: the recorded ones, else what
// the event itself says (PRODUCT, TYPE, BUSNUM, DEVNUM).
func (h *Host) deviceAttrs(dir, busid string, e uevent.Event, attrs map[string]string) error {
	v, p, bcd, _ := e.Product()
	c, s, pr, _ := e.Type()
	bus, ok := e.BusNum()
	if id, err := usbname.Parse(busid); !ok && err == nil {
		bus = id.Bus // no BUSNUM (an older kernel's event): the busid names the bus
	}
	dev, _ := e.DevNum()
	base := map[string]string{
		"idVendor": fmt.Sprintf("%04x", v), "idProduct": fmt.Sprintf("%04x", p), "bcdDevice": fmt.Sprintf("%04x", bcd),
		"bDeviceClass": fmt.Sprintf("%02x", c), "bDeviceSubClass": fmt.Sprintf("%02x", s), "bDeviceProtocol": fmt.Sprintf("%02x", pr),
		"busnum": strconv.Itoa(bus), "devnum": strconv.Itoa(dev), "bNumConfigurations": "1", "speed": "480", "version": " 2.00",
	}
	if _, ports, ok := strings.Cut(busid, "-"); ok {
		base["devpath"] = ports
	}
	for k, val := range attrs {
		if strings.ContainsAny(k, "/.") { // names were checked by the trace reader; never a path
			continue
		}
		base[k] = val
	}
	for k, val := range base {
		if err := write(dir, k, val); err != nil {
			return err
		}
	}
	return nil
}
