package policy

import (
	"errors"
	"fmt"
	"strings"

	"github.com/usbhotplugd/usbhotplugd/internal/usbname"
)

// ErrSpec is wrapped by every error for an xl spec string or KEY=VALUE word.
var ErrSpec = errors.New("bad USB spec")

// A SpecError names the spec and the token that was refused.
type SpecError struct {
	Kind  string // "usbctrl" or "usbdev"
	Token string
	Msg   string
}

func (e *SpecError) Error() string {
	if e.Token == "" {
		return fmt.Sprintf("%s spec: %s", e.Kind, e.Msg)
	}
	return fmt.Sprintf("%s spec: %q: %s", e.Kind, e.Token, e.Msg)
}

func (e *SpecError) Unwrap() error { return ErrSpec }

// Controller types, as libxl names them.
const (
	TypeAuto        = "auto"
	TypePV          = "pv"
	TypeQUSB        = "qusb"
	TypeDeviceModel = "devicemodel"
)

// MaxPVPorts is the most ports a pv or qusb controller has (USBIF_MAX_PORTNR).
const MaxPVPorts = 31

// A CtrlSpec is a USB controller as `usbctrl` specs and
// `xl usbctrl-attach` give it. Zero Version and Ports mean libxl's
// defaults; Type is lowercase, "" meaning auto.
type CtrlSpec struct {
	Type    string `json:"type,omitempty"`
	Version int    `json:"usb_version,omitempty"`
	Ports   int    `json:"port_count,omitempty"`
}

// String is the spec in xl.cfg form.
func (c CtrlSpec) String() string {
	var parts []string
	if c.Type != "" {
		parts = append(parts, "type="+c.Type)
	}
	if c.Version != 0 {
		parts = append(parts, fmt.Sprintf("version=%d", c.Version))
	}
	if c.Ports != 0 {
		parts = append(parts, fmt.Sprintf("ports=%d", c.Ports))
	}
	return strings.Join(parts, ",")
}

// Check applies libxl's limits (usbctrl_setdefault): pv and qusb have
// version 1 or 2 and 1–31 ports; devicemodel has version 1 (2 ports),
// 2 (6 ports) or 3 (up to 15). For auto the type is not known yet, so
// only what no type allows is refused.
func (c CtrlSpec) Check() error {
	bad := func(format string, a ...any) error {
		return &SpecError{Kind: "usbctrl", Token: c.String(), Msg: fmt.Sprintf(format, a...)}
	}
	if c.Version < 0 || c.Ports < 0 {
		return bad("version and ports cannot be negative")
	}
	switch c.Type {
	case "", TypeAuto:
		if c.Version > 3 {
			return bad("version %d: USB versions are 1, 2 and 3 (3 for type=devicemodel only)", c.Version)
		}
		if c.Ports > MaxPVPorts {
			return bad("ports %d: at most %d", c.Ports, MaxPVPorts)
		}
	case TypePV, TypeQUSB:
		if c.Version > 2 {
			return bad("version %d: a %s controller is version 1 or 2", c.Version, c.Type)
		}
		if c.Ports > MaxPVPorts {
			return bad("ports %d: a %s controller has 1 to %d ports", c.Ports, c.Type, MaxPVPorts)
		}
	case TypeDeviceModel:
		switch c.Version {
		case 0, 2:
			if c.Ports != 0 && c.Ports != 6 {
				return bad("ports %d: an emulated USB 2 controller (usb-ehci) has 6 ports", c.Ports)
			}
		case 1:
			if c.Ports != 0 && c.Ports != 2 {
				return bad("ports %d: an emulated USB 1 controller (piix3-usb-uhci) has 2 ports", c.Ports)
			}
		case 3:
			if c.Ports > 15 {
				return bad("ports %d: an emulated USB 3 controller (nec-usb-xhci) has at most 15 ports", c.Ports)
			}
		default:
			return bad("version %d: an emulated controller is version 1, 2 or 3", c.Version)
		}
	default:
		return bad("type %q: it is auto, pv, qusb or devicemodel", c.Type)
	}
	return nil
}

// A DevSpec is a USB device as `usbdev` specs and `xl usbdev-attach` give
// it. Controller is -1 and Port 0 when not given (libxl's "unset").
type DevSpec struct {
	HostBus    int    `json:"bus,omitempty"`   // hostbus=, spelled as match.bus and devices --json
	HostAddr   int    `json:"addr,omitempty"`  // hostaddr=
	BusID      string `json:"busid,omitempty"` // our addition: the device by its port, "1-1.6"
	Controller int    `json:"controller"`
	Port       int    `json:"port,omitempty"`
}

// splitSpec splits an xl.cfg spec string as xl does (strtok on ","):
// empty tokens are skipped and only leading spaces are removed, so a
// trailing space stays part of the value.
func splitSpec(s string) []string {
	var out []string
	for _, t := range strings.Split(s, ",") {
		if t == "" {
			continue
		}
		out = append(out, strings.TrimLeft(t, " "))
	}
	return out
}

// ParseCtrlSpec reads one string of xl.cfg's `usbctrl = [...]` list.
func ParseCtrlSpec(s string) (CtrlSpec, error) { return parseCtrl(splitSpec(s), false, s) }

// ParseCtrlArgs reads the KEY=VALUE words of `xl usbctrl-attach`. Each
// word is one option; xl does not split them on commas, and neither does
// this, but a comma inside a value is refused rather than dropped.
func ParseCtrlArgs(words []string) (CtrlSpec, error) {
	return parseCtrl(words, true, strings.Join(words, " "))
}

// commaInWord is the refusal for "version=1,ports=4" given as one word:
// xl would take version=1 and silently drop the rest.
const commaInWord = "one KEY=VALUE per word (xl drops what follows a comma): give each as its own word"

// parseCtrl reads the tokens of a controller spec; typed is the spec as
// given, which an error of the whole (Check's) quotes.
func parseCtrl(tokens []string, words bool, typed string) (CtrlSpec, error) {
	var c CtrlSpec
	seen := map[string]bool{}
	for _, t := range tokens {
		bad := func(msg string) error { return &SpecError{Kind: "usbctrl", Token: t, Msg: msg} }
		if words && strings.Contains(t, ",") {
			return CtrlSpec{}, bad(commaInWord)
		}
		k, v, ok := strings.Cut(t, "=")
		if !ok {
			return CtrlSpec{}, bad("not KEY=VALUE (keys: type, version, ports)")
		}
		if words && seen[k] {
			return CtrlSpec{}, bad(twice(k))
		}
		seen[k] = true
		switch k {
		case "type":
			lv := strings.ToLower(v)
			switch lv {
			case TypeAuto, TypePV, TypeQUSB, TypeDeviceModel:
				c.Type = lv
			default:
				return CtrlSpec{}, bad("type is auto, pv, qusb or devicemodel")
			}
		case "version", "ports":
			n, err := atoi(v)
			if err != nil {
				return CtrlSpec{}, bad(err.Error())
			}
			if k == "version" {
				c.Version = n
			} else {
				c.Ports = n
			}
		default:
			return CtrlSpec{}, bad("unknown key (keys: type, version, ports)")
		}
	}
	if err := c.Check(); err != nil {
		return CtrlSpec{}, Typed(err, typed)
	}
	return c, nil
}

// Typed is err, when it is a SpecError, quoting typed (the spec or the
// words as the user gave them) rather than the spec as it was read or
// completed with defaults: what the user can find in what they wrote.
func Typed(err error, typed string) error {
	var se *SpecError
	if !errors.As(err, &se) || se.Token == typed {
		return err
	}
	c := *se
	c.Token = typed
	return &c
}

// ParseDevSpec reads one string of xl.cfg's `usbdev = [...]` list.
func ParseDevSpec(s string) (DevSpec, error) { return parseDev(splitSpec(s), false) }

// ParseDevArgs reads the KEY=VALUE words of `usbdev-attach`: xl's keys,
// and busid=, which names the device by its physical port instead of its
// bus address.
func ParseDevArgs(words []string) (DevSpec, error) { return parseDev(words, true) }

func parseDev(tokens []string, busid bool) (DevSpec, error) {
	d := DevSpec{Controller: -1}
	keys := "type, hostbus, hostaddr, controller, port"
	if busid {
		keys += ", busid"
	}
	seen := map[string]bool{}
	for _, t := range tokens {
		bad := func(msg string) error { return &SpecError{Kind: "usbdev", Token: t, Msg: msg} }
		if busid && strings.Contains(t, ",") {
			return DevSpec{}, bad(commaInWord)
		}
		k, v, ok := strings.Cut(t, "=")
		if !ok {
			return DevSpec{}, bad("not KEY=VALUE (keys: " + keys + ")")
		}
		if busid && seen[k] {
			return DevSpec{}, bad(twice(k))
		}
		seen[k] = true
		switch k {
		case "type":
			if !strings.EqualFold(v, "hostdev") {
				return DevSpec{}, bad("the only usbdev type is hostdev")
			}
		case "hostbus", "hostaddr":
			n, err := strtoul0(v)
			if err != nil {
				return DevSpec{}, bad(err.Error())
			}
			if n < 1 || n > 255 {
				return DevSpec{}, bad(fmt.Sprintf("%d is out of range: bus numbers and addresses are 1 to 255", n))
			}
			if k == "hostbus" {
				d.HostBus = int(n)
			} else {
				d.HostAddr = int(n)
			}
		case "busid":
			if !busid {
				return DevSpec{}, bad("unknown key (keys: " + keys + ")")
			}
			if err := checkBusID(v); err != nil {
				return DevSpec{}, bad(err.Error())
			}
			d.BusID = v
		case "controller", "port":
			n, err := atoi(v)
			if err != nil {
				return DevSpec{}, bad(err.Error())
			}
			if k == "controller" {
				d.Controller = n
			} else {
				if n < 1 {
					return DevSpec{}, bad("ports are numbered from 1")
				}
				d.Port = n
			}
		default:
			return DevSpec{}, bad("unknown key (keys: " + keys + ")")
		}
	}
	if d.Controller < 0 && d.Port != 0 {
		return DevSpec{}, &SpecError{Kind: "usbdev", Msg: "port= needs controller= (as in xl, a port is chosen within a controller)"}
	}
	switch {
	case d.BusID != "" && (d.HostBus != 0 || d.HostAddr != 0):
		return DevSpec{}, &SpecError{Kind: "usbdev", Msg: "give the device by busid= or by hostbus= and hostaddr=, not both"}
	case d.BusID == "" && (d.HostBus == 0 || d.HostAddr == 0):
		how := "hostbus= and hostaddr="
		if busid {
			how += " (or busid=)"
		}
		return DevSpec{}, &SpecError{Kind: "usbdev", Msg: "the device is given by " + how}
	}
	return d, nil
}

// twice is the refusal of a key given again on a command line: xl takes
// the last one silently, and a device or controller given twice there is
// a mistake to say. In a spec string (xl.cfg, a policy's usbctrl) the
// last one counts, as xl reads it, so that what loaded before loads.
func twice(k string) string { return k + "= is given twice (xl would take the last one): give it once" }

// atoi reads a decimal number the way xl's atoi does for a clean value
// (leading white space allowed) but refuses what atoi would silently turn
// into something else: trailing junk ("4x" is 4 to xl), an empty value
// (0 to xl) and a sign.
func atoi(v string) (int, error) {
	// White space around a number changes nothing to xl either.
	s := strings.Trim(v, " \t\n\v\f\r")
	if s == "" {
		return 0, errors.New("no number (xl would read 0)")
	}
	n := 0
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c < '0' || c > '9' {
			return 0, fmt.Errorf("%q is not a decimal number", v)
		}
		n = n*10 + int(c-'0')
		if n > 1<<20 {
			return 0, fmt.Errorf("%q is too large", v)
		}
	}
	return n, nil
}

// strtoul0 reads a number the way xl reads hostbus and hostaddr (strtoul
// base 0: 0x1a is hex, 010 is octal 8, 26 is decimal), refusing what xl
// would misread: "08" (0 to xl), trailing junk, a sign, an empty value.
func strtoul0(v string) (uint64, error) {
	s := strings.Trim(v, " \t\n\v\f\r")
	base := 10
	switch {
	case len(s) > 2 && s[0] == '0' && (s[1] == 'x' || s[1] == 'X'):
		base, s = 16, s[2:]
	case len(s) > 1 && s[0] == '0':
		base, s = 8, s[1:]
	}
	if s == "" {
		return 0, fmt.Errorf("%q is not a number", v)
	}
	var n uint64
	for i := 0; i < len(s); i++ {
		d := HexDigit(s[i])
		if d >= base {
			if base == 8 && d < 10 {
				return 0, fmt.Errorf("%q is not a number: a leading 0 means octal (xl reads base 0); write it without the 0", v)
			}
			return 0, fmt.Errorf("%q is not a number", v)
		}
		n = n*uint64(base) + uint64(d)
		if n > 1<<20 {
			return 0, fmt.Errorf("%q is too large", v)
		}
	}
	return n, nil
}

// HexDigit is c's value as a hexadecimal digit, 99 when it is none (xl's
// base-0 numbers and the xl.cfg reader's escapes share it).
func HexDigit(c byte) int {
	switch {
	case c >= '0' && c <= '9':
		return int(c - '0')
	case c >= 'a' && c <= 'f':
		return int(c-'a') + 10
	case c >= 'A' && c <= 'F':
		return int(c-'A') + 10
	}
	return 99
}

// checkBusID accepts a USB device's busid as the kernel names it:
// "<bus>-<port>[.<port>...]".
func checkBusID(s string) error {
	if usbname.ValidDevice(s) != nil {
		return fmt.Errorf("%q is not a busid such as 1-1.6", s)
	}
	return nil
}
