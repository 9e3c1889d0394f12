package policy

import (
	"fmt"
	"slices"
	"strings"
)

// A Device is what a policy matches: a USB device as the host sees it.
type Device struct {
	BusID string // "1-1.6": the physical port
	// PortPath names the port for good, anchored at the controller (udev's
	// ID_PATH, "pci-0000:00:14.0-usb-0:1.6"); PortPathRev is the form with
	// the root hub's USB revision ("...-usbv2-0:1.6"). "" when unknown.
	PortPath, PortPathRev string
	// Hash and ParentHash are the descriptor hashes of the device and of
	// its hub (as USBGuard's hash and parent-hash); "" when unknown.
	Hash, ParentHash          string
	BusNum, DevNum            int
	Vendor, Product           uint16
	Class, SubClass, Protocol uint8
	Serial                    string
	Manufacturer, ProductName string
	Interfaces                []Interface
	// Plugged orders arrivals (smaller came first), for duplicates = "first".
	Plugged uint64
	// Attached: the device is at a guest's port, or was put there and waits
	// for its guest to return. Among twins it keeps its place.
	Attached bool
	// InUse says why dom0 uses the device (a mounted disk), "" when it does
	// not: a built-in guard keeps such a device in dom0.
	InUse string
	// Present: the device was plugged before the agent first started since
	// dom0 booted (match.when = "present"); otherwise it came later.
	Present bool
}

// An Interface is one interface of a Device.
type Interface struct{ Class, SubClass, Protocol uint8 }

// ID is "vvvv:pppp", as lsusb prints it.
func (d *Device) ID() string { return fmt.Sprintf("%04x:%04x", d.Vendor, d.Product) }

// String names a device in reasons: `1-1.6 (046d:c31c)`.
func (d *Device) String() string { return d.BusID + " (" + d.ID() + ")" }

func (d *Device) isHub() bool { return d.Class == 9 || strings.HasPrefix(d.BusID, "usb") }

// A Decision is what the policy does with a device, and why.
type Decision struct {
	Action Action
	Rule   *Rule   // the rule that decided; nil for the default and guards
	Guard  string  // the built-in guard that decided ("hub"), if one did
	Target *Target // for Attach
	Reason string  // in words, for logs and `explain`
	Twins  []string
}

// Match decides what happens to d, given the other present devices (inv
// may include d itself). It is pure and safe for concurrent use.
func (p *Policy) Match(d *Device, inv []Device) Decision {
	if g, ok := p.guard(d, inv); ok {
		return g
	}
	return p.byRules(d, inv)
}

// byRules is what the rules alone decide for d.
func (p *Policy) byRules(d *Device, inv []Device) Decision {
	for _, r := range p.Rules {
		if r.Match.matches(d) {
			return r.decide(d, inv)
		}
	}
	return Decision{Action: None, Reason: "no rule matches " + d.String() + ": it stays with dom0"}
}

// guard is the built-in decisions no rule can override. A disk dom0 uses
// says what the rules do with it once dom0 lets go: only a rule's attach
// passes it then.
func (p *Policy) guard(d *Device, inv []Device) (Decision, bool) {
	switch {
	case d.isHub():
		return Decision{Action: Deny, Guard: "hub", Reason: d.String() + " is a hub: hubs are never passed through (built-in guard)"}, true
	case d.InUse != "":
		var then string
		switch r := p.byRules(d, inv); {
		case r.Action == Attach:
			then = fmt.Sprintf("the agent passes it to %s (%s)", r.Target.Domain, r.Rule)
		case r.Rule == nil:
			then = "it stays with dom0 all the same: no rule matches it"
		default:
			then = r.Reason // it names its rule
		}
		return Decision{Action: Deny, Guard: "in-use", Reason: fmt.Sprintf("%s is in use by dom0: %s; a device dom0 uses is never passed through (built-in guard): once dom0 unmounts it (or stops the device-mapper or md device holding it), %s", d, d.InUse, then)}, true
	}
	return Decision{}, false
}

// A Skip is an earlier rule that did not match, and why.
type Skip struct {
	Rule *Rule
	Why  string
}

// An Explanation is a Decision with the rules before the deciding one and
// why each did not match.
type Explanation struct {
	Decision
	Skipped []Skip
}

// Explain is Match with the reasons the earlier rules did not match.
func (p *Policy) Explain(d *Device, inv []Device) Explanation {
	var ex Explanation
	if g, ok := p.guard(d, inv); ok {
		ex.Decision = g
		return ex
	}
	for _, r := range p.Rules {
		if why := r.Match.miss(d); why != "" {
			ex.Skipped = append(ex.Skipped, Skip{r, why})
			continue
		}
		ex.Decision = r.decide(d, inv)
		return ex
	}
	ex.Decision = p.Match(d, inv)
	return ex
}

func (r *Rule) decide(d *Device, inv []Device) Decision {
	if r.Action == Deny {
		return Decision{Action: Deny, Rule: r, Reason: fmt.Sprintf("%s denies %s: it stays with dom0", r, d)}
	}
	if r.Action == Block {
		return Decision{Action: Block, Rule: r, Reason: fmt.Sprintf("%s blocks %s: its interfaces stay deauthorized, no driver in dom0 or a guest uses it", r, d)}
	}
	dec := Decision{Action: Attach, Rule: r, Target: r.Target, Reason: fmt.Sprintf("%s attaches %s to %s", r, d, r.Target.Domain)}
	if r.Duplicates == DupAll || !r.Match.needsTwinCheck() {
		return dec
	}
	var twins []*Device
	for i := range inv {
		t := &inv[i]
		if t.BusID != d.BusID && t.Vendor == d.Vendor && t.Product == d.Product && r.Match.matches(t) && !r.Match.toldApart(d, t) {
			twins = append(twins, t)
		}
	}
	if len(twins) == 0 {
		return dec
	}
	slices.SortFunc(twins, func(a, b *Device) int { return strings.Compare(a.BusID, b.BusID) })
	names := make([]string, len(twins))
	for i, t := range twins {
		names[i] = t.BusID
	}
	// The one already attached keeps its place: a twin plugged later never
	// takes a device away from a guest.
	if d.Attached {
		dec.Twins = names
		dec.Reason += fmt.Sprintf(" (it was attached before its twins %s)", strings.Join(names, ", "))
		return dec
	}
	for _, t := range twins {
		if t.Attached {
			return Decision{Action: Refuse, Rule: r, Twins: names,
				Reason: fmt.Sprintf("%s matches %s, but its twin %s is attached and keeps its place (duplicates = %q)", r, d, t.BusID, r.Duplicates)}
		}
	}
	if r.Duplicates == DupFirst {
		first := true
		for _, t := range twins {
			if t.Plugged < d.Plugged || t.Plugged == d.Plugged && t.BusID < d.BusID {
				first = false
			}
		}
		if first {
			dec.Twins = names
			dec.Reason += fmt.Sprintf(" (plugged before its twins %s; duplicates = \"first\")", strings.Join(names, ", "))
			return dec
		}
		return Decision{Action: Refuse, Rule: r, Twins: names, Reason: fmt.Sprintf("%s matches %s, but a twin (%s) was plugged first and duplicates = \"first\"", r, d, strings.Join(names, ", "))}
	}
	return Decision{Action: Refuse, Rule: r, Twins: names,
		Reason: fmt.Sprintf("%s matches %s and its twins %s, and cannot tell them apart: none is attached (duplicates = \"refuse\"); %s",
			r, d, strings.Join(names, ", "), tellApart(d, twins))}
}

// tellApart suggests how to write the rule so that it names one device.
func tellApart(d *Device, twins []*Device) string {
	distinct := d.Serial != ""
	for _, t := range twins {
		if t.Serial == "" || t.Serial == d.Serial {
			distinct = false
		}
	}
	if distinct {
		return fmt.Sprintf("add serial = %q to name this one", d.Serial)
	}
	if d.PortPath != "" {
		return fmt.Sprintf("they have no serials that tell them apart: add port_path = %q to name the socket, or set duplicates = \"first\" or \"all\"", d.PortPath)
	}
	return fmt.Sprintf("they have no serials that tell them apart: add port = %q to name the socket, or set duplicates = \"first\" or \"all\"", d.BusID)
}

// needsTwinCheck: a rule that names vendor:product, a descriptor hash
// (which twins share) or a serial (two sticks may share one) can match
// several identical devices; a bus address names one.
func (m *Match) needsTwinCheck() bool {
	return (len(m.IDs) > 0 || len(m.Hashes) > 0 || len(m.Serials) > 0) && m.Bus == 0
}

// toldApart says that what the rule names tells d and t apart: serials
// it names that differ (the same serial on two sticks tells nothing),
// parent hashes that differ, or sockets that match different port or
// port path patterns of it.
func (m *Match) toldApart(d, t *Device) bool {
	switch {
	case len(m.Serials) > 0 && d.Serial != t.Serial:
		return true
	case len(m.ParentHashes) > 0 && d.ParentHash != t.ParentHash:
		return true
	case len(m.Ports) > 0 && globIndex(m.Ports, d.BusID) != globIndex(m.Ports, t.BusID):
		return true
	}
	return len(m.PortPaths) > 0 && portPathIndex(m.PortPaths, d) != portPathIndex(m.PortPaths, t)
}

// portPathIndex is the index of the first port path pattern d's port
// path matches, either way round.
func portPathIndex(pats []string, d *Device) int {
	if i := globIndex(pats, d.PortPath); i >= 0 {
		return i
	}
	return globIndex(pats, d.PortPathRev)
}

func (m *Match) matches(d *Device) bool {
	if m.Bus != 0 && (m.Bus != d.BusNum || m.Addr != d.DevNum) {
		return false
	}
	if m.Class >= 0 && m.Class != int(d.Class) {
		return false
	}
	if len(m.IDs) > 0 && !m.idMatches(d) {
		return false
	}
	if len(m.Serials) > 0 && !slices.Contains(m.Serials, d.Serial) {
		return false
	}
	if len(m.Ports) > 0 && !anyGlob(m.Ports, d.BusID) {
		return false
	}
	if !m.identityMatches(d) {
		return false
	}
	if len(m.Interfaces) > 0 && !m.ifacesMatch(d) {
		return false
	}
	if m.Manufacturer != "" && !glob(m.Manufacturer, d.Manufacturer) {
		return false
	}
	if m.ProductName != "" && !glob(m.ProductName, d.ProductName) {
		return false
	}
	if m.When != "" && (m.When == WhenPresent) != d.Present {
		return false
	}
	return true
}

func (m *Match) idMatches(d *Device) bool {
	for _, p := range m.IDs {
		if (p.Vendor < 0 || p.Vendor == int(d.Vendor)) && (p.Product < 0 || p.Product == int(d.Product)) {
			return true
		}
	}
	return false
}

func (m *Match) ifacesMatch(d *Device) bool {
	if len(d.Interfaces) == 0 {
		return false
	}
	for _, in := range d.Interfaces {
		ok := false
		for _, p := range m.Interfaces {
			if p.matches(in) {
				ok = true
				break
			}
		}
		if ok && !m.AllIfaces {
			return true
		}
		if !ok && m.AllIfaces {
			return false
		}
	}
	return m.AllIfaces
}

// miss says why m does not match d, or "" when it does.
func (m *Match) miss(d *Device) string {
	switch {
	case m.Bus != 0 && (m.Bus != d.BusNum || m.Addr != d.DevNum):
		return fmt.Sprintf("bus %d addr %d is not the rule's bus %d addr %d", d.BusNum, d.DevNum, m.Bus, m.Addr)
	case m.Class >= 0 && m.Class != int(d.Class):
		want := ClassName(uint8(m.Class))
		if d.Class == 0 {
			// Most devices: class compares the device's own, which is
			// 00, not their interfaces'.
			return fmt.Sprintf("the device's class is 00 (given per interface), not %s; interface = %q matches its interfaces", want, want)
		}
		return fmt.Sprintf("device class %s is not %s", ClassName(d.Class), want)
	case len(m.IDs) > 0 && !m.idMatches(d):
		return fmt.Sprintf("id %s is not %s", d.ID(), joinIDs(m.IDs))
	case len(m.Serials) > 0 && !slices.Contains(m.Serials, d.Serial):
		if d.Serial == "" {
			return "the device has no serial; the rule wants " + quoteAll(m.Serials)
		}
		return fmt.Sprintf("serial %q is not %s", d.Serial, quoteAll(m.Serials))
	case len(m.Ports) > 0 && !anyGlob(m.Ports, d.BusID):
		return fmt.Sprintf("port %s is not %s", d.BusID, quoteAll(m.Ports))
	case !m.identityMatches(d):
		return m.identityMiss(d)
	case len(m.Interfaces) > 0 && !m.ifacesMatch(d):
		var have []string
		for _, in := range d.Interfaces {
			have = append(have, IfPattern{int(in.Class), int(in.SubClass), int(in.Protocol)}.String())
		}
		which := "no interface"
		if m.AllIfaces {
			which = "not every interface"
		}
		var want []string
		for _, p := range m.Interfaces {
			want = append(want, p.String())
		}
		return fmt.Sprintf("%s of [%s] is %s", which, strings.Join(have, " "), strings.Join(want, " or "))
	case m.Manufacturer != "" && !glob(m.Manufacturer, d.Manufacturer):
		return fmt.Sprintf("manufacturer %q is not %q", d.Manufacturer, m.Manufacturer)
	case m.ProductName != "" && !glob(m.ProductName, d.ProductName):
		return fmt.Sprintf("product name %q is not %q", d.ProductName, m.ProductName)
	case m.When == WhenPresent && !d.Present:
		return "it was plugged in after the agent first started, and the rule is for devices present then (when = \"present\")"
	case m.When == WhenPlugged && d.Present:
		return "it was present when the agent first started, and the rule is for devices plugged in after (when = \"plugged\")"
	}
	return ""
}

func joinIDs(ids []IDPattern) string {
	s := make([]string, len(ids))
	for i, p := range ids {
		s[i] = p.String()
	}
	return strings.Join(s, " or ")
}

func quoteAll(v []string) string {
	s := make([]string, len(v))
	for i, x := range v {
		s[i] = fmt.Sprintf("%q", x)
	}
	return strings.Join(s, " or ")
}

// globIndex is the index of the first pattern s matches, -1 if none.
func globIndex(pats []string, s string) int {
	for i, p := range pats {
		if glob(p, s) {
			return i
		}
	}
	return -1
}

func anyGlob(pats []string, s string) bool {
	for _, p := range pats {
		if glob(p, s) {
			return true
		}
	}
	return false
}

// glob matches s against a pattern where * is any run of characters
// (dots included, so "1-1.*" is everything behind port 1-1) and ? is one.
func glob(p, s string) bool {
	if !strings.ContainsAny(p, "*?") {
		return p == s
	}
	// Iterative matching with one backtrack point: linear in practice.
	pi, si, star, mark := 0, 0, -1, 0
	for si < len(s) {
		switch {
		case pi < len(p) && (p[pi] == '?' || p[pi] == s[si]):
			pi++
			si++
		case pi < len(p) && p[pi] == '*':
			star, mark = pi, si
			pi++
		case star >= 0:
			pi, mark = star+1, mark+1
			si = mark
		default:
			return false
		}
	}
	for pi < len(p) && p[pi] == '*' {
		pi++
	}
	return pi == len(p)
}

// identityMatches checks the stable identities: port_path (either form,
// globs allowed), hash and parent_hash.
func (m *Match) identityMatches(d *Device) bool {
	if len(m.PortPaths) > 0 && (d.PortPath == "" || !anyGlob(m.PortPaths, d.PortPath) && !anyGlob(m.PortPaths, d.PortPathRev)) {
		return false
	}
	if len(m.Hashes) > 0 && !slices.Contains(m.Hashes, d.Hash) {
		return false
	}
	return len(m.ParentHashes) == 0 || slices.Contains(m.ParentHashes, d.ParentHash)
}

func (m *Match) identityMiss(d *Device) string {
	switch {
	case len(m.PortPaths) > 0 && d.PortPath == "":
		return "its port has no stable path (its controller is on no PCI or platform bus); the rule wants port_path " + quoteAll(m.PortPaths)
	case len(m.PortPaths) > 0 && !anyGlob(m.PortPaths, d.PortPath) && !anyGlob(m.PortPaths, d.PortPathRev):
		return fmt.Sprintf("port path %s is not %s", d.PortPath, quoteAll(m.PortPaths))
	case len(m.Hashes) > 0 && d.Hash == "":
		return "the device has no descriptor hash (sysfs shows no descriptors); the rule wants hash " + quoteAll(m.Hashes)
	case len(m.Hashes) > 0 && !slices.Contains(m.Hashes, d.Hash):
		return fmt.Sprintf("hash %q is not %s", d.Hash, quoteAll(m.Hashes))
	}
	return fmt.Sprintf("parent hash %q is not %s", d.ParentHash, quoteAll(m.ParentHashes))
}
