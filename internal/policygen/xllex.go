package policygen

import (
	"fmt"
	"strings"

	"github.com/usbhotplugd/usbhotplugd/policy"
)

type xlKind int

const (
	tEOF xlKind = iota
	tNewline
	tSemi
	tIdent
	tNumber
	tString
	tEq
	tPlusEq
	tOpen
	tClose
	tComma
)

type xlToken struct {
	kind xlKind
	text string
	line int
}

func (t xlToken) String() string {
	switch t.kind {
	case tEOF:
		return "the end of the file"
	case tNewline:
		return "the end of the line"
	case tString:
		return fmt.Sprintf("the string %q", t.text)
	case tIdent, tNumber:
		return fmt.Sprintf("%q", t.text)
	}
	return fmt.Sprintf("%q", t.text)
}

type xlLexer struct {
	file string
	src  string
	pos  int
	line int
}

func (lx *xlLexer) errAt(line int, format string, a ...any) error {
	return &XLError{File: lx.file, Line: line, Msg: fmt.Sprintf(format, a...)}
}

func isIdent(c byte, first bool) bool {
	return c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c == '_' || !first && c >= '0' && c <= '9'
}

// token reads the next token; comments and blanks are skipped.
func (lx *xlLexer) token() (xlToken, error) {
	for lx.pos < len(lx.src) {
		c := lx.src[lx.pos]
		switch {
		case c == ' ' || c == '\t' || c == '\r':
			lx.pos++
		case c == '#':
			for lx.pos < len(lx.src) && lx.src[lx.pos] != '\n' {
				lx.pos++
			}
		case c == '\n':
			lx.pos++
			lx.line++
			return xlToken{tNewline, "\n", lx.line - 1}, nil
		default:
			return lx.tokenAt(c)
		}
	}
	return xlToken{tEOF, "", lx.line}, nil
}

func (lx *xlLexer) tokenAt(c byte) (xlToken, error) {
	single := map[byte]xlKind{';': tSemi, '=': tEq, '[': tOpen, ']': tClose, ',': tComma}
	start := lx.pos
	switch {
	case single[c] != 0:
		lx.pos++
		return xlToken{single[c], string(c), lx.line}, nil
	case c == '+' && strings.HasPrefix(lx.src[lx.pos:], "+="):
		lx.pos += 2
		return xlToken{tPlusEq, "+=", lx.line}, nil
	case c == '"' || c == '\'':
		return lx.quoted(c)
	case c >= '0' && c <= '9':
		for lx.pos < len(lx.src) && strings.IndexByte("0123456789abcdefxABCDEFX", lx.src[lx.pos]) >= 0 {
			lx.pos++
		}
		return xlToken{tNumber, lx.src[start:lx.pos], lx.line}, nil
	case isIdent(c, true):
		for lx.pos < len(lx.src) && isIdent(lx.src[lx.pos], false) {
			lx.pos++
		}
		return xlToken{tIdent, lx.src[start:lx.pos], lx.line}, nil
	}
	return xlToken{}, lx.errAt(lx.line, "unexpected character %q", rune(c))
}

// quoted reads a string in quote q, with xl's escapes: \" \' \\ \a \b \f
// \n \r \t \v, \xHH and \OOO (octal, 1 to 3 digits).
func (lx *xlLexer) quoted(q byte) (xlToken, error) {
	line := lx.line
	lx.pos++
	var b strings.Builder
	for {
		if lx.pos >= len(lx.src) || lx.src[lx.pos] == '\n' {
			return xlToken{}, lx.errAt(line, "a string is not closed on its line (strings do not span lines)")
		}
		c := lx.src[lx.pos]
		lx.pos++
		switch {
		case c == q:
			return xlToken{tString, b.String(), line}, nil
		case c != '\\':
			b.WriteByte(c)
			continue
		}
		if lx.pos >= len(lx.src) || lx.src[lx.pos] == '\n' {
			return xlToken{}, lx.errAt(line, "a string is not closed on its line (strings do not span lines)")
		}
		e := lx.src[lx.pos]
		lx.pos++
		if r, ok := map[byte]byte{'"': '"', '\'': '\'', '\\': '\\', 'a': 7, 'b': 8, 'f': 12, 'n': '\n', 'r': '\r', 't': '\t', 'v': 11}[e]; ok {
			b.WriteByte(r)
			continue
		}
		n, ok := lx.numericEscape(e)
		if !ok {
			return xlToken{}, lx.errAt(line, "invalid escape \\%c in a string", e)
		}
		b.WriteByte(n)
	}
}

// numericEscape reads \xHH (e is 'x') or \OOO (e the first digit).
func (lx *xlLexer) numericEscape(e byte) (byte, bool) {
	base, maxDigits, v, n := 8, 2, int(e-'0'), 0
	switch {
	case e == 'x':
		base, maxDigits, v = 16, 2, 0
	case e >= '0' && e <= '7':
	default:
		return 0, false
	}
	for n < maxDigits && lx.pos < len(lx.src) {
		d := policy.HexDigit(lx.src[lx.pos])
		if d >= base {
			break
		}
		v = v*base + d
		lx.pos++
		n++
	}
	if e == 'x' && n != 2 || v > 255 {
		return 0, false
	}
	return byte(v), true
}
