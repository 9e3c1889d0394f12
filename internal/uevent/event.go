package uevent

import (
	"fmt"
	"path"
	"strconv"
	"strings"
)

// An Event is one kernel uevent.
type Event struct {
	Action    string // add, remove, change, move, online, offline, bind, unbind
	DevPath   string // /devices/pci0000:00/0000:00:14.0/usb1/1-6
	Subsystem string // usb
	DevType   string // usb_device, usb_interface
	Seqnum    uint64
	Env       map[string]string // every KEY=VALUE of the datagram
}

// Name is the last component of DevPath: a busid ("1-6") for a USB device,
// an interface name ("1-6:1.0") for an interface.
func (e Event) Name() string { return path.Base(e.DevPath) }

// IsUSBDevice reports a usb_device event.
func (e Event) IsUSBDevice() bool { return e.Subsystem == "usb" && e.DevType == "usb_device" }

// IsUSBInterface reports a usb_interface event.
func (e Event) IsUSBInterface() bool { return e.Subsystem == "usb" && e.DevType == "usb_interface" }

// Synthetic reports an event made by writing to a uevent file: it carries
// SYNTH_UUID and says nothing about a real change.
func (e Event) Synthetic() bool { _, ok := e.Env["SYNTH_UUID"]; return ok }

// Driver is the DRIVER key (set on bind and on some change events).
func (e Event) Driver() string { return e.Env["DRIVER"] }

// Product decodes PRODUCT ("627/1/0": vendor, product, bcdDevice in hex
// without leading zeros).
func (e Event) Product() (vendor, product, bcd uint16, err error) {
	f := strings.Split(e.Env["PRODUCT"], "/")
	if len(f) != 3 {
		return 0, 0, 0, fmt.Errorf("uevent %s: PRODUCT %q is not vendor/product/bcd", e.DevPath, e.Env["PRODUCT"])
	}
	var v [3]uint16
	for i, s := range f {
		n, perr := strconv.ParseUint(s, 16, 16)
		if perr != nil {
			return 0, 0, 0, fmt.Errorf("uevent %s: PRODUCT %q: %w", e.DevPath, e.Env["PRODUCT"], perr)
		}
		v[i] = uint16(n)
	}
	return v[0], v[1], v[2], nil
}

func triple(e Event, key string) (a, b, c uint8, err error) {
	f := strings.Split(e.Env[key], "/")
	if len(f) != 3 {
		return 0, 0, 0, fmt.Errorf("uevent %s: %s %q is not a/b/c", e.DevPath, key, e.Env[key])
	}
	var v [3]uint8
	for i, s := range f {
		n, perr := strconv.ParseUint(s, 10, 8)
		if perr != nil {
			return 0, 0, 0, fmt.Errorf("uevent %s: %s %q: %w", e.DevPath, key, e.Env[key], perr)
		}
		v[i] = uint8(n)
	}
	return v[0], v[1], v[2], nil
}

// Type decodes TYPE (device class/subclass/protocol, decimal).
func (e Event) Type() (class, subclass, protocol uint8, err error) { return triple(e, "TYPE") }

// Interface decodes INTERFACE (interface class/subclass/protocol, decimal).
func (e Event) Interface() (class, subclass, protocol uint8, err error) {
	return triple(e, "INTERFACE")
}

// BusNum and DevNum decode the zero-padded BUSNUM and DEVNUM of usb_device
// events; ok is false when the key is absent or malformed.
func (e Event) BusNum() (int, bool) { return num(e.Env["BUSNUM"]) }

// DevNum is the device number; see BusNum.
func (e Event) DevNum() (int, bool) { return num(e.Env["DEVNUM"]) }

func num(s string) (int, bool) {
	n, err := strconv.Atoi(s)
	return n, err == nil && n >= 0
}
