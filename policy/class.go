package policy

import (
	"fmt"
	"strconv"
	"strings"
)

// classNames are the USB-IF base class codes by the names a policy may use
// for them (and `usbhotplugd devices` prints).
// (An array, static data: maps would be built at every start of every
// command.)
var classNames = [...]struct {
	name string
	code uint8
}{
	{"per-interface", 0x00}, {"audio", 0x01}, {"comm", 0x02}, {"hid", 0x03}, {"physical", 0x05},
	{"image", 0x06}, {"printer", 0x07}, {"storage", 0x08}, {"hub", 0x09}, {"cdc-data", 0x0a},
	{"smartcard", 0x0b}, {"content-security", 0x0d}, {"video", 0x0e}, {"healthcare", 0x0f},
	{"audio-video", 0x10}, {"billboard", 0x11}, {"type-c-bridge", 0x12}, {"diagnostic", 0xdc},
	{"wireless", 0xe0}, {"misc", 0xef}, {"application", 0xfe}, {"vendor", 0xff},
}

// ClassName is the name of a USB class code ("hid" for 0x03), or its two
// hex digits when it has none.
func ClassName(c uint8) string {
	for _, cn := range classNames {
		if cn.code == c {
			return cn.name
		}
	}
	return fmt.Sprintf("%02x", c)
}

// ParseClass reads a class given by name ("hid") or as two hex digits
// ("03", "0x03").
func ParseClass(s string) (uint8, error) {
	lower := strings.ToLower(s)
	for _, cn := range classNames {
		if cn.name == lower {
			return cn.code, nil
		}
	}
	h := strings.TrimPrefix(lower, "0x")
	if len(h) == 2 {
		if n, err := strconv.ParseUint(h, 16, 8); err == nil {
			return uint8(n), nil
		}
	}
	return 0, fmt.Errorf("%q is not a USB class: give a name (hid, storage, hub, ...) or two hex digits", s)
}

// InterfaceOnly says whether the USB-IF class-code table gives class c
// the descriptor usage "Interface": a device of that kind says so in its
// interface descriptors and has device class 00 (per-interface), so a
// match.class of it matches almost no device.
//
// Wireless controllers (e0) are left out though the table gives them
// "Interface" too: the Bluetooth specification has its dongles put
// e0:01:01 in the device descriptor, and most do.
func InterfaceOnly(c uint8) bool {
	switch c {
	case 0x01, 0x03, 0x05, 0x06, 0x07, 0x08, 0x0a, 0x0b, 0x0d, 0x0e, 0x0f, 0x10, 0x12, 0x13, 0x14, 0x3c, 0xfe:
		return true
	}
	return false
}
