package mounts

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"
)

// Default is where the kernel shows the mounts of the reading process's
// namespace.
const Default = "/proc/self/mountinfo"

// ErrFormat: a mountinfo line is not as proc(5) describes it.
var ErrFormat = errors.New("malformed mountinfo")

// A Mount is one mountinfo line's device and place.
type Mount struct {
	Dev    string // "8:1"; btrfs and other filesystems show an anonymous 0:N
	Source string // "/dev/sda1", as mounted
	Point  string // "/"
}

// Table is every mount, in order.
type Table []Mount

// Read reads and parses a mountinfo file.
func Read(path string) (Table, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("mounts: %w", err)
	}
	t, err := Parse(bytes.NewReader(b))
	if err != nil {
		return nil, fmt.Errorf("mounts: %s: %w", path, err)
	}
	return t, nil
}

// Parse reads mountinfo: "ID PARENT MAJ:MIN ROOT POINT OPTIONS [TAGS...] -
// FSTYPE SOURCE SUPEROPTIONS". A malformed line fails the whole table (a
// guard that skipped lines could miss the root disk).
func Parse(r io.Reader) (Table, error) {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	var t Table
	for n := 1; sc.Scan(); n++ {
		line := sc.Text()
		if line == "" {
			continue
		}
		f := strings.Split(line, " ")
		sep := -1
		for i := 6; i < len(f); i++ {
			if f[i] == "-" {
				sep = i
				break
			}
		}
		if len(f) < 10 || sep < 0 || len(f) < sep+4 || !isDev(f[2]) {
			return nil, fmt.Errorf("line %d: %q: %w", n, truncate(line), ErrFormat)
		}
		t = append(t, Mount{Dev: f[2], Source: unescape(f[sep+2]), Point: unescape(f[4])})
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("reading: %w", err)
	}
	return t, nil
}

// Using says where the table mounts the block device dev ("8:1", named
// name, "sda1"), or "" if nowhere.
func (t Table) Using(dev, name string) string {
	for _, m := range t {
		if m.Dev == dev || m.Source == "/dev/"+name {
			return m.Point
		}
	}
	return ""
}

func isDev(s string) bool {
	maj, min, ok := strings.Cut(s, ":")
	_, err1 := strconv.ParseUint(maj, 10, 32)
	_, err2 := strconv.ParseUint(min, 10, 32)
	return ok && err1 == nil && err2 == nil
}

// unescape undoes the kernel's octal escapes of space, tab, newline and
// backslash (\040, \011, \012, \134).
func unescape(s string) string {
	if !strings.Contains(s, `\`) {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' && i+3 < len(s) {
			if v, err := strconv.ParseUint(s[i+1:i+4], 8, 8); err == nil {
				b.WriteByte(byte(v))
				i += 3
				continue
			}
		}
		b.WriteByte(s[i])
	}
	return b.String()
}

func truncate(s string) string {
	if len(s) > 120 {
		return s[:120] + "…"
	}
	return s
}
