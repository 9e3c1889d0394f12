package uevent

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"
)

// kernelUSBKey says whether k is one of the keys the kernel puts in usb events. A UDEV block
// adds udev's own (ID_*, TAGS, DEVLINKS, ...) to them; only these are kept,
// so a --udev capture imports to the events the kernel sent.
func kernelUSBKey(k string) bool {
	switch k {
	case "ACTION", "DEVPATH", "SUBSYSTEM", "DEVTYPE", "DRIVER", "SEQNUM", "MAJOR", "MINOR", "DEVNAME", "DEVMODE", "DEVUID", "DEVGID", "PRODUCT", "TYPE", "INTERFACE", "MODALIAS", "BUSNUM", "DEVNUM", "SYNTH_UUID":
		return true
	}
	return false
}

// ImportUdevadm reads the text of `udevadm monitor --property` with
// --kernel, --udev or both, and returns its events as trace records.
//
// KERNEL blocks are taken as they are. UDEV blocks are taken for the usb
// subsystem only, with udev's keys removed; udev's ID_SERIAL_SHORT is kept
// as the device's serial attribute, since no kernel event carries it. When
// a capture has both, an event is taken once (its KERNEL block, with the
// UDEV block's serial). name is used in errors.
func ImportUdevadm(r io.Reader, name string) ([]Record, error) {
	if name == "" {
		name = "udevadm"
	}
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 0, 4096), MaxTraceLine)
	var (
		out    []Record
		bySeq  = map[uint64]int{} // index in out of the event with that SEQNUM
		kernel []bool             // whether out[i] came from a KERNEL block
		blk    *block
		line   int
		failAt = func(l int, format string, a ...any) error {
			return &TraceError{Name: name, Line: l, Err: fmt.Errorf(format, a...)}
		}
	)
	finish := func() error {
		if blk == nil {
			return nil
		}
		b := blk
		blk = nil
		rec, ok, err := b.record()
		if err != nil {
			return &TraceError{Name: name, Line: b.line, Err: err}
		}
		if !ok {
			return nil
		}
		seq := rec.Event.Seqnum
		if i, dup := bySeq[seq]; dup {
			if b.kernel == kernel[i] {
				return failAt(b.line, "a second %s event with SEQNUM %d", b.source, seq)
			}
			// The kernel's event, the UDEV block's serial.
			if b.kernel {
				rec.Sysfs = out[i].Sysfs
				out[i] = rec
				kernel[i] = true
			} else {
				out[i].Sysfs = rec.Sysfs
			}
			return nil
		}
		bySeq[seq] = len(out)
		out = append(out, rec)
		kernel = append(kernel, b.kernel)
		return nil
	}
	started := false
	for sc.Scan() {
		line++
		text := strings.TrimRight(sc.Text(), "\r")
		if h, ok, err := parseMonitorHeader(text); ok {
			if err := finish(); err != nil {
				return nil, err
			}
			if err != nil {
				return nil, failAt(line, "%v", err)
			}
			h.line = line
			blk = h
			started = true
			continue
		}
		if strings.TrimSpace(text) == "" {
			if err := finish(); err != nil {
				return nil, err
			}
			continue
		}
		if !started {
			if preamble(text) {
				continue
			}
			return nil, failAt(line, "%q is not udevadm monitor output", clip(text))
		}
		if blk == nil {
			return nil, failAt(line, "%q is outside an event block", clip(text))
		}
		k, v, ok := strings.Cut(text, "=")
		if !ok || k == "" {
			return nil, failAt(line, "%q is not KEY=VALUE", clip(text))
		}
		if _, dup := blk.env[k]; dup {
			return nil, failAt(line, "key %s given twice in the event of line %d", k, blk.line)
		}
		blk.env[k] = v
	}
	if err := sc.Err(); err != nil {
		return nil, failAt(line+1, "%v", err)
	}
	if err := finish(); err != nil {
		return nil, err
	}
	return out, nil
}

type block struct {
	kernel                     bool
	source                     string // KERNEL or UDEV
	action, devpath, subsystem string
	line                       int
	env                        map[string]string
}

func (b *block) record() (Record, bool, error) {
	if len(b.env) == 0 {
		return Record{}, false, errors.New("an event without properties: capture with `udevadm monitor --property`")
	}
	if !b.kernel && b.env["SUBSYSTEM"] != "usb" {
		return Record{}, false, nil
	}
	env := b.env
	var serial string
	if !b.kernel {
		serial = env["ID_SERIAL_SHORT"]
		env = make(map[string]string, len(b.env))
		for k, v := range b.env {
			if kernelUSBKey(k) {
				env[k] = v
			}
		}
		// udev names the node under /dev; the kernel does not.
		if dn, ok := env["DEVNAME"]; ok {
			env["DEVNAME"] = strings.TrimPrefix(dn, "/dev/")
		}
	}
	seq, err := strconv.ParseUint(env["SEQNUM"], 10, 64)
	if err != nil {
		return Record{}, false, fmt.Errorf("SEQNUM %q is not a number", env["SEQNUM"])
	}
	e := Event{Action: env["ACTION"], DevPath: env["DEVPATH"], Subsystem: env["SUBSYSTEM"], DevType: env["DEVTYPE"], Seqnum: seq, Env: env}
	if e.Action != b.action || e.DevPath != b.devpath || e.Subsystem != b.subsystem {
		return Record{}, false, fmt.Errorf("the header says %s %s (%s) but the properties say %s %s (%s)", b.action, b.devpath, b.subsystem, e.Action, e.DevPath, e.Subsystem)
	}
	ev, err := checkEvent(e)
	if err != nil {
		return Record{}, false, err
	}
	rec := Record{Event: &ev}
	if serial != "" && ev.IsUSBDevice() && ev.Action == "add" {
		rec.Sysfs = map[string]string{"serial": serial}
	}
	return rec, true, nil
}

// parseMonitorHeader reads "KERNEL[125.461926] add      /devices/... (usb)"
// and "UDEV  [125.48] add ...". ok is false for any other line.
func parseMonitorHeader(s string) (*block, bool, error) {
	var src string
	switch {
	case strings.HasPrefix(s, "KERNEL["):
		src = "KERNEL"
	case strings.HasPrefix(s, "UDEV"):
		src = "UDEV"
		rest := strings.TrimLeft(s[4:], " ")
		if !strings.HasPrefix(rest, "[") {
			return nil, false, nil
		}
	default:
		return nil, false, nil
	}
	rest := strings.TrimLeft(s[len(src):], " ")
	end := strings.IndexByte(rest, ']')
	if !strings.HasPrefix(rest, "[") || end < 0 {
		return nil, true, fmt.Errorf("%s header %q has no [timestamp]", src, clip(s))
	}
	if _, err := strconv.ParseFloat(rest[1:end], 64); err != nil {
		return nil, true, fmt.Errorf("%s header %q: timestamp %q", src, clip(s), rest[1:end])
	}
	f := strings.Fields(rest[end+1:])
	if len(f) != 3 || len(f[2]) < 2 || f[2][0] != '(' || f[2][len(f[2])-1] != ')' {
		return nil, true, fmt.Errorf("%s header %q is not \"ACTION DEVPATH (SUBSYSTEM)\"", src, clip(s))
	}
	return &block{kernel: src == "KERNEL", source: src, action: f[0], devpath: f[1], subsystem: f[2][1 : len(f[2])-1], env: map[string]string{}}, true, nil
}

func preamble(s string) bool {
	return strings.HasPrefix(s, "monitor will print") || strings.HasPrefix(s, "KERNEL - ") || strings.HasPrefix(s, "UDEV - ")
}

func clip(s string) string {
	if len(s) > 64 {
		return s[:64] + "..."
	}
	return s
}
