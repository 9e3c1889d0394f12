package policy

import (
	"fmt"
	"slices"
	"strings"
)

// A Finding is a rule that can never decide because an earlier rule
// matches every device it matches.
type Finding struct {
	Rule *Rule
	By   *Rule
}

func (f Finding) String() string {
	return fmt.Sprintf("%s:%d: %s is shadowed by %s (%s:%d): it matches every device this rule matches, so this rule never decides",
		f.Rule.File, f.Rule.Line, f.Rule, f.By, f.By.File, f.By.Line)
}

// A ClassFinding is a rule whose match.class is a class that the USB spec
// gives only per interface (InterfaceOnly): the devices of that kind have
// device class 00, so the rule matches almost none of them, and those it
// was written for go on to the rules after it.
type ClassFinding struct {
	Rule *Rule
	Line int // of match.class
}

func (f ClassFinding) String() string {
	name := ClassName(uint8(f.Rule.Match.Class))
	return fmt.Sprintf("%s:%d: %s: match.class = %q matches almost no device: the USB spec gives class %02x (%s) per interface, so such a device's own class is 00 (per-interface); "+
		"to match a device with a %s interface, write interface = %q instead",
		f.Rule.File, f.Line, f.Rule, name, f.Rule.Match.Class, name, name, name)
}

// ClassPerInterface lists the rules whose match.class is a class given
// per interface.
func (p *Policy) ClassPerInterface() []ClassFinding {
	var out []ClassFinding
	for _, r := range p.Rules {
		if r.Match.Class >= 0 && InterfaceOnly(uint8(r.Match.Class)) {
			line := r.classLine
			if line == 0 {
				line = r.Line
			}
			out = append(out, ClassFinding{Rule: r, Line: line})
		}
	}
	return out
}

// Warnings are what `check` warns of and the agent logs when it loads
// the policy: rules that match almost nothing because of a class given
// per interface, shadowed rules, targets that look like a declared
// domain's name mistyped, in the order of the rules, then a keyboard
// lockout (Lockout).
func (p *Policy) Warnings() []string {
	type at struct {
		index int
		msg   string
	}
	var ws []at
	for _, f := range p.ClassPerInterface() {
		ws = append(ws, at{f.Rule.Index, f.String()})
	}
	for _, f := range p.Shadowed() {
		ws = append(ws, at{f.Rule.Index, f.String()})
	}
	for _, f := range p.TargetTypos() {
		ws = append(ws, at{f.Rule.Index, f.String()})
	}
	slices.SortStableFunc(ws, func(a, b at) int { return a.index - b.index })
	out := make([]string, 0, len(ws)+1)
	for _, w := range ws {
		out = append(out, w.msg)
	}
	if w := p.Lockout(); w != "" {
		out = append(out, w)
	}
	return out
}

// Shadowed lists the rules that an earlier rule shadows. The test is
// conservative: a rule listed is certainly shadowed; one not listed may
// still be, through a combination of earlier rules. Earlier rules are
// indexed by a key any rule they cover must share, so a policy of many
// specific rules is checked in linear time, not by comparing every pair.
func (p *Policy) Shadowed() []Finding {
	var out []Finding
	ix := shadowIndex{bySerial: map[string][]int{}, byHash: map[string][]int{}, byID: map[IDPattern][]int{}, byAddr: map[[2]int][]int{}, byPort: map[string][]int{}}
	for j, b := range p.Rules {
		if a := ix.coverer(p.Rules, &b.Match); a >= 0 {
			out = append(out, Finding{Rule: b, By: p.Rules[a]})
		}
		ix.add(j, &b.Match)
	}
	return out
}

// A shadowIndex files each rule under one key of its match that a rule
// it covers must have too; rules with no such key are checked against all.
type shadowIndex struct {
	bySerial map[string][]int    // a rule naming serials, under each
	byHash   map[string][]int    // a rule naming descriptor hashes, under each
	byID     map[IDPattern][]int // a rule naming IDs, under each pattern
	byAddr   map[[2]int][]int    // a rule naming bus and addr
	byPort   map[string][]int    // a rule naming only literal ports, under each
	rest     []int
}

func (ix *shadowIndex) add(j int, m *Match) {
	switch {
	case len(m.Serials) > 0:
		for _, s := range m.Serials {
			ix.bySerial[s] = append(ix.bySerial[s], j)
		}
	case len(m.Hashes) > 0:
		for _, h := range m.Hashes {
			ix.byHash[h] = append(ix.byHash[h], j)
		}
	case len(m.IDs) > 0:
		for _, id := range m.IDs {
			ix.byID[id] = append(ix.byID[id], j)
		}
	case m.Bus != 0:
		k := [2]int{m.Bus, m.Addr}
		ix.byAddr[k] = append(ix.byAddr[k], j)
	case len(m.Ports) > 0 && !slices.ContainsFunc(m.Ports, func(p string) bool { return strings.ContainsAny(p, "*?") }):
		for _, p := range m.Ports {
			ix.byPort[p] = append(ix.byPort[p], j)
		}
	default:
		ix.rest = append(ix.rest, j)
	}
}

// coverer returns the first earlier rule that covers b, or -1.
func (ix *shadowIndex) coverer(rules []*Rule, b *Match) int {
	best := -1
	try := func(cands []int) {
		for _, a := range cands {
			if best >= 0 && a >= best {
				return
			}
			if rules[a].Match.covers(b) {
				best = a
				return
			}
		}
	}
	if len(b.Serials) > 0 {
		try(ix.bySerial[b.Serials[0]])
	}
	if len(b.Hashes) > 0 {
		try(ix.byHash[b.Hashes[0]])
	}
	if len(b.IDs) > 0 {
		id := b.IDs[0]
		try(ix.byID[id])
		try(ix.byID[IDPattern{id.Vendor, -1}])
		try(ix.byID[IDPattern{-1, id.Product}])
	}
	if b.Bus != 0 {
		try(ix.byAddr[[2]int{b.Bus, b.Addr}])
	}
	if len(b.Ports) > 0 {
		try(ix.byPort[b.Ports[0]])
	}
	try(ix.rest)
	return best
}

// covers reports that every device b matches, m matches too.
func (m *Match) covers(b *Match) bool {
	if m.Bus != 0 && (b.Bus != m.Bus || b.Addr != m.Addr) {
		return false
	}
	if m.Class >= 0 && b.Class != m.Class {
		return false
	}
	if len(m.IDs) > 0 {
		if len(b.IDs) == 0 {
			return false
		}
		for _, bp := range b.IDs {
			if !slices.ContainsFunc(m.IDs, func(ap IDPattern) bool {
				return (ap.Vendor < 0 || ap.Vendor == bp.Vendor) && (ap.Product < 0 || ap.Product == bp.Product)
			}) {
				return false
			}
		}
	}
	if len(m.Serials) > 0 {
		if len(b.Serials) == 0 {
			return false
		}
		for _, s := range b.Serials {
			if !slices.Contains(m.Serials, s) {
				return false
			}
		}
	}
	if len(m.Ports) > 0 {
		if len(b.Ports) == 0 {
			return false
		}
		for _, bp := range b.Ports {
			if !slices.ContainsFunc(m.Ports, func(ap string) bool { return globCovers(ap, bp) }) {
				return false
			}
		}
	}
	if !m.identityCovers(b) {
		return false
	}
	if len(m.Interfaces) > 0 && (m.AllIfaces != b.AllIfaces || !slices.Equal(m.Interfaces, b.Interfaces)) {
		return false
	}
	if m.Manufacturer != "" && !globCovers(m.Manufacturer, b.Manufacturer) {
		return false
	}
	if m.ProductName != "" && !globCovers(m.ProductName, b.ProductName) {
		return false
	}
	if m.When != "" && m.When != b.When {
		return false
	}
	return true
}

// globCovers reports that everything b matches, a matches: b is a literal
// a matches, or equal to a, or a is PREFIX* and b starts with PREFIX.
func globCovers(a, b string) bool {
	if b == "" {
		return false
	}
	if a == b {
		return true
	}
	if !strings.ContainsAny(b, "*?") {
		return glob(a, b)
	}
	if prefix, ok := strings.CutSuffix(a, "*"); ok && !strings.ContainsAny(prefix, "*?") {
		return strings.HasPrefix(b, prefix)
	}
	return false
}

// A TargetFinding is a rule whose target names no [domain] section while
// one section's name is that name mistyped: the rule waits for a guest
// that never runs, and the devices it names stay pending.
type TargetFinding struct {
	Rule  *Rule
	Meant *Domain
}

func (f TargetFinding) String() string {
	return fmt.Sprintf("%s:%d: %s targets domain %q, which no [domain] section declares: did you mean %q (%s:%d)?",
		f.Rule.File, f.Rule.Line, f.Rule, f.Rule.Target.Domain, f.Meant.Name, f.Meant.File, f.Meant.Line)
}

// TargetTypos lists the rules whose target is undeclared and one letter
// or two from a declared domain's name. Names that differ only in digits
// (desk-1, desk-4) are guests of a series, not typos.
func (p *Policy) TargetTypos() []TargetFinding {
	if len(p.Domains) == 0 {
		return nil
	}
	names := make([]string, 0, len(p.Domains))
	for n := range p.Domains {
		names = append(names, n)
	}
	slices.Sort(names)
	meant := map[string]*Domain{} // by target, each looked up once
	var out []TargetFinding
	for _, r := range p.Rules {
		if r.Target == nil || p.Domains[r.Target.Domain] != nil {
			continue
		}
		t := r.Target.Domain
		d, seen := meant[t]
		if !seen {
			for _, n := range names {
				if typo(t, n) {
					d = p.Domains[n]
					break
				}
			}
			meant[t] = d
		}
		if d != nil {
			out = append(out, TargetFinding{Rule: r, Meant: d})
		}
	}
	return out
}

// typo says whether a and b, not equal, are at most two edits apart
// (insertions, deletions, substitutions) with a letter or a sign among the
// edits, or equal but for case.
func typo(a, b string) bool {
	if a == b {
		return false
	}
	if strings.EqualFold(a, b) {
		return true
	}
	ra, rb := []rune(a), []rune(b)
	if len(ra) < 3 || len(rb) < 3 || len(ra)-len(rb) > 2 || len(rb)-len(ra) > 2 || len(ra) > 64 || len(rb) > 64 {
		return false
	}
	// d[i][j]: the edits from ra[:i] to rb[:j]; nd: whether a cheapest way
	// there edits a character that is not a digit.
	d := make([][]int, len(ra)+1)
	nd := make([][]bool, len(ra)+1)
	for i := range d {
		d[i], nd[i] = make([]int, len(rb)+1), make([]bool, len(rb)+1)
		d[i][0] = i
		nd[i][0] = i > 0 && (nd[i-1][0] || !isDigit(ra[i-1]))
	}
	for j := 1; j <= len(rb); j++ {
		d[0][j] = j
		nd[0][j] = nd[0][j-1] || !isDigit(rb[j-1])
	}
	for i := 1; i <= len(ra); i++ {
		for j := 1; j <= len(rb); j++ {
			if ra[i-1] == rb[j-1] {
				d[i][j], nd[i][j] = d[i-1][j-1], nd[i-1][j-1]
				continue
			}
			sub := !isDigit(ra[i-1]) || !isDigit(rb[j-1])
			d[i][j], nd[i][j] = d[i-1][j-1]+1, nd[i-1][j-1] || sub
			if c := d[i-1][j] + 1; c < d[i][j] {
				d[i][j], nd[i][j] = c, nd[i-1][j] || !isDigit(ra[i-1])
			}
			if c := d[i][j-1] + 1; c < d[i][j] {
				d[i][j], nd[i][j] = c, nd[i][j-1] || !isDigit(rb[j-1])
			}
		}
	}
	return d[len(ra)][len(rb)] <= 2 && nd[len(ra)][len(rb)]
}

func isDigit(r rune) bool { return r >= '0' && r <= '9' }
