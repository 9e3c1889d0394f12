package safetext_test

import (
	"fmt"
	"strconv"
	"strings"
	"testing"
	"unicode"
	"unicode/utf8"

	"github.com/usbhotplugd/usbhotplugd/internal/safetext"
)

func TestText(t *testing.T) {
	for in, want := range map[string]string{
		"Logitech USB Receiver":     "Logitech USB Receiver",
		"Ταυτότητα 日本":              "Ταυτότητα 日本",
		"\x1b[2J\x1b]0;owned\x07":   `\x1b[2J\x1b]0;owned\x07`,
		"csi\u009b31m":              `csi\u009b31m`,
		"row\n1-1.4  046d:c31c":     `row\n1-1.4  046d:c31c`,
		"cr\rover":                  `cr\rover`,
		"tab\tdel\x7f":              `tab\tdel\x7f`,
		`already \x1b`:              `already \\x1b`,
		"rtl\u202egnp.exe":          `rtl\u202egnp.exe`,
		"iso\u2066late\u2069":       `iso\u2066late\u2069`,
		"zero\u200bwidth\ufeff":     `zero\u200bwidth\ufeff`,
		"bad \xff\xfe utf8":         `bad \xff\xfe utf8`,
		"nbsp\u00a0x":               `nbsp\u00a0x`,
		"tag\U000e0041":             `tag\U000e0041`,
		"":                          "",
		"nul\x00":                   `nul\x00`,
		"\u00e9\u0301 combining ok": "\u00e9\u0301 combining ok",
	} {
		if got := safetext.Text(in); got != want {
			t.Errorf("Text(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestLine(t *testing.T) {
	for in, want := range map[string]string{
		`serial "\x1b[2J" is not "A"`: `serial "\x1b[2J" is not "A"`,
		"raw \x1b[2J\n":               `raw \x1b[2J\n`,
	} {
		if got := safetext.Line(in); got != want {
			t.Errorf("Line(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestWord(t *testing.T) {
	for in, want := range map[string]string{
		"ABC-123_x.y":            "ABC-123_x.y",
		"$(reboot)":              "__reboot_",
		"a b;c|d&e`f'g\"h\n":     "a_b_c_d_e_f_g_h_",
		"日本":                     "__",
		"-rf":                    "-rf",
		strings.Repeat("a", 300): strings.Repeat("a", safetext.MaxWord),
	} {
		if got := safetext.Word(in); got != want {
			t.Errorf("Word(%q) = %q, want %q", in, got, want)
		}
	}
}

// unescape reverses Text, to show that Text loses nothing.
func unescape(s string) (string, error) {
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] != '\\' {
			b.WriteByte(s[i])
			continue
		}
		if i+1 >= len(s) {
			return "", fmt.Errorf("a lone backslash at the end")
		}
		i++
		switch c := s[i]; c {
		case '\\':
			b.WriteByte('\\')
		case 'n':
			b.WriteByte('\n')
		case 'r':
			b.WriteByte('\r')
		case 't':
			b.WriteByte('\t')
		case 'x', 'u', 'U':
			n := map[byte]int{'x': 2, 'u': 4, 'U': 8}[c]
			if i+n >= len(s) {
				return "", fmt.Errorf("short escape")
			}
			v, err := strconv.ParseUint(s[i+1:i+1+n], 16, 32)
			if err != nil {
				return "", err
			}
			if c == 'x' {
				b.WriteByte(byte(v))
			} else {
				b.WriteRune(rune(v))
			}
			i += n
		default:
			return "", fmt.Errorf("unknown escape \\%c", c)
		}
	}
	return b.String(), nil
}

func FuzzText(f *testing.F) {
	for _, s := range []string{"Logitech", "\x1b[31mred", "a\nb", `\x1b`, "\u202e", "\xff", "\u009b", "日本\u200b"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		out := safetext.Text(s)
		if !utf8.ValidString(out) {
			t.Fatalf("Text(%q) = %q is not UTF-8", s, out)
		}
		for _, r := range out {
			if r != ' ' && (!unicode.IsPrint(r) || unicode.Is(unicode.Bidi_Control, r)) {
				t.Fatalf("Text(%q) = %q holds %U", s, out, r)
			}
		}
		back, err := unescape(out)
		if err != nil || back != s {
			t.Fatalf("Text(%q) = %q reads back as %q (%v)", s, out, back, err)
		}
		line := safetext.Line(s)
		if strings.ContainsFunc(line, func(r rune) bool { return r != ' ' && (!unicode.IsPrint(r) || unicode.Is(unicode.Bidi_Control, r)) }) ||
			strings.Count(line, `\`) < strings.Count(s, `\`) {
			t.Fatalf("Line(%q) = %q", s, line)
		}
		w := safetext.Word(s)
		if len(w) > safetext.MaxWord || strings.ContainsFunc(w, func(r rune) bool {
			return !(r < 0x80 && (unicode.IsLetter(r) || unicode.IsDigit(r) || strings.ContainsRune("._-+:@,=", r)))
		}) {
			t.Fatalf("Word(%q) = %q", s, w)
		}
	})
}
