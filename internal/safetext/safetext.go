package safetext

import (
	"fmt"
	"strings"
	"unicode"
	"unicode/utf8"
)

// Text returns s as it can be shown on a terminal: printable characters
// and spaces as they are, a backslash as \\, \n \r \t as such, other
// controls and bytes that are not UTF-8 as \xHH, and other characters
// that do not print (C1 controls, bidirectional controls, zero-width
// ones) as \uHHHH.
func Text(s string) string { return escape(s, true) }

// Line is Text for a message that may hold escapes already (a reason
// that quotes a device's string with %q): a backslash stays as it is,
// everything else is escaped as Text does. The result is as safe to show
// but cannot always be read back.
func Line(s string) string { return escape(s, false) }

func escape(s string, backslash bool) string {
	if clean(s, backslash) {
		return s // the usual case: no copy
	}
	var b strings.Builder
	b.Grow(len(s) + 8)
	for i := 0; i < len(s); {
		r, n := utf8.DecodeRuneInString(s[i:])
		switch {
		case r == utf8.RuneError && n <= 1:
			fmt.Fprintf(&b, `\x%02x`, s[i])
		case r == '\\' && backslash:
			b.WriteString(`\\`)
		case r == '\n':
			b.WriteString(`\n`)
		case r == '\r':
			b.WriteString(`\r`)
		case r == '\t':
			b.WriteString(`\t`)
		case r < 0x20 || r == 0x7f:
			fmt.Fprintf(&b, `\x%02x`, r)
		case printable(r):
			b.WriteRune(r)
		case r > 0xffff:
			fmt.Fprintf(&b, `\U%08x`, r)
		default:
			fmt.Fprintf(&b, `\u%04x`, r)
		}
		i += n
	}
	return b.String()
}

// printable: shows as itself, and does not change how the rest of the
// line shows.
func printable(r rune) bool {
	return r == ' ' || unicode.IsPrint(r) && !unicode.Is(unicode.Bidi_Control, r)
}

// clean reports that escape would return s unchanged.
func clean(s string, backslash bool) bool {
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c < 0x20 || c == 0x7f || c == '\\' && backslash {
			return false
		}
		if c >= 0x80 {
			for _, r := range s[i:] {
				if r == '\\' && backslash || r == utf8.RuneError || !printable(r) {
					return false
				}
			}
			return true
		}
	}
	return true
}

// MaxWord bounds Word's result, in bytes.
const MaxWord = 256

// Word returns s with every character that is not an ASCII letter, digit
// or one of . _ - + : @ , = replaced by _, and cut to MaxWord bytes: a
// string a script can use unquoted in a shell command, a file name or a
// log line. It is not unique (two strings may give the same word): match
// on the raw string, show or use the word.
func Word(s string) string {
	b := make([]byte, 0, min(len(s), MaxWord))
	for _, r := range s {
		if len(b) == MaxWord {
			break
		}
		if r < 0x80 && wordByte(byte(r)) {
			b = append(b, byte(r))
		} else {
			b = append(b, '_')
		}
	}
	return string(b)
}

func wordByte(c byte) bool {
	return c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || strings.IndexByte("._-+:@,=", c) >= 0
}
