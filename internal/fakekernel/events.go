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
	e.Env = env
	k.OnEvent(e)
}

// emitRemoval sends the events of a device leaving, as the kernel sends
// them: the devices behind it first, then for each interface its unbind
// (when bound) and remove, then the device's unbind and remove.
func (k *Kernel) emitRemoval(name, dir string) {
	if k.OnEvent == nil {
		return
	}
	des, _ := os.ReadDir(dir)
	for _, de := range des {
		if id, err := usbname.Parse(de.Name()); err == nil && id.Parent().String() == name {
			k.emitRemoval(de.Name(), filepath.Join(dir, de.Name()))
		}
	}
	for _, de := range des {
		if d, err := usbname.DeviceOf(de.Name()); err == nil && d == name {
			idir := filepath.Join(dir, de.Name())
			if currentDriver(idir) != "" {
				k.emit("unbind", de.Name(), idir, "")
			}
			k.emit("remove", de.Name(), idir, "")
		}
	}
	if currentDriver(dir) != "" {
		k.emit("unbind", name, dir, "")
	}
	k.emit("remove", name, dir, "")
}
