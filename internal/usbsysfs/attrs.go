package usbsysfs

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
)

// DevPath is the kernel's devpath of a device or interface
// ("/devices/pci0000:00/0000:00:14.0/usb1/1-6"), the form uevents carry,
// read from the bus/usb/devices link.
func (f *FS) DevPath(name string) (string, error) {
	if ValidBusID(name) != nil && ValidInterface(name) != nil {
		return "", fmt.Errorf("usbsysfs: %q: %w", name, ErrInvalidName)
	}
	link := f.devPath(name)
	target, err := os.Readlink(link)
	if err != nil {
		return "", fmt.Errorf("usbsysfs: %w", err)
	}
	if !filepath.IsAbs(target) {
		target = filepath.Join(filepath.Dir(link), target)
	}
	rel, err := filepath.Rel(f.root, target)
	if err != nil || !strings.HasPrefix(rel, "devices/") {
		return "", fmt.Errorf("usbsysfs: %s points to %s, outside %s/devices", link, target, f.root)
	}
	return "/" + rel, nil
}

// TraceAttrs are the device attributes a recorded trace keeps for each
// added device: what a replay needs to rebuild the device, serials
// included, which no uevent carries, and authorization (a root hub's
// interface_authorized_default says how its new interfaces are made).
var TraceAttrs = []string{
	"busnum", "devnum", "devpath", "idVendor", "idProduct", "bcdDevice",
	"bDeviceClass", "bDeviceSubClass", "bDeviceProtocol",
	"bNumConfigurations", "bNumInterfaces", "serial", "manufacturer",
	"product", "speed", "version", "removable",
	"authorized", "interface_authorized_default",
}

// IntfTraceAttrs are what a trace keeps of an added interface beyond its
// event: whether drivers may probe it.
var IntfTraceAttrs = []string{"authorized"}

// Attrs returns the TraceAttrs of a device, or the IntfTraceAttrs of an
// interface, as the kernel wrote them, less the trailing newline; absent
// optional files are left out.
func (f *FS) Attrs(name string) (map[string]string, error) {
	attrs := TraceAttrs
	if ValidInterface(name) == nil {
		attrs = IntfTraceAttrs
	} else if err := ValidBusID(name); err != nil {
		return nil, err
	}
	dir := f.devPath(name)
	out := make(map[string]string, len(attrs))
	for _, a := range attrs {
		v, err := f.readAttr(dir, a)
		if errors.Is(err, fs.ErrNotExist) {
			if _, serr := os.Stat(dir); serr != nil {
				return nil, fmt.Errorf("usbsysfs: %w", serr)
			}
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("usbsysfs: %w", err)
		}
		out[a] = v
	}
	return out, nil
}
