package usbsysfs

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"syscall"

	"github.com/usbhotplugd/usbhotplugd/internal/usbname"
)

// A Writer writes a sysfs attribute. The default writes the file; a fake
// kernel stands in for it in tests.
type Writer interface {
	WriteAttr(path string, data []byte) error
}

type fileWriter struct{}

func (fileWriter) WriteAttr(path string, data []byte) error { return writeSmall(path, data) }

// An FS is a sysfs tree. It is safe for concurrent use. It caches
// nothing but, with WithLockWait, each hub's hash while that hub is there,
// which devices it waits for, and how writes that ended late ended.
type FS struct {
	root   string
	w      Writer
	locker DeviceLocker // a fake kernel's device locks; nil for the real one
	waits  *lockWaits   // nil: reads wait for the kernel's device lock for ever
}

// NewFS returns the sysfs tree at root ("/sys" in production).
func NewFS(root string) *FS { return &FS{root: root, w: fileWriter{}} }

// WithWriter returns a copy of f whose attribute writes go to w; a w that
// is a DeviceLocker too takes the device locks of f's reads.
func (f *FS) WithWriter(w Writer) *FS {
	g := *f
	g.w = w
	g.locker, _ = w.(DeviceLocker)
	return &g
}

// Root is the tree's root directory.
func (f *FS) Root() string { return f.root }

func (f *FS) devicesDir() string         { return filepath.Join(f.root, "bus/usb/devices") }
func (f *FS) driversDir() string         { return filepath.Join(f.root, "bus/usb/drivers") }
func (f *FS) devPath(name string) string { return filepath.Join(f.devicesDir(), name) }

// An Interface is one interface of a USB device.
type Interface struct {
	Name     string `json:"name"` // "1-1.6:1.0"
	Number   int    `json:"number"`
	Class    uint8  `json:"class"`
	SubClass uint8  `json:"sub_class"`
	Protocol uint8  `json:"protocol"`
	Driver   string `json:"driver,omitempty"` // "" when unbound
	// Authorized: drivers may probe it (its authorized attribute is 1).
	Authorized bool `json:"authorized"`
}

// A Device is a USB device as sysfs shows it.
type Device struct {
	BusID         string      `json:"busid"` // "1-1.6", or "usb1" for a root hub
	BusNum        int         `json:"bus"`   // bus number, as match.bus and xl's hostbus take it
	DevNum        int         `json:"addr"`  // address on the bus, as match.addr and xl's hostaddr take it
	Vendor        uint16      `json:"vendor"`
	Product       uint16      `json:"product"`
	BCDDevice     uint16      `json:"bcd_device"`
	Class         uint8       `json:"class"`
	SubClass      uint8       `json:"sub_class"`
	Protocol      uint8       `json:"protocol"`
	Serial        string      `json:"serial,omitempty"`
	Manufacturer  string      `json:"manufacturer,omitempty"`
	ProductName   string      `json:"product_name,omitempty"`
	Speed         string      `json:"speed_mbps"`                            // Mbit/s as the kernel prints it: "1.5", "12", "480", "5000"
	Version       string      `json:"version"`                               // USB version, "2.00"
	Ports         string      `json:"ports"`                                 // devpath attribute, "1.6": the ports below the root hub
	PortPath      string      `json:"port_path,omitempty"`                   // stable, udev's ID_PATH: "pci-0000:00:14.0-usb-0:1.6"
	PortPathRev   string      `json:"port_path_with_usb_revision,omitempty"` // "pci-0000:00:14.0-usbv2-0:1.6"
	Hash          string      `json:"hash,omitempty"`                        // descriptor hash, as USBGuard's
	ParentHash    string      `json:"parent_hash,omitempty"`                 // the hub's hash, or the controller's
	Parent        string      `json:"parent,omitempty"`                      // busid of the parent hub, "" for a root hub
	NumConfigs    int         `json:"num_configs"`
	NumInterfaces int         `json:"num_interfaces"`
	Removable     string      `json:"removable,omitempty"` // "removable", "fixed" or "unknown"
	Interfaces    []Interface `json:"interfaces,omitempty"`
	// Authorized: the device may be configured (authorized is 1); a
	// deauthorized device has no interfaces.
	Authorized bool `json:"authorized"`
	// Unconfigured: the kernel has made no configuration active
	// (bConfigurationValue reads empty): the device is not authorized,
	// none of its configurations could be chosen, or 0 was written to
	// bConfigurationValue. It has no interfaces then. (The reader sets
	// it for a device not authorized too.)
	Unconfigured bool `json:"unconfigured,omitempty"`
}

// IsHub reports whether the device is a hub (device class 9).
func (d Device) IsHub() bool { return d.Class == 9 }

// IsRootHub reports whether the device is a host controller's root hub.
func (d Device) IsRootHub() bool { return strings.HasPrefix(d.BusID, "usb") }

// ID is "vvvv:pppp", as lsusb prints it.
func (d Device) ID() string { return fmt.Sprintf("%04x:%04x", d.Vendor, d.Product) }

func (f *FS) readAttr(dir, name string) (string, error) {
	b, err := readSmall(filepath.Join(dir, name))
	if err != nil {
		return "", err
	}
	return strings.TrimRight(string(b), "\n"), nil
}

type attrReader struct {
	f   *FS
	dir string
	err error
	// at, when set, is dir opened: what reads many attributes of one
	// directory reads them relative to it (openDir, close).
	at *attrDir
}

// openDir makes r read relative to its directory, until close.
func (r *attrReader) openDir() {
	d := openAttrDir(r.dir)
	r.at = &d
}

func (r *attrReader) close() {
	if r.at != nil {
		r.at.close()
	}
}

func (r *attrReader) read(name string) (string, error) {
	if r.at == nil {
		return r.f.readAttr(r.dir, name)
	}
	b, err := r.at.read(name)
	if err != nil {
		return "", err
	}
	return strings.TrimRight(string(b), "\n"), nil
}

func (r *attrReader) str(name string, required bool) string {
	if r.err != nil {
		return ""
	}
	v, err := r.read(name)
	if err != nil && required {
		r.err = fmt.Errorf("usbsysfs: %w", err)
		return ""
	}
	return r.took(v, err)
}

// took is str(name, false) for an attribute already read, as v and err:
// a missing one is "".
func (r *attrReader) took(v string, err error) string {
	if r.err != nil {
		return ""
	}
	if err != nil {
		if !errors.Is(err, fs.ErrNotExist) {
			r.err = fmt.Errorf("usbsysfs: %w", err)
		}
		return ""
	}
	return v
}

func (r *attrReader) num(name string, base int, bits int) uint64 {
	return r.parse(name, r.str(name, true), base, bits)
}

// parse is num for an attribute already read (as str gave it).
func (r *attrReader) parse(name, v string, base int, bits int) uint64 {
	s := strings.TrimSpace(v)
	if r.err != nil {
		return 0
	}
	n, err := strconv.ParseUint(s, base, bits)
	if err != nil {
		r.err = fmt.Errorf("usbsysfs: %s: %q is not a %d-bit base-%d number", filepath.Join(r.dir, name), s, bits, base)
	}
	return n
}

// Present reports whether a device is on the host: one stat, for callers
// that need no more than that.
func (f *FS) Present(busid string) bool {
	if ValidBusID(busid) != nil {
		return false
	}
	_, err := os.Stat(f.devPath(busid))
	return err == nil
}

// Device reads one device by busid.
func (f *FS) Device(busid string) (Device, error) {
	if err := ValidBusID(busid); err != nil {
		return Device{}, err
	}
	names, err := f.ownNames(busid)
	if err != nil {
		return Device{}, err
	}
	return f.device(busid, names)
}

// ownNames lists a device's own directory, where its interfaces are: one
// device is read without listing the whole bus (a storm of 200 devices
// would list 400 entries at each).
func (f *FS) ownNames(busid string) ([]string, error) {
	des, err := os.ReadDir(f.devPath(busid))
	if err != nil {
		return nil, fmt.Errorf("usbsysfs: %w", err)
	}
	out := make([]string, 0, len(des))
	for _, de := range des {
		if de.IsDir() {
			out = append(out, de.Name())
		}
	}
	return out, nil
}

// device reads a device, finding its interfaces among names (the listing
// of bus/usb/devices, read once per scan).
func (f *FS) device(busid string, names []string) (Device, error) {
	dir := f.devPath(busid)
	r := &attrReader{f: f, dir: dir}
	r.openDir()
	defer r.close()
	d := Device{BusID: busid}
	d.BusNum = int(r.num("busnum", 10, 16))
	d.DevNum = int(r.num("devnum", 10, 16))
	// The strings the descriptor hash covers are kept as read: the hash
	// does not read them again.
	var hashed [len(hashAttrs)]string
	hashed[1] = r.str("idVendor", true)
	d.Vendor = uint16(r.parse("idVendor", hashed[1], 16, 16))
	hashed[2] = r.str("idProduct", true)
	d.Product = uint16(r.parse("idProduct", hashed[2], 16, 16))
	d.BCDDevice = uint16(r.num("bcdDevice", 16, 16))
	d.Class = uint8(r.num("bDeviceClass", 16, 8))
	d.SubClass = uint8(r.num("bDeviceSubClass", 16, 8))
	d.Protocol = uint8(r.num("bDeviceProtocol", 16, 8))
	d.NumConfigs = int(r.num("bNumConfigurations", 10, 8))
	d.Speed = strings.TrimSpace(r.str("speed", false))
	d.Version = strings.TrimSpace(r.str("version", false))
	d.Ports = r.str("devpath", false)
	d.Removable = r.str("removable", false)
	d.Authorized = r.str("authorized", false) != "0"
	if r.err != nil {
		return Device{}, r.err
	}
	if id, err := usbname.Parse(busid); err == nil && !id.IsRootHub() {
		d.Parent = id.Parent().String()
	}
	// Last, what needs the kernel's device lock, which a probe may hold.
	h, err := f.held(*r.at, busid, d.Parent)
	if err != nil {
		return Device{}, err
	}
	d.Serial = r.took(h.vals[0], h.errs[0])
	d.Manufacturer = r.took(h.vals[1], h.errs[1])
	d.ProductName = r.took(h.vals[2], h.errs[2])
	hashed[0], hashed[3] = d.ProductName, d.Serial
	if h.errs[3] == nil && strings.TrimSpace(h.vals[3]) == "" || !d.Authorized {
		// Empty is how the kernel shows no active configuration (absent,
		// in a fixture, says nothing); a device not authorized has none
		// (usb_set_configuration makes it 0).
		d.Unconfigured = true
	}
	if s := strings.TrimSpace(r.took(h.vals[4], h.errs[4])); s != "" && r.err == nil {
		n, err := strconv.Atoi(s)
		if err != nil {
			r.err = fmt.Errorf("usbsysfs: %s: %q is not a number", filepath.Join(dir, "bNumInterfaces"), s)
		}
		d.NumInterfaces = n
	}
	if r.err != nil {
		return Device{}, r.err
	}
	if err := f.identify(&d, &hashed, h.parentHash, h.parentErr); err != nil {
		return Device{}, err
	}
	ifs, err := f.interfaces(busid, names)
	if err != nil {
		return Device{}, err
	}
	d.Interfaces = ifs
	return d, nil
}

// names lists /sys/bus/usb/devices in directory order.
func (f *FS) names() ([]string, error) {
	des, err := os.ReadDir(f.devicesDir())
	if err != nil {
		return nil, fmt.Errorf("usbsysfs: %w", err)
	}
	out := make([]string, 0, len(des))
	for _, de := range des {
		out = append(out, de.Name())
	}
	return out, nil
}

// Interfaces lists the interfaces of a device: the entries named
// "<busid>:…" (the colon keeps child devices out), sorted by name.
func (f *FS) Interfaces(busid string) ([]Interface, error) {
	names, err := f.interfaceNamesOf(busid)
	if err != nil || names == nil {
		return nil, err
	}
	return f.interfaces(busid, names)
}

// interfaceNamesOf lists the names in busid's directory (nil, nil when
// the device is gone), for interfaceNames to pick its interfaces from.
func (f *FS) interfaceNamesOf(busid string) ([]string, error) {
	if err := ValidBusID(busid); err != nil {
		return nil, err
	}
	names, err := f.ownNames(busid)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil // gone: no interfaces
	}
	return names, err
}

// interfaceNames are the names among names of busid's interfaces.
func (f *FS) interfaceNames(busid string, names []string) []string {
	prefix := busid + ":"
	if strings.HasPrefix(busid, "usb") {
		prefix = busid[3:] + "-0:"
	}
	var out []string
	for _, n := range names {
		if strings.HasPrefix(n, prefix) && InterfaceBusID(n) == busid {
			out = append(out, n)
		}
	}
	return out
}

func (f *FS) interfaces(busid string, names []string) ([]Interface, error) {
	return f.eachInterface(busid, names, f.Interface)
}

// eachInterface reads, with read, each of busid's interfaces among names,
// leaving out those that went away while it looked.
func (f *FS) eachInterface(busid string, names []string, read func(string) (Interface, error)) ([]Interface, error) {
	var out []Interface
	for _, n := range f.interfaceNames(busid, names) {
		in, err := read(n)
		if errors.Is(err, fs.ErrNotExist) || errors.Is(err, syscall.ENODEV) {
			// Went away while we looked: kernfs answers the attributes of
			// one being removed (a configuration change, a
			// deauthorization) with ENODEV before its directory goes.
			continue
		}
		if err != nil {
			return nil, err
		}
		out = append(out, in)
	}
	return out, nil
}

// InterfaceStates lists the interfaces of a device as Interfaces does,
// with their names, drivers and authorization only (the descriptors'
// fields are left zero): what moving them between drivers needs, at one
// link and one attribute read each.
func (f *FS) InterfaceStates(busid string) ([]Interface, error) {
	names, err := f.interfaceNamesOf(busid)
	if err != nil || names == nil {
		return nil, err
	}
	return f.eachInterface(busid, names, f.interfaceState)
}

// interfaceState reads an interface's driver and authorization.
func (f *FS) interfaceState(n string) (Interface, error) {
	drv, err := f.Driver(n)
	if err != nil {
		return Interface{}, err
	}
	r := &attrReader{f: f, dir: f.devPath(n)}
	in := Interface{Name: n, Driver: drv, Authorized: r.str("authorized", false) != "0"}
	return in, r.err
}

// Interface reads one interface.
func (f *FS) Interface(name string) (Interface, error) {
	if err := ValidInterface(name); err != nil {
		return Interface{}, err
	}
	r := &attrReader{f: f, dir: f.devPath(name)}
	r.openDir()
	defer r.close()
	in := Interface{Name: name}
	in.Number = int(r.num("bInterfaceNumber", 16, 8))
	in.Class = uint8(r.num("bInterfaceClass", 16, 8))
	in.SubClass = uint8(r.num("bInterfaceSubClass", 16, 8))
	in.Protocol = uint8(r.num("bInterfaceProtocol", 16, 8))
	in.Authorized = r.str("authorized", false) != "0"
	if r.err != nil {
		return Interface{}, r.err
	}
	drv, err := f.Driver(name)
	if err != nil {
		return Interface{}, err
	}
	in.Driver = drv
	return in, nil
}

// Driver returns the name of the driver an interface or device is bound
// to, or "" if none.
func (f *FS) Driver(name string) (string, error) {
	if ValidInterface(name) != nil && ValidBusID(name) != nil {
		return "", fmt.Errorf("%w: %q", ErrInvalidName, name)
	}
	t, err := os.Readlink(filepath.Join(f.devPath(name), "driver"))
	if errors.Is(err, fs.ErrNotExist) {
		if _, serr := os.Stat(f.devPath(name)); serr != nil {
			return "", fmt.Errorf("usbsysfs: %w", serr)
		}
		return "", nil
	}
	if err != nil {
		return "", fmt.Errorf("usbsysfs: %w", err)
	}
	return filepath.Base(t), nil
}

// DriverPath is the canonical path of a driver, as libxl records it
// (/sys/bus/usb/drivers/<name> under the root).
func (f *FS) DriverPath(driver string) string { return filepath.Join(f.driversDir(), driver) }

// Devices reads every USB device (not interfaces), root hubs included,
// ordered so that parents come before children. A device that leaves
// while it is read is left out. One that cannot be read (an attribute the
// kernel answers with an error, or shows malformed) is left out too, and
// the list of every other device comes with an *UnreadableError naming
// it: one faulty device must not hide the rest of the bus.
func (f *FS) Devices() ([]Device, error) {
	names, err := f.names()
	if err != nil {
		return nil, err
	}
	var out []Device
	var unread UnreadableError
	for _, n := range names {
		if ValidBusID(n) != nil {
			continue
		}
		d, err := f.device(n, names)
		if errors.Is(err, fs.ErrNotExist) || errors.Is(err, syscall.ENODEV) && !f.Present(n) {
			// Left while we read: kernfs answers the attributes of a
			// device being removed with ENODEV before its directory goes.
			continue
		}
		if err != nil {
			unread.Devices = append(unread.Devices, DeviceError{BusID: n, Err: err})
			continue
		}
		out = append(out, d)
	}
	sort.SliceStable(out, func(i, j int) bool { return BusIDLess(out[i].BusID, out[j].BusID) })
	if len(unread.Devices) > 0 {
		sort.SliceStable(unread.Devices, func(i, j int) bool { return BusIDLess(unread.Devices[i].BusID, unread.Devices[j].BusID) })
		return out, &unread
	}
	return out, nil
}

// An UnreadableError names the devices a scan of the bus could not read;
// the scan returns every other device beside it.
type UnreadableError struct {
	Devices []DeviceError
}

// A DeviceError is why one device could not be read.
type DeviceError struct {
	BusID string
	Err   error
}

func (e *UnreadableError) Error() string {
	var b strings.Builder
	for i, d := range e.Devices {
		if i > 0 {
			b.WriteString("; ")
		}
		fmt.Fprintf(&b, "device %s could not be read: %v", d.BusID, d.Err)
	}
	return b.String() // each device's error names its path
}

// Unwrap gives each device's error, for errors.Is.
func (e *UnreadableError) Unwrap() []error {
	errs := make([]error, len(e.Devices))
	for i, d := range e.Devices {
		errs[i] = d.Err
	}
	return errs
}

// Partial splits the error of Devices: the devices it could not read,
// and any other error, which leaves the list empty.
func Partial(err error) (unread []DeviceError, rest error) {
	var u *UnreadableError
	if errors.As(err, &u) {
		return u.Devices, nil
	}
	return nil, err
}

// UnreadOf is why busid could not be read, among unread (Partial's); nil
// when it is not there.
func UnreadOf(unread []DeviceError, busid string) error {
	for _, u := range unread {
		if u.BusID == busid {
			return u.Err
		}
	}
	return nil
}

// BusIDLess orders busids by bus, root hub first, then by port path
// numerically, so that a parent sorts before its children (usbname.Compare).
func BusIDLess(a, b string) bool { return usbname.Compare(a, b) < 0 }

// BusIDByAddr finds a device by bus number and device number: the device
// its character device links to, or, in a tree without the links, the way
// libxl does, the first entry of /sys/bus/usb/devices, in directory order,
// whose busnum and devnum match. It returns fs.ErrNotExist if there is none.
func (f *FS) BusIDByAddr(bus, addr int) (string, error) {
	if bus < 1 || addr < 1 {
		return "", fmt.Errorf("usbsysfs: bus %d addr %d: %w", bus, addr, fs.ErrNotExist)
	}
	if n, ok := f.busIDByDevt(bus, addr); ok {
		return n, nil
	}
	names, err := f.names()
	if err != nil {
		return "", err
	}
	for _, n := range names {
		if ValidBusID(n) != nil {
			continue
		}
		b, err1 := f.readAttr(f.devPath(n), "busnum")
		d, err2 := f.readAttr(f.devPath(n), "devnum")
		if err1 != nil || err2 != nil {
			continue
		}
		if atoiTrim(b) == bus && atoiTrim(d) == addr {
			return n, nil
		}
	}
	return "", fmt.Errorf("usbsysfs: no device at bus %d addr %d: %w", bus, addr, fs.ErrNotExist)
}

// busIDByDevt finds the device at bus and addr by its character device,
// as libusb does: the kernel numbers a USB device 189:(bus-1)*128+addr-1,
// and /sys/dev/char links the number to the device. One link is read, not
// the numbers of every device before it; the device's own numbers are
// read back to confirm it. A tree without the links (a fixture) is not
// found here, and scanned.
func (f *FS) busIDByDevt(bus, addr int) (string, bool) {
	if addr > 128 {
		return "", false
	}
	t, err := os.Readlink(filepath.Join(f.root, "dev/char", "189:"+strconv.Itoa((bus-1)*128+addr-1)))
	if err != nil {
		return "", false
	}
	n := filepath.Base(t)
	if ValidBusID(n) != nil {
		return "", false
	}
	b, err1 := f.readAttr(f.devPath(n), "busnum")
	d, err2 := f.readAttr(f.devPath(n), "devnum")
	return n, err1 == nil && err2 == nil && atoiTrim(b) == bus && atoiTrim(d) == addr
}

func atoiTrim(s string) int {
	n, err := strconv.Atoi(strings.TrimSpace(s))
	if err != nil {
		return -1
	}
	return n
}

// Unbind detaches an interface from its current driver by writing its name
// to <intf>/driver/unbind.
func (f *FS) Unbind(intf string) error {
	if err := ValidInterface(intf); err != nil {
		return err
	}
	p := filepath.Join(f.devPath(intf), "driver", "unbind")
	f.forgetLate(intf)
	if err := f.w.WriteAttr(p, []byte(intf)); err != nil {
		return fmt.Errorf("usbsysfs: unbind %s: %w", intf, &fs.PathError{Op: "write", Path: p, Err: unwrapPath(err)})
	}
	return nil
}

// UnbindFrom detaches an interface from driver by writing its name to
// /sys/bus/usb/drivers/<driver>/unbind. Unlike Unbind it names the driver:
// the kernel refuses (ENODEV) an interface that is no longer that
// driver's, so a look at its driver that another hand made stale never
// unbinds the driver it has now.
func (f *FS) UnbindFrom(intf, driver string) error {
	if err := ValidInterface(intf); err != nil {
		return err
	}
	if err := ValidDriver(driver); err != nil {
		return err
	}
	p := filepath.Join(f.DriverPath(driver), "unbind")
	f.forgetLate(intf)
	if err := f.w.WriteAttr(p, []byte(intf)); err != nil {
		return fmt.Errorf("usbsysfs: unbind %s from %s: %w", intf, driver, &fs.PathError{Op: "write", Path: p, Err: unwrapPath(err)})
	}
	return nil
}

// Bind binds an interface to a driver by writing its name to
// /sys/bus/usb/drivers/<driver>/bind.
func (f *FS) Bind(intf, driver string) error {
	if err := ValidInterface(intf); err != nil {
		return err
	}
	if err := ValidDriver(driver); err != nil {
		return err
	}
	return f.BindPath(intf, f.DriverPath(driver))
}

// BindPath binds an interface to the driver at a recorded driver path,
// which must lie under this tree's /bus/usb/drivers.
func (f *FS) BindPath(intf, driverPath string) error {
	if err := ValidInterface(intf); err != nil {
		return err
	}
	clean := filepath.Clean(driverPath)
	if filepath.Dir(clean) != f.driversDir() {
		return fmt.Errorf("%w: driver path %q is not under %s", ErrInvalidName, driverPath, f.driversDir())
	}
	p := filepath.Join(clean, "bind")
	write := f.w.WriteAttr
	if filepath.Base(clean) != "usbback" {
		write = f.probeWrite(intf) // a dom0 driver's probe runs in it
	} else {
		f.forgetLate(intf)
	}
	if err := write(p, []byte(intf)); err != nil {
		return fmt.Errorf("usbsysfs: bind %s to %s: %w", intf, filepath.Base(clean), &fs.PathError{Op: "write", Path: p, Err: unwrapPath(err)})
	}
	return nil
}

// Probe asks the kernel to find a driver for an interface that has none,
// by writing its name to /sys/bus/usb/drivers_probe: how an interface whose
// driver record was lost still goes back to dom0.
func (f *FS) Probe(intf string) error {
	if err := ValidInterface(intf); err != nil {
		return err
	}
	p := filepath.Join(f.root, "bus/usb/drivers_probe")
	if err := f.probeWrite(intf)(p, []byte(intf)); err != nil {
		return fmt.Errorf("usbsysfs: probe %s: %w", intf, &fs.PathError{Op: "write", Path: p, Err: unwrapPath(err)})
	}
	return nil
}

// BoundTo reports whether an interface is bound to driver. libxl looks
// for <drivers>/<driver>/<intf>; the interface's own driver link says the
// same on a real kernel, and is what the kernel itself checks on bind.
func (f *FS) BoundTo(intf, driver string) bool {
	if ValidInterface(intf) != nil {
		return false
	}
	t, err := os.Readlink(filepath.Join(f.devPath(intf), "driver"))
	return err == nil && filepath.Base(t) == driver
}

// probeWrite is the write of intf's bind to a driver that probes it
// there: with WithLockWait, one that waits for the kernel at most so long.
func (f *FS) probeWrite(intf string) func(path string, data []byte) error {
	if f.waits == nil {
		return f.w.WriteAttr
	}
	busid, _, _ := strings.Cut(intf, ":")
	return func(path string, data []byte) error {
		return f.waits.write(busid, intf, path, func() error { return f.w.WriteAttr(path, data) })
	}
}

func unwrapPath(err error) error {
	var pe *fs.PathError
	if errors.As(err, &pe) {
		return pe.Err
	}
	return err
}

// ClassSpeed reads a device's class and speed ("480"), which the kernel
// shows without the device's lock.
func (f *FS) ClassSpeed(busid string) (class uint8, speed string, err error) {
	if err := ValidBusID(busid); err != nil {
		return 0, "", err
	}
	r := &attrReader{f: f, dir: filepath.Join(f.devicesDir(), busid)}
	class = uint8(r.num("bDeviceClass", 16, 8))
	speed = strings.TrimSpace(r.str("speed", false))
	return class, speed, r.err
}

// Addr reads a device's bus number and address, and nothing else: what
// usb-list shows for a port.
func (f *FS) Addr(busid string) (bus, dev int, err error) {
	if err := ValidBusID(busid); err != nil {
		return 0, 0, err
	}
	r := &attrReader{f: f, dir: filepath.Join(f.devicesDir(), busid)}
	bus = int(r.num("busnum", 10, 16))
	dev = int(r.num("devnum", 10, 16))
	return bus, dev, r.err
}
