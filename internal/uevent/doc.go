// Package uevent receives and parses the kernel's device events.
//
// # Parsing
//
// Parse validates a NETLINK_KOBJECT_UEVENT datagram (size, termination,
// KEY=VALUE fields with printable keys and values free of control
// characters, a header that agrees with ACTION and DEVPATH)
// before github.com/pilebones/go-udev decodes it, so malformed input is an
// error naming what is wrong, never a panic.
//
// # Listening (Linux only)
//
// A Listener owns its own netlink socket, bound to group 1: close-on-exec,
// non-blocking behind os.NewFile so that Close and context cancellation
// unblock a read at once, with SO_RCVBUFFORCE (falling back to SO_RCVBUF).
// It accepts datagrams only from the kernel (sender port id 0), sizes each
// datagram with MSG_PEEK|MSG_TRUNC, and reports a receive-buffer overrun
// (ENOBUFS) as an Overrun message, after which the caller must rescan sysfs;
// the Listener itself keeps listening. A datagram of the kernel's that
// fails validation is a lost event too: it comes as a Refused message,
// with the same duty to rescan.
//
// Which events matter to the agent is decided by the agent, not here.
package uevent
