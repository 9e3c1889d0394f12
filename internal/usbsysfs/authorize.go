package usbsysfs

import (
	"fmt"
	"io/fs"
	"path/filepath"
	"strings"
)

// USB authorization (the kernel's Documentation/usb/authorization.rst):
// a deauthorized device has no interfaces; a deauthorized interface is
// never probed by a driver, and authorizing it probes nothing, so it is
// then offered to the drivers with Probe or bound with Bind. A root hub's
// interface_authorized_default is the authorization its bus's new
// interfaces get.

func flag(on bool) []byte {
	if on {
		return []byte("1")
	}
	return []byte("0")
}

func (f *FS) writeAttr(name, attr string, on bool) error {
	p := filepath.Join(f.devPath(name), attr)
	if err := f.w.WriteAttr(p, flag(on)); err != nil {
		return fmt.Errorf("usbsysfs: %s %s = %s: %w", name, attr, flag(on), &fs.PathError{Op: "write", Path: p, Err: unwrapPath(err)})
	}
	return nil
}

// SetAuthorized authorizes a device (its interfaces come back and are
// probed, unless deauthorized by default) or deauthorizes it (its
// interfaces go, their drivers unbound).
func (f *FS) SetAuthorized(busid string, on bool) error {
	if err := ValidBusID(busid); err != nil {
		return err
	}
	return f.writeAttr(busid, "authorized", on)
}

// SetInterfaceAuthorized authorizes an interface (nothing is probed) or
// deauthorizes it (its driver is unbound, and none will probe it).
func (f *FS) SetInterfaceAuthorized(intf string, on bool) error {
	if err := ValidInterface(intf); err != nil {
		return err
	}
	return f.writeAttr(intf, "authorized", on)
}

// InterfaceAuthorizedDefault reads a root hub's
// interface_authorized_default: whether its bus's new interfaces are
// authorized. A kernel without the attribute authorizes them.
func (f *FS) InterfaceAuthorizedDefault(roothub string) (bool, error) {
	if err := checkRootHub(roothub); err != nil {
		return false, err
	}
	v, err := f.readAttr(f.devPath(roothub), "interface_authorized_default")
	if err != nil {
		if _, serr := f.readAttr(f.devPath(roothub), "busnum"); serr != nil {
			return false, fmt.Errorf("usbsysfs: %w", serr)
		}
		return true, nil
	}
	return strings.TrimSpace(v) != "0", nil
}

// SetInterfaceAuthorizedDefault sets a root hub's
// interface_authorized_default; the interfaces already there keep theirs.
func (f *FS) SetInterfaceAuthorizedDefault(roothub string, on bool) error {
	if err := checkRootHub(roothub); err != nil {
		return err
	}
	return f.writeAttr(roothub, "interface_authorized_default", on)
}

func checkRootHub(name string) error {
	if err := ValidBusID(name); err != nil {
		return err
	}
	if !strings.HasPrefix(name, "usb") {
		return fmt.Errorf("%w: %q is not a root hub (usbN)", ErrInvalidName, name)
	}
	return nil
}
