package uevent

import "github.com/pilebones/go-udev/netlink"

// decode is go-udev's decoding of a datagram: its header's action and
// object, and its keys. go-udev's netlink package builds on Linux only.
func decode(b []byte) (action, kobj string, env map[string]string, err error) {
	u, err := netlink.ParseUEvent(b)
	if err != nil {
		return "", "", nil, err
	}
	return string(u.Action), u.KObj, u.Env, nil
}
