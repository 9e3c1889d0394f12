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

// Shadowed lists the rules that an earlier rule shadows. The test is
// conservative: a rule listed is certainly shadowed; one not listed may
// still be, through a combination of earlier rules.
func (p *Policy) Shadowed() []Finding {
	var out []Finding
	for j, b := range p.Rules {
		for _, a := range p.Rules[:j] {
			if a.Match.covers(&b.Match) {
				out = append(out, Finding{Rule: b, By: a})
				break
			}
		}
	}
	return out
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
