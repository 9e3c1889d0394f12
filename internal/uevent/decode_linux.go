package uevent

import (
	"bytes"

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
func decode(b []byte) (action, kobj string, env map[string]string, err error) {
	hdr, rest, _ := bytes.Cut(b, []byte{0})
	at := bytes.IndexByte(hdr, '@')
	if at >= 0 && bytes.IndexByte(hdr[at+1:], '@') >= 0 {
		clean := make([]byte, 0, at+3+len(rest))
		clean = append(append(append(clean, hdr[:at]...), "@/\x00"...), rest...)
		u, err := netlink.ParseUEvent(clean)
		if err != nil {
			return "", "", nil, err
		}
		return string(u.Action), string(hdr[at+1:]), u.Env, nil
	}
	u, err := netlink.ParseUEvent(b)
	if err != nil {
		return "", "", nil, err
	}
	return string(u.Action), u.KObj, u.Env, nil
}
