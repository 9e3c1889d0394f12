package policy

import (
	"errors"
	"fmt"
)

// Limits on what a policy file may be, checked before the TOML library
// reads it: a policy is written by people, and a file far beyond these is
// a mistake (or an attack) that should fail fast with its name, not exhaust
// the agent's memory or stack.
const (
	// MaxFileSize bounds one file, in bytes: 100 000 rules of an admin's
	// usual size fit in it.
	MaxFileSize = 32 << 20
	// MaxNesting bounds how deep arrays and inline tables nest in a value,
	// and how many parts a dotted key or a table header has.
	MaxNesting = 16
	// MaxIncludeDepth bounds include chains: the main file is level 0, a
	// file it includes level 1, and so on up to this level.
	MaxIncludeDepth = 8
)

// ErrLimit marks a file beyond one of the limits above.
var ErrLimit = errors.New("limit")

// ErrNotRegular marks a policy file that is not a regular file: a FIFO or
// a device would be read forever.
var ErrNotRegular = errors.New("not a regular file")

// checkShape refuses data larger than MaxFileSize or nesting deeper than
// MaxNesting. It tracks strings and comments so that brackets inside them
// do not count, and returns the line of the first excess.
func checkShape(data []byte) (line int, err error) {
	if len(data) > MaxFileSize {
		return 0, fmt.Errorf("%d bytes: a policy file is at most %d MiB", len(data), MaxFileSize>>20)
	}
	line = 1
	depth, dots := 0, 0
	inKey := true // before a line's '=', where dots separate a key's parts
	for i := 0; i < len(data); i++ {
		switch c := data[i]; c {
		case '\n':
			line++
			dots, inKey = 0, depth == 0
		case '=':
			inKey = false
		case '#':
			for i+1 < len(data) && data[i+1] != '\n' {
				i++
			}
		case '"', '\'':
			var nl int
			i, nl = skipString(data, i)
			line += nl
		case '[', '{':
			depth++
			if depth > MaxNesting {
				return line, fmt.Errorf("values nest more than %d deep", MaxNesting)
			}
		case ']', '}':
			if depth > 0 {
				depth--
			}
		case '.':
			if inKey {
				dots++
				if dots >= MaxNesting {
					return line, fmt.Errorf("a key or table header of more than %d parts", MaxNesting)
				}
			}
		}
	}
	return 0, nil
}

// skipString returns the index of the last byte of the string that opens
// at i, and the newlines in it.
func skipString(data []byte, i int) (int, int) {
	q := data[i]
	multi := i+2 < len(data) && data[i+1] == q && data[i+2] == q
	nl := 0
	j := i + 1
	if multi {
		j = i + 3
	}
	for ; j < len(data); j++ {
		c := data[j]
		switch {
		case c == '\\' && q == '"':
			if j+1 < len(data) && data[j+1] == '\n' {
				nl++
			}
			j++
		case c == '\n':
			if !multi {
				return j - 1, 0 // unterminated: the TOML library reports it
			}
			nl++
		case c == q && !multi:
			return j, nl
		case c == q && j+2 < len(data) && data[j+1] == q && data[j+2] == q:
			j += 2
			for j+1 < len(data) && data[j+1] == q { // up to two more belong to the body
				j++
			}
			return j, nl
		}
	}
	return len(data) - 1, nl
}
