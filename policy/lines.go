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
type lineIndex map[string]int

const sep = "\x00" // path separator: quoted keys may hold dots

func pathKey(parts []string) string { return strings.Join(parts, sep) }

// line returns the line of path, or of its nearest recorded ancestor.
func (ix lineIndex) line(path ...string) int {
	for n := len(path); n > 0; n-- {
		if l, ok := ix[pathKey(path[:n])]; ok {
			return l
		}
	}
	return 0
}

type scanner struct {
	src    string
	i      int
	line   int
	ix     lineIndex
	arrays map[string]int // array-of-tables path → elements so far
}

func indexLines(src string) lineIndex {
	s := &scanner{src: src, line: 1, ix: lineIndex{}, arrays: map[string]int{}}
	var table []string
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
			parts := s.keyParts(']')
			table = s.resolve(parts, array)
			s.ix[pathKey(table)] = s.line
			s.skipTo('\n')
		default:
			s.keyValue(table)
			s.skipTo('\n')
		}
		if s.i == start { // never loop in place
			s.i++
		}
	}
	return s.ix
}

// resolve turns a header's dotted key into a path with array indices.
func (s *scanner) resolve(parts []string, array bool) []string {
	var out []string
	for i, p := range parts {
		out = append(out, p)
		k := pathKey(out)
		if i == len(parts)-1 && array {
			n := s.arrays[k]
			s.arrays[k] = n + 1
			out = append(out, strconv.Itoa(n))
		} else if n, ok := s.arrays[k]; ok {
			out = append(out, strconv.Itoa(n-1))
		}
	}
	return out
}

func (s *scanner) keyValue(table []string) {
	parts := s.keyParts('=')
	if len(parts) == 0 {
		return
	}
	path := append(append([]string(nil), table...), parts...)
	for n := len(table) + 1; n <= len(path); n++ {
		if _, ok := s.ix[pathKey(path[:n])]; !ok {
			s.ix[pathKey(path[:n])] = s.line
		}
	}
	if s.i < len(s.src) && s.src[s.i] == '=' {
		s.i++
	}
	s.value(path)
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
		case c == '"' || c == '\'':
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
func (s *scanner) value(path []string) {
	s.skipSpace(false)
	if s.i >= len(s.src) {
		return
	}
	switch s.src[s.i] {
	case '"', '\'':
		s.str()
	case '[':
		s.i++
		for n := 0; s.i < len(s.src); n++ {
			s.skipSpace(true)
			if s.i >= len(s.src) || s.src[s.i] == ']' {
				s.i++
				return
			}
			el := append(append([]string(nil), path...), strconv.Itoa(n))
			s.ix[pathKey(el)] = s.line
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
			s.skipSpace(false)
			if s.i >= len(s.src) || s.src[s.i] == '}' {
				s.i++
				return
			}
			if s.src[s.i] == ',' {
				s.i++
				continue
			}
			before := s.i
			s.keyValue(path)
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
		s.i += 3
		start := s.i
		end := strings.Index(s.src[s.i:], strings.Repeat(string(q), 3))
		if end < 0 {
			s.i = len(s.src)
			return ""
		}
		body := s.src[start : start+end]
		s.line += strings.Count(body, "\n")
		s.i = start + end + 3
		for s.i < len(s.src) && s.src[s.i] == q { // up to two more quotes belong to the body
			s.i++
		}
		return body
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
		if s.src[s.i] == '"' || s.src[s.i] == '\'' {
			s.str()
			continue
		}
		s.i++
	}
}
