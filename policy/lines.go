package policy

import (
	"strconv"
	"strings"
)

// lineIndex finds the line of every table, key and array element of a
// TOML document. The TOML library reports where syntax breaks, but not
// where a valid key was written in the n-th [[rule]]: it keys positions by
// name without the array index, so every error would name the last rule's
// line. Run only on documents the library has accepted.
//
// It is a tree, walked without allocating: a policy of 100 000 rules has
// a million positions.
type lineIndex struct{ root *lineNode }

type lineNode struct {
	line  int
	kids  []lineKid   // a table's keys, in the order written
	elems []*lineNode // an array's elements
}

// A lineKid is a key of a table. Tables in a policy have a handful of
// keys: a slice searched in order costs less than a map per table.
type lineKid struct {
	key  string
	node *lineNode
}

// kid returns the child named k (an element when k is an index), or nil.
func (n *lineNode) kid(k string) *lineNode {
	if n.elems != nil && k != "" && k[0] >= '0' && k[0] <= '9' {
		if i, err := strconv.Atoi(k); err == nil {
			if i >= 0 && i < len(n.elems) {
				return n.elems[i]
			}
			return nil
		}
	}
	for i := range n.kids {
		if n.kids[i].key == k {
			return n.kids[i].node
		}
	}
	return nil
}

// child returns the child named k, creating it at line.
func (n *lineNode) child(k string, line int) *lineNode {
	for i := range n.kids {
		if n.kids[i].key == k {
			return n.kids[i].node
		}
	}
	c := &lineNode{line: line}
	n.kids = append(n.kids, lineKid{k, c})
	return c
}

// elem returns the array's element i, creating it at line.
func (n *lineNode) elem(i, line int) *lineNode {
	for len(n.elems) <= i {
		n.elems = append(n.elems, &lineNode{line: line})
	}
	return n.elems[i]
}

// line returns the line of path, or of its nearest recorded ancestor.
func (ix lineIndex) line(path ...string) int {
	return ix.node(path).line
}

// node returns path's node, or its nearest recorded ancestor.
func (ix lineIndex) node(path []string) *lineNode {
	n := ix.root
	for _, p := range path {
		c := n.kid(p)
		if c == nil {
			break
		}
		n = c
	}
	return n
}

type scanner struct {
	src  string
	i    int
	line int
	root *lineNode
}

func indexLines(src string) lineIndex {
	s := &scanner{src: src, line: 1, root: &lineNode{}}
	table := s.root
	for s.i < len(s.src) {
		start := s.i
		s.skipSpace(true)
		if s.i >= len(s.src) {
			break
		}
		switch c := s.src[s.i]; {
		case c == '[':
			array := strings.HasPrefix(s.src[s.i:], "[[")
			if array {
				s.i += 2
			} else {
				s.i++
			}
			table = s.header(s.keyParts(']'), array)
			s.skipTo('\n')
		default:
			s.keyValue(table)
			s.skipTo('\n')
		}
		if s.i == start { // never loop in place
			s.i++
		}
	}
	return lineIndex{s.root}
}

// header resolves a table header's dotted key: a part naming an array of
// tables is its last element, and [[...]] adds one. The tables a header
// creates on the way (and [[rule]]'s array itself) get its line too, so
// errors about them name it.
func (s *scanner) header(parts []string, array bool) *lineNode {
	n := s.root
	for i, p := range parts {
		n = n.child(p, s.line)
		last := i == len(parts)-1
		switch {
		case last && array:
			n = n.elem(len(n.elems), s.line)
		case last:
			n.line = s.line
		case len(n.elems) > 0:
			n = n.elems[len(n.elems)-1]
		}
	}
	return n
}

func (s *scanner) keyValue(table *lineNode) {
	parts := s.keyParts('=')
	if len(parts) == 0 {
		return
	}
	n := table
	for _, p := range parts {
		n = n.child(p, s.line)
	}
	if s.i < len(s.src) && s.src[s.i] == '=' {
		s.i++
	}
	s.value(n)
}

// keyParts reads a dotted key up to stop ('=' or ']'), leaving s.i at stop.
func (s *scanner) keyParts(stop byte) []string {
	var parts []string
	for s.i < len(s.src) {
		s.skipSpace(false)
		if s.i >= len(s.src) {
			break
		}
		c := s.src[s.i]
		switch {
		case c == stop:
			if stop == ']' {
				s.i++
				if s.i < len(s.src) && s.src[s.i] == ']' {
					s.i++
				}
			}
			return parts
		case c == '.':
			s.i++
		case c == '"':
			parts = append(parts, unescapeKey(s.str()))
		case c == '\'':
			parts = append(parts, s.str())
		case c == '\n':
			return parts
		default:
			j := s.i
			for j < len(s.src) && (isBare(s.src[j])) {
				j++
			}
			if j == s.i {
				s.i++
				continue
			}
			parts = append(parts, s.src[s.i:j])
			s.i = j
		}
	}
	return parts
}

func isBare(c byte) bool {
	return c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '_' || c == '-'
}

// value skips one value, recording the keys of inline tables and the
// elements of arrays under path.
func (s *scanner) value(n *lineNode) {
	s.skipSpace(false)
	if s.i >= len(s.src) {
		return
	}
	switch s.src[s.i] {
	case '"', '\'':
		s.str()
	case '[':
		s.i++
		for i := 0; s.i < len(s.src); i++ {
			s.skipSpace(true)
			if s.i >= len(s.src) || s.src[s.i] == ']' {
				s.i++
				return
			}
			el := n.elem(i, s.line)
			before := s.i
			s.value(el)
			s.skipSpace(true)
			if s.i < len(s.src) && s.src[s.i] == ',' {
				s.i++
			} else if s.i == before {
				s.i++
			}
		}
	case '{':
		s.i++
		for s.i < len(s.src) {
			s.skipSpace(true) // TOML 1.1 lets inline tables span lines
			if s.i >= len(s.src) || s.src[s.i] == '}' {
				s.i++
				return
			}
			if s.src[s.i] == ',' {
				s.i++
				continue
			}
			before := s.i
			s.keyValue(n)
			if s.i == before {
				s.i++
			}
		}
	default:
		for s.i < len(s.src) {
			switch s.src[s.i] {
			case '\n', ',', ']', '}', '#':
				return
			}
			s.i++
		}
	}
}

// str skips a string of any of TOML's four kinds and returns its body
// (escapes are left as written: only keys use it, and they are plain).
func (s *scanner) str() string {
	q := s.src[s.i]
	if strings.HasPrefix(s.src[s.i:], strings.Repeat(string(q), 3)) {
		return s.multiline(q)
	}
	s.i++
	start := s.i
	for s.i < len(s.src) {
		c := s.src[s.i]
		if c == '\\' && q == '"' {
			s.i += 2
			continue
		}
		if c == q || c == '\n' {
			body := s.src[start:min(s.i, len(s.src))]
			if c == q {
				s.i++
			}
			return body
		}
		s.i++
	}
	return s.src[start:]
}

// multiline skips a multi-line string, counting its lines; in a basic
// one (""") a backslash escapes the next character, quote or newline.
func (s *scanner) multiline(q byte) string {
	s.i += 3
	start := s.i
	for s.i < len(s.src) {
		c := s.src[s.i]
		switch {
		case c == '\\' && q == '"':
			if s.i+1 < len(s.src) && s.src[s.i+1] == '\n' {
				s.line++
			}
			s.i += 2
			continue
		case c == '\n':
			s.line++
		case c == q && strings.HasPrefix(s.src[s.i:], strings.Repeat(string(q), 3)):
			body := s.src[start:s.i]
			s.i += 3
			for s.i < len(s.src) && s.src[s.i] == q { // up to two more quotes belong to the body
				s.i++
			}
			return body
		}
		s.i++
	}
	return s.src[start:]
}

// skipSpace skips blanks and comments; newlines too when nl is set.
func (s *scanner) skipSpace(nl bool) {
	for s.i < len(s.src) {
		switch s.src[s.i] {
		case ' ', '\t', '\r':
			s.i++
		case '\n':
			if !nl {
				return
			}
			s.line++
			s.i++
		case '#':
			for s.i < len(s.src) && s.src[s.i] != '\n' {
				s.i++
			}
		default:
			return
		}
	}
}

func (s *scanner) skipTo(c byte) {
	for s.i < len(s.src) && s.src[s.i] != c {
		switch s.src[s.i] {
		case '"', '\'':
			s.str()
			continue
		case '#': // a comment: quotes in it start no string
			for s.i < len(s.src) && s.src[s.i] != '\n' && s.src[s.i] != c {
				s.i++
			}
			continue
		}
		s.i++
	}
}

// keyEscapes are the one-letter escapes of a basic string, and keyEscaped
// what each stands for.
const keyEscapes, keyEscaped = "btnfre\"\\", "\b\t\n\f\r\x1b\"\\"

// unescapeKey turns a basic string key's body into the key TOML decodes
// ("\b" is a backspace), so that the key is found in the index. An escape
// it does not know is kept as written: the decoder refused it already.
func unescapeKey(body string) string {
	if !strings.Contains(body, `\`) {
		return body
	}
	var b strings.Builder
	for i := 0; i < len(body); i++ {
		c := body[i]
		if c != '\\' || i+1 >= len(body) {
			b.WriteByte(c)
			continue
		}
		i++
		switch e := body[i]; e {
		case 'b', 't', 'n', 'f', 'r', 'e', '"', '\\':
			b.WriteByte(keyEscaped[strings.IndexByte(keyEscapes, e)])
		case 'x', 'u', 'U':
			n := 2 << strings.IndexByte("xuU", e) // 2, 4 or 8 hex digits
			r, err := strconv.ParseUint(body[i+1:min(i+1+n, len(body))], 16, 32)
			if err != nil || i+1+n > len(body) {
				b.WriteByte('\\')
				b.WriteByte(e)
				continue
			}
			b.WriteRune(rune(r))
			i += n
		default:
			b.WriteByte('\\')
			b.WriteByte(e)
		}
	}
	return b.String()
}
