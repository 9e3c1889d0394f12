package policy

import (
	"encoding/base64"
	"errors"
	"fmt"
	"regexp"
	"slices"
	"strings"
	"sync"
)

// The stable identities a rule can name a device by: its port path, which
// does not change with bus numbers, and its descriptor hash and its hub's,
// for devices with no serial.

// identityHints are the other spellings of the identities' match keys.
var identityHints = keyHints{
	{"id_path", "port_path"}, {"path", "port_path"}, {"portpath", "port_path"}, {"port-path", "port_path"},
	{"parent-hash", "parent_hash"}, {"parenthash", "parent_hash"}, {"descriptor_hash", "hash"},
}

// portPathForm is a device's port path, in either of udev's forms: the
// controller's anchor (one or more bus-device names), then the port
// numbers below its root hub.
// Compiled on first use: a command that reads no policy pays nothing.
var portPathForm = sync.OnceValue(func() *regexp.Regexp {
	return regexp.MustCompile(`^(pci|platform|amba|acpi|xen)-.+-usb(v[1-3])?-0:[1-9][0-9]{0,2}(\.[1-9][0-9]{0,2}){0,6}$`)
})

// errController: a port path that names a controller, not a port.
var errController = errors.New("a controller")

var anchorForm = sync.OnceValue(func() *regexp.Regexp { return regexp.MustCompile(`^(pci|platform|amba|acpi|xen)-`) })

// checkPortPath accepts a port path or a glob of them.
func checkPortPath(s string) error {
	const form = "a port path as `usbhotplugd devices` shows it, such as \"pci-0000:00:14.0-usb-0:1.4\" (* and ? allowed)"
	switch {
	case strings.Trim(s, "*") == "":
		return fmt.Errorf("%q matches every port; leave port_path out instead", s)
	case checkBusID(s) == nil || checkPortGlob(s) == nil:
		return fmt.Errorf("%q is a busid, which changes with bus numbers: write it as port = %q, or give the port path: %s", s, s, form)
	case strings.ContainsFunc(s, func(c rune) bool { return c <= ' ' || c > '~' }):
		return fmt.Errorf("%q is not %s", s, form)
	case !anchorForm().MatchString(s) && !strings.ContainsAny(s[:1], "*?"):
		return fmt.Errorf("%q does not start at a controller (pci-, platform-, amba-, acpi- or xen-): it is not %s", s, form)
	case strings.ContainsAny(s, "*?"):
		return nil
	case !strings.Contains(s, "-usb-0:") && !strings.Contains(s, "-usbv"):
		return fmt.Errorf("%q names %w, whose root hubs are never passed through; the devices on its ports are %q", s, errController, s+"-usb-0:*")
	case strings.Count(s[strings.LastIndex(s, "-0:")+3:], ":") > 0:
		return fmt.Errorf("%q names an interface (udev's ID_PATH of an interface ends in :CONFIG.INTERFACE): drop that part to name the device", s)
	case !portPathForm().MatchString(s):
		return fmt.Errorf("%q is not %s", s, form)
	}
	return nil
}

// checkHash accepts a descriptor hash: SHA-256, in base64.
func checkHash(s string) error {
	b, err := base64.StdEncoding.DecodeString(s)
	if err != nil || len(b) != 32 {
		return fmt.Errorf("%q is not a device hash (44 characters of base64, as `usbhotplugd devices --json` or USBGuard prints them)", s)
	}
	return nil
}

// identity reads match.port_path, match.hash and match.parent_hash.
func (fp *fileParser) identity(r *Rule, m map[string]any, path []string) {
	mt := &r.Match
	for _, k := range []struct {
		key   string
		check func(string) error
		dst   *[]string
	}{{"port_path", checkPortPath, &mt.PortPaths}, {"hash", checkHash, &mt.Hashes}, {"parent_hash", checkHash, &mt.ParentHashes}} {
		vs, ok := fp.strs(r, m, path, k.key, "match.", "")
		if !ok {
			continue
		}
		for _, s := range vs {
			if err := k.check(s); err != nil {
				kind := ErrValue
				if errors.Is(err, errController) {
					kind = ErrNeverMatches
				}
				fp.fail(r, append(append([]string{}, path...), k.key), "match."+k.key, kind, "%v", err)
				continue
			}
			*k.dst = append(*k.dst, s)
		}
	}
}

// identityCovers is covers for the identity keys: a device b matches has a
// port path equal to one of b's literals (or matched by b's globs, which
// only a glob covering them covers), and one of b's hashes.
func (m *Match) identityCovers(b *Match) bool {
	if len(m.PortPaths) > 0 {
		if len(b.PortPaths) == 0 {
			return false
		}
		for _, bp := range b.PortPaths {
			if !slices.ContainsFunc(m.PortPaths, func(ap string) bool { return globCovers(ap, bp) }) {
				return false
			}
		}
	}
	subset := func(a, b []string) bool {
		if len(a) == 0 {
			return true
		}
		if len(b) == 0 {
			return false
		}
		for _, h := range b {
			if !slices.Contains(a, h) {
				return false
			}
		}
		return true
	}
	return subset(m.Hashes, b.Hashes) && subset(m.ParentHashes, b.ParentHashes)
}
