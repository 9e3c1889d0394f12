package fakekernel

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
)

// A Builder writes a synthetic sysfs USB tree laid out as the kernel lays it
// out: devices under their controller, bus/usb/devices links, driver links,
// and the attribute formats of a real kernel (lowercase hex, " 1" for
// bNumInterfaces, " 2.00" for version).
type Builder struct {
	Root string
	err  error
}

// Dev describes one device to build.
type Dev struct {
	BusID        string // "1-1.6"; root hubs are "usbN"
	DevNum       int
	Vendor       string // "046d"
	Product      string // "c31c"
	Class        string // "00", "09"
	Serial       string // "" for none
	Manufacturer string
	Name         string
	Speed        string
	// Wakeup: its configuration can wake the host (bmAttributes has
	// remote wakeup, as HID devices and hubs do). Configuring it adds its
	// power/wakeup attributes, which the kernel announces with a change
	// event.
	Wakeup     bool
	Interfaces []Intf
	// Configs are the interfaces of its other configurations, 2 and on
	// (Interfaces are configuration 1's, the one the kernel chooses):
	// writing bConfigurationValue switches between them, as
	// usb_modeswitch, a driver or an admin does.
	Configs [][]Intf
	// Controller is, for a root hub, the directory of its host controller
	// under the root ("devices/pci0000:00/0000:00:14.0" when empty): a
	// controller behind a PCIe bridge, a Thunderbolt dock's, a platform
	// one. A device goes under its root hub, wherever that is.
	Controller string
	// Claimed are the interfaces (by index) the driver of interface 0
	// claims in its probe, as cdc_ether claims its data interface and
	// snd-usb-audio its streaming ones, in each configuration.
	Claimed []int
}

// Intf describes one interface.
type Intf struct {
	Class, SubClass, Protocol string
	Driver                    string // "" for unbound
}

const pci = "devices/pci0000:00/0000:00:14.0"

// prepare makes the parent directories of p and returns p's full path, or
// "" once the builder has failed.
func (b *Builder) prepare(p string) string {
	if b.err != nil {
		return ""
	}
	full := filepath.Join(b.Root, p)
	if b.err = os.MkdirAll(filepath.Dir(full), 0o755); b.err != nil {
		return ""
	}
	return full
}

func (b *Builder) write(p, v string) {
	if full := b.prepare(p); full != "" {
		b.err = os.WriteFile(full, []byte(v), 0o644)
	}
}

func (b *Builder) link(p, target string) {
	full := b.prepare(p)
	if full == "" {
		return
	}
	rel, err := filepath.Rel(filepath.Dir(full), filepath.Join(b.Root, target))
	if err != nil {
		b.err = err
		return
	}
	b.err = os.Symlink(rel, full)
}

// devDir returns the device's directory under the root: a root hub's
// under its controller, a device's under its root hub (where the tree has
// it, else under the default controller).
func (b *Builder) devDir(d Dev) string {
	if strings.HasPrefix(d.BusID, "usb") {
		if d.Controller != "" {
			return filepath.Clean(d.Controller) + "/" + d.BusID
		}
		return pci + "/" + d.BusID
	}
	bus, ports, _ := strings.Cut(d.BusID, "-")
	dir := pci + "/usb" + bus
	link := filepath.Join(b.Root, "bus/usb/devices", "usb"+bus)
	if t, err := os.Readlink(link); err == nil {
		if rel, err := filepath.Rel(b.Root, filepath.Join(filepath.Dir(link), t)); err == nil && strings.HasPrefix(rel, "devices/") {
			dir = rel
		}
	}
	parts := strings.Split(ports, ".")
	for i := range parts {
		dir += "/" + bus + "-" + strings.Join(parts[:i+1], ".")
	}
	return dir
}

// Add writes a device and its interfaces. The root hub's defaults say
// how a new device comes: with authorized_default 0 it is not authorized,
// and has no interfaces until it is; with interface_authorized_default 0
// its interfaces are not authorized, and no driver probed them.
func (b *Builder) Add(d Dev) *Builder {
	for _, drv := range []string{"usb", "hub", "usbhid", "usb-storage", "usbback"} {
		if _, err := os.Stat(filepath.Join(b.Root, "bus/usb/drivers", drv)); err != nil && b.err == nil {
			b.err = AddDriver(b.Root, drv)
		}
	}
	dir := b.devDir(d)
	bus := strings.TrimPrefix(strings.SplitN(d.BusID, "-", 2)[0], "usb")
	devpath := "0"
	if _, p, ok := strings.Cut(d.BusID, "-"); ok {
		devpath = p
	}
	if d.Speed == "" {
		d.Speed = "480"
	}
	isRoot := strings.HasPrefix(d.BusID, "usb")
	authorized := isRoot || b.rootHubAttr(bus, "authorized_default") != "0"
	attrs := map[string]string{
		"busnum": bus, "devnum": fmt.Sprint(d.DevNum), "idVendor": d.Vendor, "idProduct": d.Product,
		"bcdDevice": "0100", "bDeviceClass": d.Class, "bDeviceSubClass": "00", "bDeviceProtocol": "00",
		"bNumConfigurations": fmt.Sprint(1 + len(d.Configs)), "bConfigurationValue": "1", "bNumInterfaces": fmt.Sprintf("%2d", len(d.Interfaces)),
		"speed": d.Speed, "version": " 2.00", "devpath": devpath, "removable": "removable",
		"manufacturer": d.Manufacturer, "product": d.Name,
		"uevent": "DEVTYPE=usb_device\n", "authorized": "1", "bmAttributes": "80",
	}
	if d.Wakeup {
		attrs["bmAttributes"] = "a0"
	}
	if isRoot {
		attrs["authorized_default"] = "1"
		attrs["interface_authorized_default"] = "1"
	}
	if !authorized {
		attrs["authorized"], attrs["bConfigurationValue"], attrs["bNumInterfaces"] = "0", "", ""
	}
	if d.Serial != "" {
		attrs["serial"] = d.Serial
	}
	for k, v := range attrs {
		switch {
		case (k == "manufacturer" || k == "product") && v == "":
			continue
		case v == "":
			b.write(dir+"/"+k, "") // an unconfigured device's: empty, no newline
			continue
		}
		b.write(dir+"/"+k, v+"\n")
	}
	name := filepath.Base(dir)
	b.link("bus/usb/devices/"+name, dir)
	b.link(dir+"/driver", "bus/usb/drivers/usb")
	b.link("bus/usb/drivers/usb/"+name, dir)
	b.addInterfaces(d, dir, bus, authorized)
	if len(d.Configs) > 0 {
		for c, intfs := range append([][]Intf{d.Interfaces}, d.Configs...) {
			for i, in := range intfs {
				iname := intfName(d.BusID, c+1, i)
				for k, v := range intfAttrs(i, in, "1") {
					b.write(configDir(d.BusID, c+1)+"/"+iname+"/"+k, v+"\n")
				}
			}
		}
	}
	return b
}

// configDir is where the interfaces of configuration c of a device with
// several are kept, for the fake kernel to make them when it is chosen.
func configDir(busid string, c int) string {
	return configsDir + "/" + busid + "/" + fmt.Sprint(c)
}

// intfAttrs are the attributes of interface number i.
func intfAttrs(i int, in Intf, authorized string) map[string]string {
	return map[string]string{
		"bInterfaceNumber": fmt.Sprintf("%02x", i), "bAlternateSetting": " 0", "bInterfaceClass": in.Class,
		"bInterfaceSubClass": in.SubClass, "bInterfaceProtocol": in.Protocol, "uevent": "DEVTYPE=usb_interface",
		"authorized": authorized,
	}
}

// intfName is the kernel's name of interface num of configuration cfg of
// the device busid (usb_set_configuration's "%d-%s:%d.%d"): "1-2:1.0",
// and a root hub's "2-0:1.0".
func intfName(busid string, cfg, num int) string {
	if bus, ok := strings.CutPrefix(busid, "usb"); ok {
		return fmt.Sprintf("%s-0:%d.%d", bus, cfg, num)
	}
	return fmt.Sprintf("%s:%d.%d", busid, cfg, num)
}

// rootHubAttr reads an attribute of a bus's root hub, "" when absent.
func (b *Builder) rootHubAttr(bus, attr string) string {
	v, _ := os.ReadFile(filepath.Join(b.Root, "bus/usb/devices/usb"+bus, attr))
	return strings.TrimSpace(string(v))
}

// addInterfaces writes a device's interfaces: in the device when it is
// configured, else where the fake kernel keeps them until it is.
func (b *Builder) addInterfaces(d Dev, dir, bus string, configured bool) {
	intfAuth := "1"
	if b.rootHubAttr(bus, "interface_authorized_default") == "0" {
		intfAuth = "0"
	}
	for i, in := range d.Interfaces {
		iname := intfName(d.BusID, 1, i)
		idir := dir + "/" + iname
		if !configured {
			idir = stashDir + "/" + d.BusID + "/" + iname
		}
		for k, v := range intfAttrs(i, in, intfAuth) {
			b.write(idir+"/"+k, v+"\n")
		}
		if !configured {
			continue
		}
		b.link("bus/usb/devices/"+iname, idir)
		if in.Driver != "" && intfAuth == "1" {
			if _, err := os.Stat(filepath.Join(b.Root, "bus/usb/drivers", in.Driver)); err != nil && b.err == nil {
				b.err = AddDriver(b.Root, in.Driver)
			}
			b.link(idir+"/driver", "bus/usb/drivers/"+in.Driver)
			b.link("bus/usb/drivers/"+in.Driver+"/"+iname, idir)
		}
	}
}

// A Disk is a block device a storage interface provides, as the kernel
// adds it about a second after the interface binds.
type Disk struct {
	Name    string // "sde"
	Dev     string // "8:64"
	Holders []string
	Parts   []Disk // partitions: "sde1"
}

// AddDisk gives interface intf ("1-3:1.0") a SCSI disk, laid out as the
// kernel does: host*/target*/H:C:T:L/block/DISK/PART.
func (b *Builder) AddDisk(intf string, d Disk) *Builder {
	idir, err := filepath.EvalSymlinks(filepath.Join(b.Root, "bus/usb/devices", intf))
	if err != nil {
		if b.err == nil {
			b.err = err
		}
		return b
	}
	rel, _ := filepath.Rel(b.Root, idir)
	b.blockDir(rel+"/host4/target4:0:0/4:0:0:0/block/"+d.Name, d)
	for _, p := range d.Parts {
		b.blockDir(rel+"/host4/target4:0:0/4:0:0:0/block/"+d.Name+"/"+p.Name, p)
	}
	return b
}

func (b *Builder) blockDir(dir string, d Disk) {
	b.write(dir+"/dev", d.Dev+"\n")
	b.prepare(dir + "/holders/x") // makes holders/, empty
	for _, h := range d.Holders {
		if p := b.prepare(dir + "/holders/" + h); p != "" {
			if err := os.Mkdir(p, 0o755); err != nil && b.err == nil {
				b.err = err
			}
		}
	}
}

// Err is the first error the builder met.
func (b *Builder) Err() error { return b.err }

// Hub is the interface list of a hub.
var Hub = []Intf{{"09", "00", "00", "hub"}}

// Standard builds the fixture host the tests share: a root hub, an
// internal hub with a keyboard (the one of the xl captures), a composite
// audio device, a storage stick, two identical mice with serials and two
// identical badge readers without.
func Standard(root string) error {
	b := &Builder{Root: root}
	b.Add(Dev{BusID: "usb1", DevNum: 1, Vendor: "1d6b", Product: "0002", Class: "09", Serial: "0000:00:14.0", Manufacturer: "Linux 6.1.0 xhci-hcd", Name: "xHCI Host Controller", Interfaces: Hub})
	b.Add(Dev{BusID: "1-1", DevNum: 2, Vendor: "8087", Product: "0024", Class: "09", Manufacturer: "Intel", Name: "USB2.0 Hub", Interfaces: Hub})
	b.Add(Dev{BusID: "1-1.6", DevNum: 6, Vendor: "046d", Product: "c31c", Class: "00", Manufacturer: "Logitech", Name: "USB Keyboard", Speed: "1.5",
		Interfaces: []Intf{{"03", "01", "01", "usbhid"}}})
	b.Add(Dev{BusID: "1-2", DevNum: 3, Vendor: "0d8c", Product: "0014", Class: "00", Manufacturer: "C-Media", Name: "USB Audio Device", Speed: "12",
		Interfaces: []Intf{{"01", "01", "00", "snd-usb-audio"}, {"01", "02", "00", "snd-usb-audio"}, {"01", "02", "00", "snd-usb-audio"}, {"03", "00", "00", "usbhid"}}})
	b.Add(Dev{BusID: "1-3", DevNum: 4, Vendor: "0781", Product: "5567", Class: "00", Serial: "4C530001230517117244", Manufacturer: "SanDisk", Name: "Cruzer Blade",
		Interfaces: []Intf{{"08", "06", "50", "usb-storage"}}})
	b.Add(Dev{BusID: "1-4", DevNum: 5, Vendor: "046d", Product: "c077", Class: "00", Serial: "MOUSE-A", Manufacturer: "Logitech", Name: "USB Optical Mouse",
		Interfaces: []Intf{{"03", "01", "02", "usbhid"}}})
	b.Add(Dev{BusID: "1-5", DevNum: 7, Vendor: "046d", Product: "c077", Class: "00", Serial: "MOUSE-B", Manufacturer: "Logitech", Name: "USB Optical Mouse",
		Interfaces: []Intf{{"03", "01", "02", "usbhid"}}})
	b.Add(Dev{BusID: "1-1.2", DevNum: 8, Vendor: "0c27", Product: "3bfa", Class: "00", Manufacturer: "RFIDeas", Name: "USB Keyboard Badge Reader",
		Interfaces: []Intf{{"03", "01", "01", "usbhid"}}})
	b.Add(Dev{BusID: "1-1.3", DevNum: 9, Vendor: "0c27", Product: "3bfa", Class: "00", Manufacturer: "RFIDeas", Name: "USB Keyboard Badge Reader",
		Interfaces: []Intf{{"03", "01", "01", "usbhid"}}})
	return b.Err()
}

// XL writes the host of the xl 4.17 captures: root hub usb1, hub 1-1
// (devnum 2) and a Logitech keyboard 1-1.6 (devnum 6) whose one interface
// is bound to usbhid; usbback is loaded. extra devices are added to it.
func XL(root string, extra ...Dev) error {
	b := &Builder{Root: root}
	b.Add(Dev{BusID: "usb1", DevNum: 1, Vendor: "1d6b", Product: "0002", Class: "09", Interfaces: Hub})
	b.Add(Dev{BusID: "1-1", DevNum: 2, Vendor: "8087", Product: "0024", Class: "09", Interfaces: Hub})
	b.Add(Dev{BusID: "1-1.6", DevNum: 6, Vendor: "046d", Product: "c31c", Class: "00", Manufacturer: "Logitech", Name: "USB Keyboard",
		Interfaces: []Intf{{Class: "03", SubClass: "01", Protocol: "01", Driver: "usbhid"}}})
	for _, d := range extra {
		b.Add(d)
	}
	return b.Err()
}
