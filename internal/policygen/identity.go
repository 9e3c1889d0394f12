package policygen

import (
	"fmt"
	"strings"

	"github.com/usbhotplugd/usbhotplugd/internal/usbsysfs"
	"github.com/usbhotplugd/usbhotplugd/policy"
)

// Identity keys, in match.* terms.
const (
	BySerial   = "serial"
	ByPortPath = "port_path"
	ByHash     = "hash"
	ByPort     = "port" // the busid: the last resort, since it changes with bus numbers
)

// prefer gives the identity order a caller may ask for: the first key
// that names the device alone among those present wins. (A switch, not a
// map: nothing is built at start-up.)
func prefer(by string) ([]string, bool) {
	switch by {
	case BySerial:
		return []string{BySerial, ByPortPath, ByHash, ByPort}, true
	case ByPortPath:
		return []string{ByPortPath, BySerial, ByHash, ByPort}, true
	case ByHash:
		return []string{ByHash, BySerial, ByPortPath, ByPort}, true
	}
	return nil, false
}

// ValidPrefer says whether by names an identity order Choose knows.
func ValidPrefer(by string) bool {
	_, ok := prefer(by)
	return ok
}

// An Identity is how a rule names one device.
type Identity struct {
	Key, Value string
	Why        string // for the rule's comment
}

// Match is the rule's match: the device's vendor:product, and the identity.
func (id Identity) Match(d usbsysfs.Device) []policy.KeyValue {
	return []policy.KeyValue{{Key: "id", Value: d.ID()}, {Key: id.Key, Value: id.Value}}
}

// Choose names d among the devices present (all), in the order by
// gives (see ValidPrefer; "" is BySerial).
func Choose(d usbsysfs.Device, all []usbsysfs.Device, by string) (Identity, error) {
	order, ok := prefer(by)
	if by == "" {
		order, ok = prefer(BySerial)
	}
	if !ok {
		return Identity{}, fmt.Errorf("%q: prefer serial, port_path or hash", by)
	}
	count := func(f func(usbsysfs.Device) string, v string) int {
		n := 0
		for _, o := range all {
			if !o.IsRootHub() && f(o) == v {
				n++
			}
		}
		return n
	}
	serial := func(o usbsysfs.Device) string { return o.Serial }
	hash := func(o usbsysfs.Device) string { return o.Hash }
	path := func(o usbsysfs.Device) string { return o.PortPath }
	for _, k := range order {
		switch {
		case k == BySerial && policy.MatchableSerial(d.Serial) && count(serial, d.Serial) == 1:
			return Identity{BySerial, d.Serial, "named by its serial, which no other device present has"}, nil
		case k == ByPortPath && d.PortPath != "":
			// The plain form unless another device present shares it (the
			// other root hub of the same xHCI controller).
			if count(path, d.PortPath) == 1 || d.PortPathRev == d.PortPath {
				return Identity{ByPortPath, d.PortPath, portWhy(d, by)}, nil
			}
			return Identity{ByPortPath, d.PortPathRev, portWhy(d, by)}, nil
		case k == ByHash && d.Hash != "" && count(hash, d.Hash) == 1:
			return Identity{ByHash, d.Hash, "named by its descriptor hash, which no other device present has (it follows the device to any socket)"}, nil
		}
	}
	// Every order ends with ByPort; an order changed without it ends there
	// too, rather than naming nothing.
	return Identity{ByPort, d.BusID, "named by its busid, which changes when the buses are numbered again: no serial, port path or hash names it alone"}, nil
}

func portWhy(d usbsysfs.Device, prefer string) string {
	switch {
	case prefer == ByPortPath:
		return "named by its socket (port path), as asked: whatever device of this kind is plugged there matches"
	case d.Serial == "":
		return "no serial: named by its socket (port path); another device of this kind plugged there matches too"
	case !policy.MatchableSerial(d.Serial):
		return "its serial has control characters, which no rule names: named by its socket (port path)"
	}
	return fmt.Sprintf("its serial %s is not unique among the devices present: named by its socket (port path)", strings.TrimSpace(d.Serial))
}
