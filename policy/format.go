package policy

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"unicode"
	"unicode/utf8"

	"github.com/usbhotplugd/usbhotplugd/internal/atomicfile"
)

// A RuleSpec is a rule to write out, as commands that write policy
// (`assign`, `generate`) build it.
type RuleSpec struct {
	Comment     string // written above the section, each line as a comment
	Name        string
	Description string
	Action      Action     // Attach or Deny
	Match       []KeyValue // match keys in the order to write them
	Domain      string     // the target, for Attach
	// Pins are the target's keys after domain, for Attach: controller and
	// port, as xl's controller= and port=.
	Pins []KeyValue
}

// A KeyValue is one key of a table: {"serial", "0001"}, {"port_path",
// "pci-..."}, {"controller", "0"}. Keys that take numbers (match's bus
// and addr, target's controller and port) are written as numbers when
// the value is decimal; every other key is a string.
type KeyValue struct{ Key, Value string }

// numeric says whether a key's values are numbers, by table.
func numeric(key string) bool {
	switch key {
	case "match.bus", "match.addr", "target.controller", "target.port":
		return true
	}
	return false
}

// FormatRule writes spec as a [[rule]] section. The result is checked by
// Parse: an error names what Parse refused, so nothing written by it can
// break a policy.
func FormatRule(spec RuleSpec) ([]byte, error) {
	b := formatRule(spec)
	if _, err := Parse("rule", b, nil); err != nil {
		return nil, fmt.Errorf("policy: rule %q: %w", spec.Name, err)
	}
	return b, nil
}

func formatRule(spec RuleSpec) []byte {
	var b bytes.Buffer
	b.Write(FormatComment(spec.Comment))
	b.WriteString("[[rule]]\n")
	fmt.Fprintf(&b, "name = %s\n", Quote(spec.Name))
	if spec.Description != "" {
		fmt.Fprintf(&b, "description = %s\n", Quote(spec.Description))
	}
	fmt.Fprintf(&b, "action = %s\n", Quote(spec.Action.String()))
	if len(spec.Match) > 0 {
		writeInline(&b, "match", spec.Match)
	}
	if spec.Action == Attach {
		writeInline(&b, "target", append([]KeyValue{{"domain", spec.Domain}}, spec.Pins...))
	}
	return b.Bytes()
}

// writeInline writes table = { k = v, ... } on one line.
func writeInline(b *bytes.Buffer, table string, kvs []KeyValue) {
	fmt.Fprintf(b, "%s = { ", table)
	for i, kv := range kvs {
		if i > 0 {
			b.WriteString(", ")
		}
		v := Quote(kv.Value)
		if n, err := strconv.Atoi(kv.Value); err == nil && numeric(table+"."+kv.Key) {
			v = strconv.Itoa(n)
		}
		fmt.Fprintf(b, "%s = %s", QuoteKey(kv.Key), v)
	}
	b.WriteString(" }\n")
}

// FormatComment writes text as comment lines, each "# " and the line
// with what does not print shown as '?', so a device's strings cannot
// end the comment or hide what follows; "" writes nothing.
func FormatComment(text string) []byte {
	if text == "" {
		return nil
	}
	var b bytes.Buffer
	for _, l := range strings.Split(strings.TrimRight(text, "\n"), "\n") {
		b.WriteString(strings.TrimRight("# "+strings.Map(printable, l), " ") + "\n")
	}
	return b.Bytes()
}

// FormatDropIn writes a drop-in file: comment (each line prefixed "# "),
// hosts when not empty, then each rule. Parse accepts the result, or
// FormatDropIn says why not.
func FormatDropIn(comment string, hosts []string, specs ...RuleSpec) ([]byte, error) {
	var b bytes.Buffer
	b.Write(FormatComment(comment))
	if len(hosts) > 0 {
		q := make([]string, len(hosts))
		for i, h := range hosts {
			q[i] = Quote(h)
		}
		fmt.Fprintf(&b, "hosts = [%s]\n", strings.Join(q, ", "))
	}
	for _, s := range specs {
		b.WriteString("\n")
		b.Write(formatRule(s))
	}
	ps := newParseState(context.Background(), "drop-in", nil)
	ps.allHosts = true // the hosts key is checked, not applied
	ps.file("drop-in", b.Bytes(), nil, true)
	if _, err := ps.finish(); err != nil {
		return nil, fmt.Errorf("policy: drop-in: %w", err)
	}
	return b.Bytes(), nil
}

// printable keeps a comment on one line and free of control characters;
// a byte that is not UTF-8 is shown as '?' too.
func printable(r rune) rune {
	if unicode.IsPrint(r) && r != utf8.RuneError {
		return r
	}
	return '?'
}

// Quote writes s as a TOML basic string that reads back as s: quotes and
// backslashes escaped, and every character that does not print (controls,
// bidirectional overrides) as \uXXXX, so the file shows what it holds.
func Quote(s string) string {
	var b strings.Builder
	b.WriteByte('"')
	for _, r := range s {
		switch {
		case r == '"' || r == '\\':
			b.WriteByte('\\')
			b.WriteRune(r)
		case r == ' ' || unicode.IsPrint(r) && !unicode.Is(unicode.Bidi_Control, r):
			b.WriteRune(r)
		case r > 0xffff:
			fmt.Fprintf(&b, `\U%08X`, r)
		default:
			fmt.Fprintf(&b, `\u%04X`, r)
		}
	}
	b.WriteByte('"')
	return b.String()
}

// QuoteKey writes a key (of a table or a [domain.NAME] header) bare when
// TOML allows, else as Quote does.
func QuoteKey(k string) string {
	if k != "" && strings.IndexFunc(k, func(r rune) bool { return r > 0x7f || !isBare(byte(r)) }) < 0 {
		return k
	}
	return Quote(k)
}

// DropInFileName makes a drop-in's file name from words (a device's
// identity): letters, digits, '-', '_' and '.', ending in .toml, never
// hidden, at most 100 bytes.
func DropInFileName(words ...string) string {
	s := strings.Map(func(r rune) rune {
		if r < 0x80 && (isBare(byte(r)) || r == '.') {
			return r
		}
		return '_'
	}, strings.Join(words, "-"))
	s = strings.TrimLeft(s, ".")
	if len(s) > 95 {
		s = s[:95]
	}
	if s == "" {
		s = "rule"
	}
	return s + ".toml"
}

// WriteDropIn writes data as dir/name, where name is a plain file name
// ending in .toml: to a hidden temporary file in dir (which Load skips),
// synced, then renamed over name, so a reload never reads half a file.
// It refuses data Parse does not accept as a drop-in.
func WriteDropIn(dir, name string, data []byte) error {
	if err := checkDropInName(name); err != nil {
		return err
	}
	ps := newParseState(context.Background(), name, nil)
	ps.allHosts = true
	ps.file(name, data, nil, true)
	if _, err := ps.finish(); err != nil {
		return fmt.Errorf("policy: drop-in %s: %w", name, err)
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return fmt.Errorf("policy: %w", err)
	}
	if err := atomicfile.Write(filepath.Join(dir, name), data, 0o644, true); err != nil {
		return fmt.Errorf("policy: drop-in %s: %w", filepath.Join(dir, name), err)
	}
	return nil
}

// RemoveDropIn removes dir/name; a file already gone is no error.
func RemoveDropIn(dir, name string) error {
	if err := checkDropInName(name); err != nil {
		return err
	}
	if err := os.Remove(filepath.Join(dir, name)); err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("policy: %w", err)
	}
	return nil
}

func checkDropInName(name string) error {
	if name != filepath.Base(name) || strings.HasPrefix(name, ".") || !strings.HasSuffix(name, ".toml") || len(name) <= len(".toml") {
		return fmt.Errorf("policy: drop-in name %q: a plain file name ending in .toml, not hidden", name)
	}
	return nil
}
