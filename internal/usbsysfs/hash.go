package usbsysfs

import (
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
)

// Descriptor identity. A device without a serial, or twins with the same
// one, can still be named by what it is: a hash of its descriptors,
// computed as USBGuard computes its rules' hash (SHA-256 over the product
// string, idVendor, idProduct and serial as sysfs gives them, then the
// descriptors attribute: the device descriptor and every configuration as
// the device sent them; base64). The hash does not depend on the bus
// number or the port, so it survives renumbering; identical twins share it.
// The parent hash is the hub's hash, or, for a root hub, the hash of its
// controller's sysfs path.

// hashAttrs are the string attributes hashed before the descriptors.
var hashAttrs = [...]string{"product", "idVendor", "idProduct", "serial"}

// Hash returns a device's descriptor hash; "" when sysfs has no
// descriptors attribute for it.
func (f *FS) Hash(busid string) (string, error) {
	if err := ValidBusID(busid); err != nil {
		return "", err
	}
	return f.hashDir(f.devPath(busid), nil)
}

// ParentHash returns the hash of the device's parent: its hub's Hash, or
// for a root hub the hash of the controller's path under /sys.
func (f *FS) ParentHash(busid string) (string, error) {
	if err := ValidBusID(busid); err != nil {
		return "", err
	}
	if strings.HasPrefix(busid, "usb") {
		dev, err := f.DevPath(busid)
		if err != nil {
			return "", err
		}
		return controllerHash(dev), nil
	}
	return f.hashDir(f.devPath(parentBusID(busid)), nil)
}

// controllerHash is a root hub's parent hash: the hash of the sysfs path
// of the device above it ("/sys/devices/pci0000:00/0000:00:14.0"), under
// /sys whatever the tree's root, so that a fixture hashes as the host.
func controllerHash(rootHubDevPath string) string {
	sum := sha256.Sum256([]byte("/sys" + filepath.Dir(rootHubDevPath)))
	return base64.StdEncoding.EncodeToString(sum[:])
}

func parentBusID(busid string) string {
	if i := strings.LastIndexByte(busid, '.'); i >= 0 {
		return busid[:i]
	}
	bus, _, _ := strings.Cut(busid, "-")
	return "usb" + bus
}

// hashDir hashes the device in dir. attrs, when not nil, are the values
// of hashAttrs read a moment ago ("" for a missing one), not read again.
func (f *FS) hashDir(dir string, attrs *[len(hashAttrs)]string) (string, error) {
	desc, err := readSmall(filepath.Join(dir, "descriptors"))
	if errors.Is(err, fs.ErrNotExist) {
		if _, serr := os.Stat(dir); serr != nil {
			return "", fmt.Errorf("usbsysfs: %w", serr)
		}
		return "", nil
	}
	if err != nil {
		return "", fmt.Errorf("usbsysfs: %w", err)
	}
	if err := checkDescriptors(desc); err != nil {
		return "", fmt.Errorf("usbsysfs: %s: %w", filepath.Join(dir, "descriptors"), err)
	}
	h := sha256.New()
	for i, a := range hashAttrs {
		if attrs != nil {
			h.Write([]byte(attrs[i]))
			continue
		}
		v, err := f.readAttr(dir, a)
		if err != nil && !errors.Is(err, fs.ErrNotExist) {
			return "", fmt.Errorf("usbsysfs: %w", err)
		}
		h.Write([]byte(v))
	}
	h.Write(desc)
	return base64.StdEncoding.EncodeToString(h.Sum(nil)), nil
}

// checkDescriptors accepts what the kernel writes: a device descriptor,
// then configurations, each starting with a configuration header. Only
// that much is required: the kernel writes the device descriptor's
// bLength as the device sent it, and a configuration it trimmed (a
// device's descriptor too short, or one of length 0 inside it) keeps the
// device's own wTotalLength in its header though fewer bytes follow
// (usb_parse_configuration, read_descriptors). Such a device is hashed
// as the kernel shows it; a file that starts otherwise is no descriptors
// attribute.
func checkDescriptors(b []byte) error {
	if len(b) < 18 || b[1] != 1 {
		return fmt.Errorf("%w: no device descriptor at the start", ErrBadAttr)
	}
	for off := 18; off < len(b); {
		if len(b)-off < 9 || b[off+1] != 2 {
			return fmt.Errorf("%w: no configuration descriptor at byte %d", ErrBadAttr, off)
		}
		total := int(b[off+2]) | int(b[off+3])<<8
		if total < 9 || total > len(b)-off {
			return nil // trimmed by the kernel: where the next one starts is not known
		}
		off += total
	}
	return nil
}

// identify fills in a device's stable identities: its port paths and
// hashes. A controller on no stable bus leaves the port paths empty.
// hashed are the device's hashAttrs as device read them; parentHash and
// parentErr its hub's hash as readHeld read it (nothing for a root hub).
func (f *FS) identify(d *Device, hashed *[len(hashAttrs)]string, parentHash string, parentErr error) error {
	dev, err := f.DevPath(d.BusID)
	if err != nil {
		return err
	}
	pp, err := f.portPaths(d.BusID, dev)
	if err != nil && !errors.Is(err, ErrNoPortPath) {
		return err
	}
	d.PortPath, d.PortPathRev = pp.Path, pp.WithRevision
	if d.Hash, err = f.hashDir(f.devPath(d.BusID), hashed); err != nil {
		return err
	}
	if d.IsRootHub() {
		d.ParentHash = controllerHash(dev)
		return nil
	}
	d.ParentHash, err = parentHash, parentErr
	if errors.Is(err, fs.ErrNotExist) {
		d.ParentHash, err = "", nil // the hub left while we looked; the device follows
	}
	return err
}
