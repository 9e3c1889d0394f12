package usbname

import (
	"errors"
	"fmt"
	"strconv"
	"strings"
)

// The kernel's limits on the numbers in a name.
const (
	MaxBus     = 63 // USB_MAXBUS - 1
	MaxPort    = 31 // USB_MAXCHILDREN
	MaxDepth   = 6  // MAX_TOPO_LEVEL: ports between the root hub and a device
	MaxIntfNum = 255
)

// ErrInvalid is wrapped by every error for a name that is not of the
// kernel's forms.
var ErrInvalid = errors.New("invalid USB device name")

func invalid(kind, s, why string) error {
	if why != "" {
		why = ": " + why
	}
	return fmt.Errorf("%w: %s %q%s", ErrInvalid, kind, s, why)
}

// number parses a decimal the kernel would print: no sign, no leading
// zero, at most max.
func number(s string, max int) (int, bool) {
	if s == "" || len(s) > 3 || s[0] == '0' && len(s) > 1 {
		return 0, false
	}
	n := 0
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return 0, false
		}
		n = n*10 + int(s[i]-'0')
	}
	return n, n <= max
}

// An ID is a parsed device name.
type ID struct {
	Bus   int
	Ports []int // empty for a root hub
}

// IsRootHub reports whether the ID names a root hub.
func (id ID) IsRootHub() bool { return len(id.Ports) == 0 }

// String is the kernel's name for the device.
func (id ID) String() string {
	if id.IsRootHub() {
		return "usb" + strconv.Itoa(id.Bus)
	}
	var b strings.Builder
	b.WriteString(strconv.Itoa(id.Bus))
	for i, p := range id.Ports {
		if i == 0 {
			b.WriteByte('-')
		} else {
			b.WriteByte('.')
		}
		b.WriteString(strconv.Itoa(p))
	}
	return b.String()
}

// Parse reads a device name: a root hub ("usb1") or a device ("1-1.6").
func Parse(s string) (ID, error) {
	k, n, err := scan(s)
	if err != nil {
		return ID{}, err
	}
	id := ID{Bus: k[0]}
	if n > 1 {
		id.Ports = append([]int(nil), k[1:n]...)
	}
	return id, nil
}

// scan validates a device name into its bus and ports, without
// allocating unless it fails.
func scan(s string) (k [1 + MaxDepth]int, n int, err error) {
	if rest, ok := strings.CutPrefix(s, "usb"); ok {
		bus, ok := number(rest, MaxBus)
		if !ok || bus == 0 {
			return k, 0, invalid("root hub", s, "not usbN with N 1..63")
		}
		k[0] = bus
		return k, 1, nil
	}
	b, path, ok := strings.Cut(s, "-")
	bus, bok := number(b, MaxBus)
	if !ok || !bok || bus == 0 {
		return k, 0, invalid("busid", s, "not BUS-PORT[.PORT...] with BUS 1..63")
	}
	k[0], n = bus, 1
	for more := true; more; {
		var p string
		p, path, more = strings.Cut(path, ".")
		if n > MaxDepth {
			return k, 0, invalid("busid", s, fmt.Sprintf("%d ports deep, more than the kernel's %d", strings.Count(s, ".")+1, MaxDepth))
		}
		v, ok := number(p, MaxPort)
		if !ok || v == 0 {
			return k, 0, invalid("busid", s, "ports are 1..31")
		}
		k[n] = v
		n++
	}
	return k, n, nil
}

// Valid accepts the name of any USB device: a root hub or a device.
func Valid(s string) error {
	_, _, err := scan(s)
	return err
}

// ValidDevice accepts a device that is not a root hub ("1-1.6"): what can
// sit in a port, be passed through, or be named by a policy.
func ValidDevice(s string) error {
	id, err := Parse(s)
	if err == nil && id.IsRootHub() {
		return invalid("busid", s, "a root hub, not a device on a port")
	}
	return err
}

// An Intf is a parsed interface name.
type Intf struct {
	Device ID  // the device it belongs to; a root hub for "B-0:C.I"
	Config int // bConfigurationValue
	Number int // bInterfaceNumber
}

// String is the kernel's name for the interface.
func (in Intf) String() string {
	dev := in.Device.String()
	if in.Device.IsRootHub() {
		dev = strconv.Itoa(in.Device.Bus) + "-0"
	}
	return fmt.Sprintf("%s:%d.%d", dev, in.Config, in.Number)
}

// ParseInterface reads an interface name: "1-1.6:1.0", or a root hub's
// own "1-0:1.0".
func ParseInterface(s string) (Intf, error) {
	dev, ci, ok := strings.Cut(s, ":")
	cs, is, ok2 := strings.Cut(ci, ".")
	cfg, cok := number(cs, MaxIntfNum)
	num, iok := number(is, MaxIntfNum)
	if !ok || !ok2 || !cok || !iok {
		return Intf{}, invalid("interface", s, "not DEVICE:CONFIG.INTERFACE")
	}
	if b, ok := strings.CutSuffix(dev, "-0"); ok {
		if bus, ok := number(b, MaxBus); ok && bus > 0 {
			return Intf{Device: ID{Bus: bus}, Config: cfg, Number: num}, nil
		}
	}
	if strings.HasPrefix(dev, "usb") {
		return Intf{}, invalid("interface", s, "a root hub's interfaces are named B-0:C.I")
	}
	id, err := Parse(dev)
	if err != nil {
		return Intf{}, invalid("interface", s, "its device is not a busid")
	}
	return Intf{Device: id, Config: cfg, Number: num}, nil
}

// ValidInterface accepts an interface name.
func ValidInterface(s string) error {
	_, err := ParseInterface(s)
	return err
}

// DeviceOf returns the name of the device an interface belongs to: "1-1.6"
// for "1-1.6:1.0", and "usb1" for a root hub's "1-0:1.0", never "1-0",
// which is no device.
func DeviceOf(intf string) (string, error) {
	in, err := ParseInterface(intf)
	if err != nil {
		return "", err
	}
	return in.Device.String(), nil
}

// Parent returns the hub a device hangs from: "1-1" for "1-1.6", "usb1"
// for "1-6"; the zero ID (bus 0, which no device has) for a root hub.
func (id ID) Parent() ID {
	switch len(id.Ports) {
	case 0:
		return ID{}
	case 1:
		return ID{Bus: id.Bus}
	}
	return ID{Bus: id.Bus, Ports: id.Ports[:len(id.Ports)-1]}
}

// Compare orders devices by bus, root hub first, then by port path
// numerically, so that a parent sorts before its children. Names that do
// not parse sort after those that do, by string. It does not allocate:
// the agent sorts every device of the host with it.
func Compare(a, b string) int {
	ka, na, oka := key(a)
	kb, nb, okb := key(b)
	switch {
	case !oka && !okb:
		return strings.Compare(a, b)
	case !oka:
		return 1
	case !okb:
		return -1
	}
	for i := 0; i < na && i < nb; i++ {
		if ka[i] != kb[i] {
			return ka[i] - kb[i]
		}
	}
	return na - nb
}

// key is a device's bus and ports, for Compare.
func key(s string) (k [1 + MaxDepth]int, n int, ok bool) {
	k, n, err := scan(s)
	return k, n, err == nil
}
