package policygen

import (
	"fmt"
	"strings"

	"github.com/usbhotplugd/usbhotplugd/policy"
)

// writeRule writes spec after a blank line, as policy.FormatRule does; an
// error names the rule Parse refused.
func writeRule(b *strings.Builder, spec policy.RuleSpec) error {
	r, err := policy.FormatRule(spec)
	if err != nil {
		return err
	}
	b.WriteString("\n")
	b.Write(r)
	return nil
}

// writeDomain writes the [domain.NAME] section with the controllers of
// usbctrl.
func writeDomain(b *strings.Builder, domain string, specs []policy.CtrlSpec) {
	q := make([]string, len(specs))
	for i, c := range specs {
		q[i] = policy.Quote(c.String())
	}
	fmt.Fprintf(b, "[domain.%s]\nusbctrl = [%s]\n", policy.QuoteKey(domain), strings.Join(q, ", "))
}

// slug makes a rule name part from a device's strings: lowercase letters,
// digits and dashes.
func slug(s string) string {
	var b strings.Builder
	dash := false
	for _, r := range strings.ToLower(s) {
		if r >= 'a' && r <= 'z' || r >= '0' && r <= '9' {
			b.WriteRune(r)
			dash = false
		} else if !dash && b.Len() > 0 {
			b.WriteByte('-')
			dash = true
		}
	}
	out := strings.TrimSuffix(b.String(), "-")
	if len(out) > 48 {
		out = strings.TrimSuffix(out[:48], "-")
	}
	return out
}

// names hands out unique rule names.
type names map[string]bool

func (n names) unique(base string) string {
	if base == "" {
		base = "device"
	}
	name := base
	for i := 2; n[name]; i++ {
		name = fmt.Sprintf("%s-%d", base, i)
	}
	n[name] = true
	return name
}
