package policygen

import (
	"fmt"
	"strings"
	"unicode/utf8"
)

// quote writes s as a TOML basic string. Serials and product strings come
// from devices and may hold anything: control characters are escaped and
// bytes that are not UTF-8 become U+FFFD, so the file always parses.
func quote(s string) string {
	var b strings.Builder
	b.WriteByte('"')
	for len(s) > 0 {
		r, n := utf8.DecodeRuneInString(s)
		s = s[n:]
		switch {
		case r == '"' || r == '\\':
			b.WriteByte('\\')
			b.WriteRune(r)
		case r == '\n':
			b.WriteString(`\n`)
		case r == '\t':
			b.WriteString(`\t`)
		case r < 0x20 || r == 0x7f:
			fmt.Fprintf(&b, `\u%04X`, r)
		default:
			b.WriteRune(r) // utf8.RuneError for a bad byte: U+FFFD
		}
	}
	b.WriteByte('"')
	return b.String()
}

// comment makes s safe on one comment line.
func comment(s string) string {
	return strings.Map(func(r rune) rune {
		if r < 0x20 || r == 0x7f || r == utf8.RuneError {
			return '?'
		}
		return r
	}, s)
}

// A KV is one key of an inline table, in the order written.
type KV struct {
	Key   string
	Value string // already TOML: quoted string or number
}

// Str is a string value.
func Str(k, v string) KV { return KV{k, quote(v)} }

// Int is a number value.
func Int(k string, v int) KV { return KV{k, fmt.Sprint(v)} }

func inline(kvs []KV) string {
	parts := make([]string, len(kvs))
	for i, kv := range kvs {
		parts[i] = kv.Key + " = " + kv.Value
	}
	return "{ " + strings.Join(parts, ", ") + " }"
}

// A Rule is a rule to write.
type Rule struct {
	Comments    []string // lines written as comments above it
	Name        string
	Description string
	Action      string // "attach" or "deny"
	Match       []KV
	Target      []KV // for attach
}

// TOML is the rule as a [[rule]] section.
func (r Rule) TOML() string {
	var b strings.Builder
	for _, c := range r.Comments {
		b.WriteString(strings.TrimRight("# "+comment(c), " ") + "\n")
	}
	b.WriteString("[[rule]]\n")
	fmt.Fprintf(&b, "name = %s\n", quote(r.Name))
	if r.Description != "" {
		fmt.Fprintf(&b, "description = %s\n", quote(r.Description))
	}
	fmt.Fprintf(&b, "action = %s\n", quote(r.Action))
	if len(r.Match) > 0 {
		fmt.Fprintf(&b, "match = %s\n", inline(r.Match))
	}
	if len(r.Target) > 0 {
		fmt.Fprintf(&b, "target = %s\n", inline(r.Target))
	}
	return b.String()
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
