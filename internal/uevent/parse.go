package uevent

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"slices"
	"strconv"
)

// MaxDatagram is the largest datagram accepted: the kernel's uevent buffer
// is 2048 bytes of environment plus the header; 8 KiB leaves room.
const MaxDatagram = 8192

// ErrMalformed is wrapped by every error for a datagram that is refused.
var ErrMalformed = errors.New("malformed uevent")

// KnownAction says a is an action the kernel sends a uevent with.
func KnownAction(a string) bool {
	switch a {
	case "add", "remove", "change", "move", "online", "offline", "bind", "unbind":
		return true
	}
	return false
}

func refuse(format string, a ...any) error {
	return fmt.Errorf("%w: %s", ErrMalformed, fmt.Sprintf(format, a...))
}

// Validate checks the form of a kernel datagram before any parser sees it:
// "action@devpath\0KEY=VALUE\0...", of a sane size, NUL-terminated, a
// known action, keys of printable ASCII, values free of control
// characters, and no libudev (userspace) message. Parse adds the checks
// that need the decoded keys.
//
// A value may hold '=' and bytes above 0x7e: add_uevent_var copies what
// it is given, and a GPT partition's PARTNAME, a dm device's name or a
// synthetic event's SYNTH_ARG_ carry both on real hosts.
func Validate(b []byte) error {
	_, err := validate(b)
	return err
}

// validate returns the number of KEY=VALUE fields, which Parse compares
// with the decoded keys to find a key given twice.
func validate(b []byte) (int, error) {
	if len(b) < 8 {
		return 0, refuse("%d bytes is too short", len(b))
	}
	if len(b) > MaxDatagram {
		return 0, refuse("%d bytes is more than %d", len(b), MaxDatagram)
	}
	if bytes.HasPrefix(b, []byte("libudev\x00")) {
		return 0, refuse("a libudev message, not a kernel one")
	}
	if b[len(b)-1] != 0 {
		return 0, refuse("not NUL-terminated")
	}
	hdr, rest, _ := bytes.Cut(b[:len(b)-1], []byte{0})
	at := bytes.IndexByte(hdr, '@')
	if at < 1 {
		return 0, refuse("header %q is not action@devpath", trim(hdr))
	}
	if !KnownAction(string(hdr[:at])) {
		return 0, refuse("unknown action %q", trim(hdr[:at]))
	}
	if len(hdr) < at+3 || hdr[at+1] != '/' {
		return 0, refuse("devpath %q is not absolute", trim(hdr[at+1:]))
	}
	n := 0
	for len(rest) > 0 || n == 0 {
		f, next, _ := bytes.Cut(rest, []byte{0})
		rest = next
		n++
		if len(f) == 0 {
			return 0, refuse("empty field %d", n)
		}
		eq := bytes.IndexByte(f, '=')
		if eq < 1 {
			return 0, refuse("field %q is not KEY=VALUE", trim(f))
		}
		for i, c := range f {
			if c < 0x20 || c == 0x7f || c > 0x7e && i < eq {
				return 0, refuse("field %d has byte 0x%02x", n, c)
			}
		}
	}
	return n, nil
}

// SubsystemOf is the subsystem a datagram names, even one that fails
// validation: the value of its one SUBSYSTEM field, if that is a short
// word of lower-case letters, digits, '_' or '-'; "" when there is no such
// field, or more than one. The kernel copies what a device says of itself
// (a USB product string, in an input or hid device's NAME) into the
// events of other subsystems unfiltered, so a device can make those fail
// validation; their subsystem tells whether anything was lost.
func SubsystemOf(b []byte) string {
	var sub []byte
	n := 0
	for f := range bytes.SplitSeq(b, []byte{0}) {
		if v, ok := bytes.CutPrefix(f, []byte("SUBSYSTEM=")); ok {
			sub = v
			n++
		}
	}
	if n != 1 || len(sub) == 0 || len(sub) > 64 {
		return ""
	}
	for _, c := range sub {
		if !('a' <= c && c <= 'z' || '0' <= c && c <= '9' || c == '_' || c == '-') {
			return ""
		}
	}
	return string(sub)
}

func trim(b []byte) string {
	if len(b) > 64 {
		b = b[:64]
	}
	return string(b)
}

// Parse validates a kernel datagram and decodes it with go-udev; the
// decoded keys must name each key once, carry ACTION and DEVPATH equal to
// the header's, a SUBSYSTEM and a numeric SEQNUM.
func Parse(b []byte) (Event, error) {
	fields, err := validate(b)
	if err != nil {
		return Event{}, err
	}
	action, kobj, env, err := decode(b)
	if err != nil {
		return Event{}, refuse("%v", err)
	}
	if len(env) != fields {
		return Event{}, refuse("%d fields but %d distinct keys: a key appears twice", fields, len(env))
	}
	if env["ACTION"] != action {
		return Event{}, refuse("ACTION %q does not match header action %q", env["ACTION"], action)
	}
	if env["DEVPATH"] != kobj {
		return Event{}, refuse("DEVPATH %q does not match header %q", env["DEVPATH"], kobj)
	}
	if env["SUBSYSTEM"] == "" {
		return Event{}, refuse("no SUBSYSTEM")
	}
	seq, err := strconv.ParseUint(env["SEQNUM"], 10, 64)
	if err != nil {
		return Event{}, refuse("SEQNUM %q is not a number", env["SEQNUM"])
	}
	return Event{
		Action:    action,
		DevPath:   kobj,
		Subsystem: env["SUBSYSTEM"],
		DevType:   env["DEVTYPE"],
		Seqnum:    seq,
		Env:       env,
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
		n := int(binary.LittleEndian.Uint32(b))
		b = b[4:]
		if n > len(b) || n > MaxDatagram {
			return nil, refuse("record of %d bytes with %d left", n, len(b))
		}
		out = append(out, b[:n])
		b = b[n:]
	}
	return out, nil
}
