package policy

import (
	"fmt"
	"strconv"
	"strings"
	"unicode"
	"unicode/utf8"
)

// Limits on names, in characters (not bytes: a name in Greek is as long
// as one in Latin).
const (
	MaxRuleName   = 80
	MaxDomainName = 64
)

// Dom0 is the name xl gives dom0. A device stays with dom0 whenever no
// rule attaches it, so a rule that targets it can never do anything.
const Dom0 = "Domain-0"

// badRune describes the first character of s that a name may not hold:
// a control character (C0 or C1), a format character such as a
// bidirectional override (which makes text display in another order than
// it is read), or any other character that does not print.
func badRune(s string, space bool) string {
	for i, c := range s {
		switch {
		case c == utf8.RuneError:
			return fmt.Sprintf("byte %d is not UTF-8", i+1)
		case c == ' ' && space:
			continue
		case c == ' ':
			return "a space"
		case unicode.Is(unicode.Bidi_Control, c):
			return fmt.Sprintf("U+%04X, a bidirectional control", c)
		case unicode.IsControl(c):
			return fmt.Sprintf("U+%04X, a control character", c)
		case !unicode.IsPrint(c):
			return fmt.Sprintf("U+%04X, which does not print", c)
		}
	}
	return ""
}

// isDecimal reports a number; it looks at the first byte first, since
// Atoi allocates its error.
func isDecimal(s string) bool {
	if s == "" || !(s[0] >= '0' && s[0] <= '9' || s[0] == '-' || s[0] == '+') {
		return false
	}
	_, err := strconv.Atoi(s)
	return err == nil
}

// checkRuleName accepts 1 to MaxRuleName printable characters.
func checkRuleName(s string) error {
	if n := utf8.RuneCountInString(s); n == 0 || n > MaxRuleName {
		return fmt.Errorf("a name is 1 to %d characters, not %d", MaxRuleName, n)
	}
	if why := badRune(s, true); why != "" {
		return fmt.Errorf("%q holds %s: a name is printable characters", s, why)
	}
	return nil
}

func checkDomainName(s string) error {
	if n := utf8.RuneCountInString(s); n == 0 || n > MaxDomainName {
		return fmt.Errorf("%q is not a domain name (1 to %d characters)", s, MaxDomainName)
	}
	if strings.ContainsAny(s, "/\\") {
		return fmt.Errorf("%q is not a domain name (no / or \\)", s)
	}
	if why := badRune(s, false); why != "" {
		return fmt.Errorf("%q is not a domain name: it holds %s", s, why)
	}
	if isDecimal(s) {
		return fmt.Errorf("%q is a domid: name the domain instead, since its domid changes on every boot", s)
	}
	if strings.EqualFold(s, Dom0) {
		return fmt.Errorf("%q is dom0 itself: %w: a device no rule attaches stays with dom0 (write a deny rule to say so)", s, ErrNeverMatches)
	}
	return nil
}
