package uevent

import (
	"bytes"
	"strings"

	"github.com/pilebones/go-udev/netlink"
)

// decode is go-udev's decoding of a datagram: its header's action and
// object, and its keys. go-udev's netlink package builds on Linux only.
//
// The header is split at its first '@', as the kernel joins it
// (kobject_uevent_env's "%s@%s"): a devpath may hold more, a devicetree
// node's unit address (an i.MX 8's or a Qualcomm SoC's USB is under
// /devices/platform/soc@0/), and go-udev refuses a header with two. Such a
// datagram is given to go-udev with a devpath of none, for its keys.
//
// go-udev also refuses a field with a second '=', which a value may hold
// (Validate says which). Each such '=' is handed to it as 0x01, which
// Validate refuses in a datagram, and turned back in the values it gives.
func decode(b []byte) (action, kobj string, env map[string]string, err error) {
	hdr, rest, _ := bytes.Cut(b, []byte{0})
	at := bytes.IndexByte(hdr, '@')
	twoAt := at >= 0 && bytes.IndexByte(hdr[at+1:], '@') >= 0
	eqs := valueEquals(rest)
	if twoAt || eqs {
		clean := make([]byte, 0, len(b))
		if twoAt {
			clean = append(append(clean, hdr[:at]...), "@/\x00"...)
			kobj = string(hdr[at+1:])
		} else {
			clean = append(append(clean, hdr...), 0)
		}
		start := len(clean)
		clean = append(clean, rest...)
		if eqs {
			escapeValueEquals(clean[start:])
		}
		b = clean
	}
	u, err := netlink.ParseUEvent(b)
	if err != nil {
		return "", "", nil, err
	}
	if !twoAt {
		kobj = u.KObj
	}
	if eqs {
		for k, v := range u.Env {
			if strings.IndexByte(v, equalsStandIn) >= 0 {
				u.Env[k] = strings.ReplaceAll(v, string(rune(equalsStandIn)), "=")
			}
		}
	}
	return string(u.Action), kobj, u.Env, nil
}

// equalsStandIn is what a value's '=' is given to go-udev as.
const equalsStandIn = 0x01

// valueEquals says whether a field of fields (NUL-separated) has an '='
// after its first.
func valueEquals(fields []byte) bool {
	for len(fields) > 0 {
		f, next, _ := bytes.Cut(fields, []byte{0})
		fields = next
		if eq := bytes.IndexByte(f, '='); eq >= 0 && bytes.IndexByte(f[eq+1:], '=') >= 0 {
			return true
		}
	}
	return false
}

// escapeValueEquals replaces, in place, every '=' after the first of
// each field with equalsStandIn.
func escapeValueEquals(fields []byte) {
	first := true
	for i, c := range fields {
		switch {
		case c == 0:
			first = true
		case c == '=' && first:
			first = false
		case c == '=':
			fields[i] = equalsStandIn
		}
	}
}
