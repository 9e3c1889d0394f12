package fakekernel

import (
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
)

// Compiled on first use, not at every command's start.
var renumberForms = sync.OnceValue(func() []*regexp.Regexp {
	return []*regexp.Regexp{regexp.MustCompile(`^usb([0-9]+)(.*)$`), regexp.MustCompile(`^([0-9]+)(-.*)$`)}
})

// renumberName gives one path component the bus number buses maps its own
// to: "usb1", "1-3.2", "1-0:1.0", "usb1-port2", "1-3-port1".
func renumberName(c string, buses map[int]int) string {
	for i, re := range renumberForms() {
		m := re.FindStringSubmatch(c)
		if m == nil {
			continue
		}
		n, _ := strconv.Atoi(m[1])
		to, ok := buses[n]
		if !ok {
			return c
		}
		if i == 0 { // a root hub
			return "usb" + strconv.Itoa(to) + m[2]
		}
		return strconv.Itoa(to) + m[2]
	}
	return c
}

func renumberPath(p string, buses map[int]int) string {
	parts := strings.Split(p, "/")
	for i, c := range parts {
		parts[i] = renumberName(c, buses)
	}
	return strings.Join(parts, "/")
}

// Renumber copies the fixture tree src to dst as the kernel would have
// laid it out had it numbered the buses as buses maps them ({1: 3, 3: 1}
// swaps buses 1 and 3): root hubs, devices, interfaces and port names,
// link targets and busnum attributes. Everything that does not carry a bus
// number (PCI addresses, descriptors, serials) is left as it is.
func Renumber(src, dst string, buses map[int]int) error {
	return filepath.WalkDir(src, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(src, p)
		out := filepath.Join(dst, renumberPath(rel, buses))
		switch {
		case d.Type()&fs.ModeSymlink != 0:
			t, err := os.Readlink(p)
			if err != nil {
				return err
			}
			return os.Symlink(renumberPath(t, buses), out)
		case d.IsDir():
			return os.MkdirAll(out, 0o755)
		}
		b, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		if d.Name() == "busnum" {
			n, err := strconv.Atoi(strings.TrimSpace(string(b)))
			if to, ok := buses[n]; err == nil && ok {
				b = []byte(strconv.Itoa(to) + "\n")
			}
		}
		return os.WriteFile(out, b, 0o644)
	})
}
