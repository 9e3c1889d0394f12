package usbsysfs

import (
	"errors"
	"fmt"
	"strconv"
	"strings"
)

// ErrInvalidName is wrapped by errors for busids and interface names that
// are not of the kernel's forms.
var ErrInvalidName = errors.New("invalid USB device name")

func decimal(s string, max int) bool {
	if s == "" || len(s) > 3 || (len(s) > 1 && s[0] == '0') {
		return false
	}
	n, err := strconv.Atoi(s)
	return err == nil && n >= 0 && n <= max
}

// ValidBusID accepts the kernel's names for USB devices: a root hub "usbN",
// or "B-P[.P...]" (bus, then the port path, at most 7 tiers deep).
func ValidBusID(s string) error {
	if strings.HasPrefix(s, "usb") {
		if decimal(s[3:], 999) && s[3:] != "0" {
			return nil
		}
		return fmt.Errorf("%w: busid %q", ErrInvalidName, s)
	}
	bus, ports, ok := strings.Cut(s, "-")
	if !ok || !decimal(bus, 999) || bus == "0" {
		return fmt.Errorf("%w: busid %q", ErrInvalidName, s)
	}
	parts := strings.Split(ports, ".")
	if len(parts) > 7 {
		return fmt.Errorf("%w: busid %q: more than 7 tiers", ErrInvalidName, s)
	}
	for _, p := range parts {
		if !decimal(p, 255) {
			return fmt.Errorf("%w: busid %q", ErrInvalidName, s)
		}
	}
	return nil
}

// ValidInterface accepts "<busid>:<config>.<interface>", including a root
// hub's own interface "B-0:1.0".
func ValidInterface(s string) error {
	dev, ci, ok := strings.Cut(s, ":")
	if !ok {
		return fmt.Errorf("%w: interface %q", ErrInvalidName, s)
	}
	cfg, ifn, ok := strings.Cut(ci, ".")
	if !ok || !decimal(cfg, 255) || !decimal(ifn, 255) {
		return fmt.Errorf("%w: interface %q", ErrInvalidName, s)
	}
	if bus, port, ok := strings.Cut(dev, "-"); ok && port == "0" && decimal(bus, 999) && bus != "0" {
		return nil // a root hub's interface
	}
	if err := ValidBusID(dev); err != nil || strings.HasPrefix(dev, "usb") {
		return fmt.Errorf("%w: interface %q", ErrInvalidName, s)
	}
	return nil
}

// InterfaceBusID returns the busid part of an interface name.
func InterfaceBusID(intf string) string {
	b, _, _ := strings.Cut(intf, ":")
	return b
}
