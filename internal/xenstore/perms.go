package xenstore

import (
	"errors"
	"fmt"
	"strconv"
	"strings"
)

// Access is the letter of one permission entry.
type Access byte

// The four access letters of the protocol.
const (
	AccessNone  Access = 'n'
	AccessRead  Access = 'r'
	AccessWrite Access = 'w'
	AccessBoth  Access = 'b'
)

// CanRead reports whether a includes read access.
func (a Access) CanRead() bool { return a == AccessRead || a == AccessBoth }

// CanWrite reports whether a includes write access.
func (a Access) CanWrite() bool { return a == AccessWrite || a == AccessBoth }

// A Perm is one entry of a node's permission list. The first entry of a list
// names the owner, and its access is the default for domains not listed.
type Perm struct {
	Access Access
	Domid  uint32
}

func (p Perm) String() string {
	return string(rune(p.Access)) + strconv.FormatUint(uint64(p.Domid), 10)
}

// ErrInvalidPerm is wrapped by errors for malformed permission strings.
var ErrInvalidPerm = errors.New("invalid xenstore permission")

// ParsePerm parses one wire entry such as "n0" or "r5".
func ParsePerm(s string) (Perm, error) {
	if len(s) < 2 {
		return Perm{}, fmt.Errorf("%w: %q", ErrInvalidPerm, s)
	}
	a := Access(s[0])
	switch a {
	case AccessNone, AccessRead, AccessWrite, AccessBoth:
	default:
		return Perm{}, fmt.Errorf("%w: %q: unknown access %q", ErrInvalidPerm, s, s[0])
	}
	for i := 1; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return Perm{}, fmt.Errorf("%w: %q: domid is not a decimal number", ErrInvalidPerm, s)
		}
	}
	d, err := strconv.ParseUint(s[1:], 10, 16)
	if err != nil {
		return Perm{}, fmt.Errorf("%w: %q: domid out of range", ErrInvalidPerm, s)
	}
	return Perm{Access: a, Domid: uint32(d)}, nil
}

// Perms is a permission list.
type Perms []Perm

// ParsePerms parses a whitespace-separated list such as "n0 r5".
func ParsePerms(s string) (Perms, error) {
	f := strings.Fields(s)
	if len(f) == 0 {
		return nil, fmt.Errorf("%w: empty list", ErrInvalidPerm)
	}
	ps := make(Perms, 0, len(f))
	for _, x := range f {
		p, err := ParsePerm(x)
		if err != nil {
			return nil, err
		}
		ps = append(ps, p)
	}
	return ps, nil
}

// String gives the list space-separated, as xenstore-ls -p prints it.
func (ps Perms) String() string {
	s := make([]string, len(ps))
	for i, p := range ps {
		s[i] = p.String()
	}
	return strings.Join(s, " ")
}

// Owner is the domid of the first entry.
func (ps Perms) Owner() uint32 {
	if len(ps) == 0 {
		return 0
	}
	return ps[0].Domid
}

// decodePerms parses the NUL-separated wire form of a GET_PERMS reply.
func decodePerms(b []byte) (Perms, error) {
	parts := splitStrings(b)
	if len(parts) == 0 {
		return nil, fmt.Errorf("%w: empty reply", ErrInvalidPerm)
	}
	ps := make(Perms, 0, len(parts))
	for _, x := range parts {
		p, err := ParsePerm(x)
		if err != nil {
			return nil, err
		}
		ps = append(ps, p)
	}
	return ps, nil
}

// appendPerms appends the NUL-terminated wire form of ps.
func appendPerms(b []byte, ps Perms) []byte {
	for _, p := range ps {
		b = append(b, p.String()...)
		b = append(b, 0)
	}
	return b
}

// splitStrings splits a payload of NUL-terminated strings. A final string
// without its NUL is kept; empty input gives no strings.
func splitStrings(b []byte) []string {
	if len(b) == 0 {
		return nil
	}
	if b[len(b)-1] == 0 {
		b = b[:len(b)-1]
	}
	return strings.Split(string(b), "\x00")
}
