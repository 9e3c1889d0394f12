package xenstore

import (
	"errors"
	"fmt"
	"strings"
)

// ErrInvalidPath is wrapped by errors for paths the store would refuse.
var ErrInvalidPath = errors.New("invalid xenstore path")

// ValidPathChar reports whether c may appear in a xenstore path.
func ValidPathChar(c byte) bool {
	return c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' ||
		c == '-' || c == '/' || c == '_' || c == '@'
}

// ValidatePath checks a node path as xenstored does: absolute paths of at
// most AbsPathMax bytes or relative ones of at most RelPathMax, made of
// A-Z a-z 0-9 - / _ @, with no empty component and no trailing slash.
func ValidatePath(p string) error {
	if p == "" {
		return fmt.Errorf("%w: empty", ErrInvalidPath)
	}
	if p == "/" {
		return nil
	}
	limit := RelPathMax
	if p[0] == '/' {
		limit = AbsPathMax
	}
	if len(p) > limit {
		return fmt.Errorf("%w: %d bytes, more than %d", ErrInvalidPath, len(p), limit)
	}
	if p[0] == '@' {
		return fmt.Errorf("%w: %q: '@' starts only special watch paths", ErrInvalidPath, p)
	}
	for i := 0; i < len(p); i++ {
		if !ValidPathChar(p[i]) {
			return fmt.Errorf("%w: %q: character %q at %d", ErrInvalidPath, p, p[i], i)
		}
	}
	if strings.HasSuffix(p, "/") {
		return fmt.Errorf("%w: %q: trailing '/'", ErrInvalidPath, p)
	}
	if strings.Contains(p, "//") {
		return fmt.Errorf("%w: %q: empty component", ErrInvalidPath, p)
	}
	return nil
}

// ValidateWatchPath accepts what ValidatePath accepts and the special paths
// that start with '@' (@introduceDomain, @releaseDomain).
func ValidateWatchPath(p string) error {
	if strings.HasPrefix(p, "@") {
		if len(p) > RelPathMax {
			return fmt.Errorf("%w: %d bytes, more than %d", ErrInvalidPath, len(p), RelPathMax)
		}
		if strings.IndexByte(p, 0) >= 0 {
			return fmt.Errorf("%w: %q: NUL byte", ErrInvalidPath, p)
		}
		return nil
	}
	return ValidatePath(p)
}

// Join joins path elements with '/', the way callers build store paths.
func Join(elem ...string) string { return strings.Join(elem, "/") }
