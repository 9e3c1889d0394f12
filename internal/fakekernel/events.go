package fakekernel

import (
	"fmt"
	"os"
	"path/filepath"
	"strconv"

	"github.com/usbhotplugd/usbhotplugd/internal/uevent"
	"github.com/usbhotplugd/usbhotplugd/internal/usbname"
)

// emit sends the usb event of a change to name (at dir), with the keys a
// real kernel gives that kind of event (shared/real-kernel/key-matrix.md):
// DRIVER on bind only, MODALIAS on an interface's add, bind and remove.
func (k *Kernel) emit(action, name, dir, driver string) {
	k.emitWith(action, name, dir, driver, nil)
}

// emitWith is emit with extra keys (a synthetic event's).
func (k *Kernel) emitWith(action, name, dir, driver string, extra map[string]string) {
	if k.OnEvent == nil {
		return
	}
	rel, err := filepath.Rel(k.root, dir)
	if err != nil {
		return
	}
	k.seqnum++
	e := uevent.Event{Action: action, DevPath: "/" + rel, Subsystem: "usb", Seqnum: k.seqnum}
	env := map[string]string{"ACTION": action, "DEVPATH": e.DevPath, "SUBSYSTEM": "usb", "SEQNUM": strconv.FormatUint(k.seqnum, 10)}
	if driver != "" {
		env["DRIVER"] = driver
	}
	devDir := dir
	if validIntf(name) {
		devDir = filepath.Dir(dir)
	}
	hex := func(d, a string) int64 { n, _ := strconv.ParseInt(readAttr(d, a), 16, 32); return n }
	env["PRODUCT"] = fmt.Sprintf("%x/%x/%x", hex(devDir, "idVendor"), hex(devDir, "idProduct"), hex(devDir, "bcdDevice"))
	env["TYPE"] = fmt.Sprintf("%d/%d/%d", hex(devDir, "bDeviceClass"), hex(devDir, "bDeviceSubClass"), hex(devDir, "bDeviceProtocol"))
	if validIntf(name) {
		e.DevType = "usb_interface"
		ic, is, ip := hex(dir, "bInterfaceClass"), hex(dir, "bInterfaceSubClass"), hex(dir, "bInterfaceProtocol")
		env["INTERFACE"] = fmt.Sprintf("%d/%d/%d", ic, is, ip)
		if action != "unbind" {
			env["MODALIAS"] = fmt.Sprintf("usb:v%04Xp%04Xd%04Xdc%02Xdsc%02Xdp%02Xic%02Xisc%02Xip%02Xin%02X",
				hex(devDir, "idVendor"), hex(devDir, "idProduct"), hex(devDir, "bcdDevice"), hex(devDir, "bDeviceClass"),
				hex(devDir, "bDeviceSubClass"), hex(devDir, "bDeviceProtocol"), ic, is, ip, hex(dir, "bInterfaceNumber"))
		}
	} else {
		e.DevType = "usb_device"
		bus, _ := strconv.Atoi(readAttr(dir, "busnum"))
		dev, _ := strconv.Atoi(readAttr(dir, "devnum"))
		env["MAJOR"], env["MINOR"] = "189", strconv.Itoa((bus-1)*128+dev-1)
		env["DEVNAME"] = fmt.Sprintf("bus/usb/%03d/%03d", bus, dev)
		env["BUSNUM"], env["DEVNUM"] = fmt.Sprintf("%03d", bus), fmt.Sprintf("%03d", dev)
	}
	env["DEVTYPE"] = e.DevType
	for key, v := range extra {
		env[key] = v
	}
	e.Env = env
	k.OnEvent(e)
}

// disconnect takes a device and everything behind it off the bus as
// usb_disconnect does, and sends its events: the devices behind it first,
// then each interface, then the device itself, each with its driver
// unbound (unbind, when it had one) and its bus/usb/devices entry removed
// (bus_remove_device) before its remove (device_del sends it before
// kobject_del takes the directory away). So a reader woken by a remove
// finds the device gone from bus/usb/devices, as on a real kernel. The
// directories stay, for the caller to remove or keep.
//
// Both go by number, as hub_disconnect_children walks the ports and
// usb_disable_device the interfaces: 1-3.2 before 1-3.10, 1-3:1.2 before
// 1-3:1.10, which their names' order is not.
func (k *Kernel) disconnect(name, dir string) {
	for _, de := range byPort(dir) {
		if id, err := usbname.Parse(de.Name()); err == nil && id.Parent().String() == name {
			k.disconnect(de.Name(), filepath.Join(dir, de.Name()))
		}
	}
	for _, in := range interfaceNames(name, dir) {
		k.takeOff(in, filepath.Join(dir, in))
	}
	k.noteDevnum(dir)
	k.takeOff(name, dir)
}

// takeOff is device_del of one device or interface: its driver unbound,
// its bus entry removed, its remove sent.
func (k *Kernel) takeOff(name, dir string) {
	had := currentDriver(dir) != ""
	unlink(k.root, name, dir)
	if had {
		k.emit("unbind", name, dir, "")
	}
	os.Remove(filepath.Join(k.root, "bus/usb/devices", name))
	k.emit("remove", name, dir, "")
}
