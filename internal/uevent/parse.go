package uevent

import (
	"bytes"
	"errors"
	"fmt"
	"slices"
	"strconv"

	"github.com/pilebones/go-udev/netlink"
)

// MaxDatagram is the largest datagram accepted: the kernel's uevent buffer
// is 2048 bytes of environment plus the header; 8 KiB leaves room.
const MaxDatagram = 8192

// ErrMalformed is wrapped by every error for a datagram that is refused.
var ErrMalformed = errors.New("malformed uevent")

var actions = map[string]bool{"add": true, "remove": true, "change": true, "move": true, "online": true, "offline": true, "bind": true, "unbind": true}

func refuse(format string, a ...any) error {
	return fmt.Errorf("%w: %s", ErrMalformed, fmt.Sprintf(format, a...))
}

// Validate checks a kernel datagram before any parser sees it:
// "action@devpath\0KEY=VALUE\0...", NUL-terminated, printable, with ACTION,
// DEVPATH, SUBSYSTEM and SEQNUM present and agreeing with the header, no
// key twice, and no libudev (userspace) message.
func Validate(b []byte) error {
	if len(b) < 8 {
		return refuse("%d bytes is too short", len(b))
	}
	if len(b) > MaxDatagram {
		return refuse("%d bytes is more than %d", len(b), MaxDatagram)
	}
	if bytes.HasPrefix(b, []byte("libudev\x00")) {
		return refuse("a libudev message, not a kernel one")
	}
	if b[len(b)-1] != 0 {
		return refuse("not NUL-terminated")
	}
	fields := bytes.Split(b[:len(b)-1], []byte{0})
	hdr := fields[0]
	at := bytes.IndexByte(hdr, '@')
	if at < 1 {
		return refuse("header %q is not action@devpath", trim(hdr))
	}
	action, devpath := string(hdr[:at]), string(hdr[at+1:])
	if !actions[action] {
		return refuse("unknown action %q", trim(hdr[:at]))
	}
	if len(devpath) < 2 || devpath[0] != '/' {
		return refuse("devpath %q is not absolute", trim(hdr[at+1:]))
	}
	seen := map[string]string{}
	for i, f := range fields[1:] {
		if len(f) == 0 {
			return refuse("empty field %d", i+1)
		}
		for _, c := range f {
			if c < 0x20 || c > 0x7e {
				return refuse("field %d has byte 0x%02x", i+1, c)
			}
		}
		k, v, ok := bytes.Cut(f, []byte("="))
		if !ok || len(k) == 0 {
			return refuse("field %q is not KEY=VALUE", trim(f))
		}
		if bytes.IndexByte(v, '=') >= 0 {
			return refuse("field %q has '=' in its value", trim(f))
		}
		if _, dup := seen[string(k)]; dup {
			return refuse("key %s appears twice", k)
		}
		seen[string(k)] = string(v)
	}
	if seen["ACTION"] != action {
		return refuse("ACTION %q does not match header action %q", seen["ACTION"], action)
	}
	if seen["DEVPATH"] != devpath {
		return refuse("DEVPATH %q does not match header %q", seen["DEVPATH"], devpath)
	}
	if seen["SUBSYSTEM"] == "" {
		return refuse("no SUBSYSTEM")
	}
	if _, err := strconv.ParseUint(seen["SEQNUM"], 10, 64); err != nil {
		return refuse("SEQNUM %q is not a number", seen["SEQNUM"])
	}
	return nil
}

func trim(b []byte) string {
	if len(b) > 64 {
		b = b[:64]
	}
	return string(b)
}

// Parse validates a kernel datagram and decodes it.
func Parse(b []byte) (Event, error) {
	if err := Validate(b); err != nil {
		return Event{}, err
	}
	u, err := netlink.ParseUEvent(b)
	if err != nil {
		return Event{}, refuse("%v", err)
	}
	seq, _ := strconv.ParseUint(u.Env["SEQNUM"], 10, 64)
	return Event{
		Action:    string(u.Action),
		DevPath:   u.KObj,
		Subsystem: u.Env["SUBSYSTEM"],
		DevType:   u.Env["DEVTYPE"],
		Seqnum:    seq,
		Env:       u.Env,
	}, nil
}

// Marshal encodes an event as the kernel would send it: the header, then
// ACTION, DEVPATH, SUBSYSTEM, the other keys sorted, SEQNUM last.
func Marshal(e Event) []byte {
	var b bytes.Buffer
	fmt.Fprintf(&b, "%s@%s\x00ACTION=%s\x00DEVPATH=%s\x00SUBSYSTEM=%s\x00", e.Action, e.DevPath, e.Action, e.DevPath, e.Subsystem)
	keys := make([]string, 0, len(e.Env))
	for k := range e.Env {
		switch k {
		case "ACTION", "DEVPATH", "SUBSYSTEM", "SEQNUM":
			continue
		}
		keys = append(keys, k)
	}
	slices.Sort(keys)
	for _, k := range keys {
		fmt.Fprintf(&b, "%s=%s\x00", k, e.Env[k])
	}
	fmt.Fprintf(&b, "SEQNUM=%d\x00", e.Seqnum)
	return b.Bytes()
}

// ReadRecords splits the capture format of shared/real-kernel
// (records of a little-endian uint32 length and that many bytes).
func ReadRecords(b []byte) ([][]byte, error) {
	var out [][]byte
	for len(b) > 0 {
		if len(b) < 4 {
			return nil, refuse("truncated record length")
		}
		n := int(uint32(b[0]) | uint32(b[1])<<8 | uint32(b[2])<<16 | uint32(b[3])<<24)
		b = b[4:]
		if n > len(b) || n > MaxDatagram {
			return nil, refuse("record of %d bytes with %d left", n, len(b))
		}
		out = append(out, b[:n])
		b = b[n:]
	}
	return out, nil
}
