package policygen

import (
	"testing"

	"github.com/BurntSushi/toml"
)

// Whatever a device puts in its strings, the value written reads back
// as TOML to the same string (bytes that are not UTF-8 as U+FFFD).
func TestQuoteRoundTrips(t *testing.T) {
	for _, s := range []string{"", "plain", `quo"te`, `back\slash`, "tab\tnew\nline", "\x00\x01\x1f\x7f", "caf\xc3\xa9", "bad\xff\xfe", "#not a comment", "''' \"\"\""} {
		var v struct{ V string }
		if _, err := toml.Decode("V = "+quote(s), &v); err != nil {
			t.Errorf("%q written as %s: %v", s, quote(s), err)
			continue
		}
		if want := string([]rune(s)); v.V != want { // each bad byte a U+FFFD
			t.Errorf("%q reads back as %q", s, v.V)
		}
	}
	if got := comment("a\nb\x00c\xff"); got != "a?b?c?" {
		t.Errorf("comment: %q", got)
	}
	if got := slug("  QEMU USB Hub (rev 2) "); got != "qemu-usb-hub-rev-2" {
		t.Errorf("slug: %q", got)
	}
	n := names{}
	if a, b, c := n.unique("x"), n.unique("x"), n.unique("x-2"); a != "x" || b != "x-2" || c != "x-2-2" {
		t.Errorf("names: %s %s %s", a, b, c)
	}
}
