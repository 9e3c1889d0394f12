package policy_test

import (
	"errors"
	"strings"
	"testing"

	"github.com/usbhotplugd/usbhotplugd/policy"
)

func attachTo(name, match, domain string) string {
	return "[[rule]]\nname = \"" + name + "\"\naction = \"attach\"\nmatch = { " + match + " }\ntarget = { domain = \"" + domain + "\" }\n"
}

// A rule that can never match is an error, not a rule that silently
// never decides.
func TestNeverMatches(t *testing.T) {
	for _, port := range []string{"1-01", "0-1", "1-0", "1-32", "64-1", "1-1.1.1.1.1.1.1", "0-*", "1-0*", "1-1.01*", "1-.1*", "1-1.40.*", "01-*"} {
		_, err := policy.Parse("t.toml", []byte(attachTo("r", `port = "`+port+`"`, "vm")), nil)
		if !errors.Is(err, policy.ErrNeverMatches) || !strings.Contains(err.Error(), "t.toml:4: rule 1 \"r\": match.port: \""+port+"\"") {
			t.Errorf("port %q: want never-matches, got %v", port, err)
		}
	}
	for _, port := range []string{"1-1.*", "1-*", "*-1", "2-1?", "63-31", "1-1.2.3.4.5.6", "1*", "3-1.1?.*"} {
		if _, err := policy.Parse("t.toml", []byte(attachTo("r", `port = "`+port+`"`, "vm")), nil); err != nil {
			t.Errorf("port %q refused: %v", port, err)
		}
	}
	for _, dom := range []string{"Domain-0", "domain-0"} {
		_, err := policy.Parse("t.toml", []byte(attachTo("r", `id = "046d:c31c"`, dom)), nil)
		if !errors.Is(err, policy.ErrNeverMatches) || !strings.Contains(err.Error(), "t.toml:5: rule 1 \"r\": target.domain: \""+dom+"\" is dom0 itself") {
			t.Errorf("target %q: %v", dom, err)
		}
		_, err = policy.Parse("t.toml", []byte("[domain."+dom+"]\nusbctrl = [\"version=2\"]\n"), nil)
		if !errors.Is(err, policy.ErrNeverMatches) {
			t.Errorf("[domain.%s]: %v", dom, err)
		}
	}
}

// Names refuse what would display as something else; lengths count
// characters.
func TestNames(t *testing.T) {
	cases := []struct {
		name, domain string
		bad          string // the text of the error, "" when accepted
	}{
		{"badge-reader", "kiosk", ""},
		{"Ταυτότητα αναγνώστης", "γραφείο", ""},
		{strings.Repeat("é", 80), strings.Repeat("δ", 64), ""},
		{strings.Repeat("é", 81), "vm", "a name is 1 to 80 characters, not 81"},
		{"vm", strings.Repeat("δ", 65), "is not a domain name (1 to 64 characters)"},
		{"evil\u202egnp.exe", "vm", "U+202E, a bidirectional control"},
		{"isolate\u2066x\u2069", "vm", "U+2066, a bidirectional control"},
		{"next\u0085line", "vm", "U+0085, a control character"},
		{"csi\u009b31m", "vm", "U+009B, a control character"},
		{"esc\x1b[31m", "vm", "U+001B, a control character"},
		{"zero\u200bwidth", "vm", "U+200B, which does not print"},
		{"r", "desk\u202e", "it holds U+202E, a bidirectional control"},
		{"r", "desk\u00a0one", "U+00A0, which does not print"},
	}
	for _, c := range cases {
		src := strings.ReplaceAll(attachTo("NAME", `id = "046d:c31c"`, "DOM"), "NAME", strings.ReplaceAll(c.name, "\x1b", `\e`))
		src = strings.ReplaceAll(src, "DOM", c.domain)
		_, err := policy.Parse("t.toml", []byte(src), nil)
		switch {
		case c.bad == "" && err != nil:
			t.Errorf("%q → %q refused: %v", c.name, c.domain, err)
		case c.bad != "" && (err == nil || !strings.Contains(err.Error(), c.bad)):
			t.Errorf("%q → %q: want %q, got %v", c.name, c.domain, c.bad, err)
		}
	}
}
