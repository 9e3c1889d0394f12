package usbsysfs

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
)

// ErrNoPortPath: a device's controller sits on no bus that names it
// for good (PCI, platform, ACPI, AMBA, Xen), so its port has no stable
// name; udev gives such a device no ID_PATH either.
var ErrNoPortPath = errors.New("no stable port path")

// PortPaths are the stable names of the socket a device is plugged into,
// anchored at its controller rather than at a bus number (which changes
// when the kernel probes controllers in another order).
type PortPaths struct {
	// Path is the form of udev's ID_PATH: "pci-0000:00:14.0-usb-0:1.4".
	// An xHCI controller's USB 2 and USB 3 root hubs give the same Path to
	// the same port number.
	Path string
	// WithRevision names the root hub's USB revision too, as udev's
	// ID_PATH_WITH_USB_REVISION: "pci-0000:00:14.0-usbv3-0:1.4". It is
	// Path when the revision cannot be told.
	WithRevision string
}

// parentSubsystem says whether sub is one of the buses whose device names path_id trusts as
// stable anchors, with the prefix each gets.
func parentSubsystem(sub string) bool {
	switch sub {
	case "pci", "platform", "amba", "acpi", "xen":
		return true
	}
	return false
}

// isPCIAddr says whether name has the form of a PCI address
// ("0000:00:14.0": domain, bus, device, function, in lower-case hex). The
// kernel prints the domain with at least four digits: Intel VMD's
// domains have five ("10000:e1:00.0").
// Checked by hand: a regexp would be compiled by the first command that
// reads a port path on a tree without subsystem links, for one fixed form.
func isPCIAddr(name string) bool {
	d := len(name) - len(":00:14.0") // the domain's digits
	if d < 4 || d > 8 {
		return false
	}
	for i := range len(name) {
		c := name[i]
		switch i - d {
		case 0, 3:
			if c != ':' {
				return false
			}
		case 6:
			if c != '.' {
				return false
			}
		case 7:
			if c < '0' || c > '7' {
				return false
			}
		default:
			if (c < '0' || c > '9') && (c < 'a' || c > 'f') {
				return false
			}
		}
	}
	return true
}

// PortPaths computes a device's stable port names from where the kernel
// put it in the device tree: the controller's bus address, the root hub's
// USB revision, and the port numbers below it. A root hub's names are its
// controller's alone, as udev gives them.
func (f *FS) PortPaths(busid string) (PortPaths, error) {
	dev, err := f.DevPath(busid)
	if err != nil {
		return PortPaths{}, err
	}
	return f.portPaths(busid, dev)
}

// portPaths is PortPaths for a device whose devpath is known.
func (f *FS) portPaths(busid, devpath string) (PortPaths, error) {
	comps := strings.Split(strings.TrimPrefix(devpath, "/"), "/")
	hub := -1
	for i, c := range comps {
		if strings.HasPrefix(c, "usb") && ValidBusID(c) == nil {
			hub = i
			break
		}
	}
	if hub < 1 || comps[len(comps)-1] != busid {
		return PortPaths{}, fmt.Errorf("usbsysfs: %s: %s has no root hub above the device: %w", busid, devpath, ErrNoPortPath)
	}
	ctrl, err := f.controllerPath(comps[:hub])
	if err != nil {
		return PortPaths{}, fmt.Errorf("usbsysfs: %s: %w", busid, err)
	}
	_, port, ok := strings.Cut(busid, "-")
	if !ok {
		return PortPaths{Path: ctrl, WithRevision: ctrl}, nil
	}
	pp := PortPaths{Path: ctrl + "-usb-0:" + port}
	pp.WithRevision = pp.Path
	if rev := f.usbRevision(filepath.Join(append([]string{f.root}, comps[:hub+1]...)...)); rev > 0 {
		pp.WithRevision = fmt.Sprintf("%s-usbv%d-0:%s", ctrl, rev, port)
	}
	return pp, nil
}

// controllerPath names the devices above a root hub, innermost first in
// the walk and outermost first in the result, as path_id does: each run of
// devices on one bus contributes its innermost device's name.
func (f *FS) controllerPath(comps []string) (string, error) {
	var parts []string
	last := ""
	for i := len(comps) - 1; i >= 1; i-- { // comps[0] is "devices"
		sub := f.subsystem(filepath.Join(append([]string{f.root}, comps[:i+1]...)...), comps[i])
		if sub == last && sub != "" {
			continue // an outer device of the same bus: skipped
		}
		last = sub
		if parentSubsystem(sub) {
			parts = append([]string{sub + "-" + comps[i]}, parts...)
		}
	}
	if len(parts) == 0 {
		return "", fmt.Errorf("/%s: %w", strings.Join(comps, "/"), ErrNoPortPath)
	}
	return strings.Join(parts, "-"), nil
}

// subsystem is the bus a sysfs device directory belongs to, from its
// subsystem link; a tree without the links (a fixture) falls back on the
// form of a PCI address.
func (f *FS) subsystem(dir, name string) string {
	if t, err := os.Readlink(filepath.Join(dir, "subsystem")); err == nil {
		return filepath.Base(t)
	}
	if isPCIAddr(name) {
		return "pci"
	}
	return ""
}

// usbRevision is a root hub's USB revision as path_id tells it: 3 for a
// SuperSpeed hub, 2 for a high-speed one, 1 for full speed; 0 when its
// attributes cannot be read.
func (f *FS) usbRevision(hubDir string) int {
	proto, err := f.readAttr(hubDir, "bDeviceProtocol")
	if err != nil {
		return 0
	}
	switch strings.TrimSpace(proto) {
	case "00": // no transaction translator: full speed, or high speed without one
		speed, err := f.readAttr(hubDir, "speed")
		switch {
		case err != nil:
			return 0
		case strings.TrimSpace(speed) == "480":
			return 2
		}
		return 1
	case "01", "02":
		return 2
	case "03":
		return 3
	}
	return 0
}

// PCI class codes of USB host controllers (class, subclass, prog-if).
const (
	pciUHCI = "0x0c0300"
	pciOHCI = "0x0c0310"
	pciEHCI = "0x0c0320"
)

// CompanionOf names the EHCI controller (its PCI address) whose
// companion the device's controller is: a UHCI or OHCI function in the
// PCI slot of an EHCI one, as Intel's and many chipsets' are. A full- or
// low-speed device plugged into one of the EHCI's sockets is handed to
// that companion, so its busid and port path are the companion's and a
// rule naming the EHCI's socket does not match it. "" when the
// controller is no companion, or is not on PCI.
func (f *FS) CompanionOf(busid string) (string, error) {
	devpath, err := f.DevPath(busid)
	if err != nil {
		return "", err
	}
	comps := strings.Split(strings.TrimPrefix(devpath, "/"), "/")
	hub := slices.IndexFunc(comps, func(c string) bool { return strings.HasPrefix(c, "usb") && ValidBusID(c) == nil })
	if hub < 2 || !isPCIAddr(comps[hub-1]) {
		return "", nil
	}
	ctrlDir := filepath.Join(append([]string{f.root}, comps[:hub]...)...)
	if class, _ := f.readAttr(ctrlDir, "class"); class != pciUHCI && class != pciOHCI {
		return "", nil
	}
	ctrl := comps[hub-1]
	slot := ctrl[:len(ctrl)-1] // "0000:00:1d."
	des, err := os.ReadDir(filepath.Dir(ctrlDir))
	if err != nil {
		return "", fmt.Errorf("usbsysfs: %s: %w", busid, err)
	}
	for _, de := range des {
		n := de.Name()
		if n != ctrl && strings.HasPrefix(n, slot) && isPCIAddr(n) {
			if class, _ := f.readAttr(filepath.Join(filepath.Dir(ctrlDir), n), "class"); class == pciEHCI {
				return n, nil
			}
		}
	}
	return "", nil
}
