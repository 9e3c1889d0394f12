package policy_test

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/BurntSushi/toml"

	"github.com/usbhotplugd/usbhotplugd/policy"
)

// What FormatRule writes reads back as the same rule, whatever the
// device's strings hold.
func TestFormatRuleRoundTrip(t *testing.T) {
	for _, serial := range []string{"0001", `a"b\c`, "rtl\u202eexe", "c1\u009b", `"""`, "日本"} {
		spec := policy.RuleSpec{Name: "assign-" + policy.DropInFileName(serial), Description: "assigned: " + serial, Action: policy.Attach,
			Match: []policy.KeyValue{{Key: "id", Value: "046d:c31c"}, {Key: "serial", Value: serial}}, Domain: "desk-1"}
		b, err := policy.FormatRule(spec)
		if err != nil {
			t.Fatalf("%q: %v", serial, err)
		}
		if strings.ContainsAny(string(b), "\u202e\u009b") || strings.Count(string(b), "\n") != 6 {
			t.Errorf("%q: the file does not show what it holds:\n%s", serial, b)
		}
		p, err := policy.Parse("d.toml", b, nil)
		if err != nil {
			t.Fatalf("%q: %v\n%s", serial, err, b)
		}
		r := p.Rules[0]
		if r.Match.Serials[0] != serial || r.Description != spec.Description || r.Target.Domain != "desk-1" || r.Action != policy.Attach {
			t.Errorf("%q reads back as %+v", serial, r)
		}
	}
	for _, serial := range []string{"two\nlines", "esc\x1b[2J"} { // refused by Parse: no rule could match them
		if _, err := policy.FormatRule(policy.RuleSpec{Name: "x", Action: policy.Deny, Match: []policy.KeyValue{{Key: "serial", Value: serial}}}); err == nil {
			t.Errorf("%q: written", serial)
		}
	}
	if _, err := policy.FormatRule(policy.RuleSpec{Name: "x", Action: policy.Attach, Domain: "Domain-0"}); err == nil || !strings.Contains(err.Error(), "dom0 itself") {
		t.Errorf("a rule Parse refuses: %v", err)
	}
	b, err := policy.FormatRule(policy.RuleSpec{Name: "by-address", Action: policy.Deny, Match: []policy.KeyValue{{Key: "bus", Value: "1"}, {Key: "addr", Value: "6"}}})
	if err != nil || !strings.Contains(string(b), "match = { bus = 1, addr = 6 }") {
		t.Errorf("numbers: %v\n%s", err, b)
	}
}

// A drop-in written by WriteDropIn is loaded after the main file, in its
// place in lexical order; RemoveDropIn takes it away.
func TestWriteDropIn(t *testing.T) {
	dir := t.TempDir()
	main := filepath.Join(dir, "policy.toml")
	write(t, main, deny("main"))
	spec := policy.RuleSpec{Name: "assign-0001", Action: policy.Attach, Match: []policy.KeyValue{{Key: "serial", Value: "0001"}}, Domain: "desk-1"}
	b, err := policy.FormatDropIn("written by usbhotplugd assign\nline two\x1b", []string{"vdi-*"}, spec)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(string(b), "# written by usbhotplugd assign\n# line two?\nhosts = [\"vdi-*\"]\n\n[[rule]]\n") {
		t.Errorf("drop-in:\n%s", b)
	}
	d := policy.DropInDir(main)
	name := policy.DropInFileName("assign", "0001")
	if err := policy.WriteDropIn(d, name, b); err != nil {
		t.Fatal(err)
	}
	p, err := policy.Load(context.Background(), main, policy.Options{Host: "vdi-3"})
	if err != nil || len(p.Rules) != 2 || p.Rules[1].Name != "assign-0001" || p.Rules[1].File != filepath.Join(d, "assign-0001.toml") {
		t.Fatalf("after WriteDropIn: %v %+v", err, p)
	}
	if err := policy.WriteDropIn(d, "../x.toml", b); err == nil {
		t.Error("a name outside the directory was accepted")
	}
	if err := policy.WriteDropIn(d, "bad.toml", []byte("[[rule]]\nname = 1\n")); err == nil {
		t.Error("a drop-in Parse refuses was written")
	}
	ents, _ := os.ReadDir(d)
	if len(ents) != 1 {
		t.Errorf("left behind: %v", ents)
	}
	if err := policy.RemoveDropIn(d, name); err != nil {
		t.Fatal(err)
	}
	if err := policy.RemoveDropIn(d, name); err != nil {
		t.Errorf("removing it again: %v", err)
	}
}

// Whatever a device puts in its strings, Quote's value reads back as TOML
// to the same string (bytes that are not UTF-8 as U+FFFD), and
// FormatComment keeps each line a comment.
func TestQuoteRoundTrips(t *testing.T) {
	for _, s := range []string{"", "plain", `quo"te`, `back\slash`, "tab\tnew\nline", "\x00\x01\x1f\x7f", "caf\xc3\xa9", "bad\xff\xfe", "#not a comment", "''' \"\"\"", "rtl\u202eexe", "\U0001F600"} {
		var v struct{ V string }
		if _, err := toml.Decode("V = "+policy.Quote(s), &v); err != nil {
			t.Errorf("%q written as %s: %v", s, policy.Quote(s), err)
			continue
		}
		if want := string([]rune(s)); v.V != want { // each bad byte a U+FFFD
			t.Errorf("%q reads back as %q", s, v.V)
		}
	}
	if got := string(policy.FormatComment("a\nb\x00c\xff \n")); got != "# a\n# b?c?\n" {
		t.Errorf("comment: %q", got)
	}
	if got := policy.QuoteKey("lab.example") + " " + policy.QuoteKey("kiosk_1-a"); got != `"lab.example" kiosk_1-a` {
		t.Errorf("keys: %s", got)
	}
}
