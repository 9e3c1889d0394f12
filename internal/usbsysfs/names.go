package usbsysfs

import (
	"fmt"
	"strings"

	"github.com/usbhotplugd/usbhotplugd/internal/usbname"
)

// ErrInvalidName is wrapped by errors for busids and interface names that
// are not of the kernel's forms; it is usbname.ErrInvalid.
var ErrInvalidName = usbname.ErrInvalid

// ValidBusID accepts the kernel's names for USB devices, root hubs
// included (usbname.Valid).
func ValidBusID(s string) error { return usbname.Valid(s) }

// ValidInterface accepts the kernel's names for USB interfaces, a root
// hub's own "B-0:C.I" included (usbname.ValidInterface).
func ValidInterface(s string) error { return usbname.ValidInterface(s) }

// ValidDriver accepts a driver's name: one path element under
// /sys/bus/usb/drivers.
func ValidDriver(name string) error {
	if name == "" || name == "." || name == ".." || strings.ContainsAny(name, "/\x00") {
		return fmt.Errorf("%w: driver %q", ErrInvalidName, name)
	}
	return nil
}

// InterfaceBusID returns the device an interface belongs to: "1-1.6" for
// "1-1.6:1.0", "usb1" for a root hub's "1-0:1.0" (there is no device
// "1-0"), and "" for a name that is no interface.
func InterfaceBusID(intf string) string {
	d, err := usbname.DeviceOf(intf)
	if err != nil {
		return ""
	}
	return d
}
