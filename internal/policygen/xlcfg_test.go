package policygen

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
)

func TestParseXLConfig(t *testing.T) {
	src := "# a guest\nname = \"kiosk\" ; memory = 0x400\n" +
		"usbctrl = [ 'version=2,ports=4', # the first\n\n   \"type=pv\",\n]\n" +
		"usbdev=[\"hostbus=1,hostaddr=6\"]\nusbdev += [ \"esc \\\"\\\\\\x41\\101\\n\" ]\n" +
		"vnuma = [ [ \"pnode=0\", \"size=512\" ], [] ]\nempty = []\nname = \"last\"\n"
	c, err := ParseXLConfig("g.cfg", []byte(src))
	if err != nil {
		t.Fatal(err)
	}
	name, _ := c.Get("name")
	if name.Value.Atom != "last" || name.Line != 11 {
		t.Errorf("name: %+v (the last setting is xl's)", name)
	}
	mem, _ := c.Get("memory")
	if mem.Value.Atom != "0x400" || !mem.Value.Number || mem.Line != 2 {
		t.Errorf("memory: %+v", mem)
	}
	ctrl, _ := c.Get("usbctrl")
	if len(ctrl.Value.List) != 2 || ctrl.Value.List[0].Atom != "version=2,ports=4" || ctrl.Value.List[1].Line != 5 {
		t.Errorf("usbctrl: %+v", ctrl)
	}
	dev, _ := c.Get("usbdev")
	if len(dev.Value.List) != 2 || dev.Value.List[1].Atom != "esc \"\\AA\n" {
		t.Errorf("usbdev (+= appends, escapes): %+v", dev)
	}
	vn, _ := c.Get("vnuma")
	if len(vn.Value.List) != 2 || len(vn.Value.List[0].List) != 2 || !vn.Value.List[1].IsList {
		t.Errorf("nested lists: %+v", vn)
	}
	for _, bad := range []struct{ src, msg string }{
		{"name = \"x\nmemory = 1\n", "g.cfg:1: a string is not closed"},
		{"name \"x\"\n", "g.cfg:1: expected = after name"},
		{"usbdev = [ \"a\" \"b\" ]\n", "g.cfg:1: expected , or ] in the list opened at line 1"},
		{"usbdev = [ \"a\",\n\n", "g.cfg:3: expected a value"},
		{"x = 1 2\n", "g.cfg:1: expected the end of the line"},
		{"x = \"\\q\"\n", "g.cfg:1: invalid escape \\q"},
		{"x = \"\\x4\"\n", "invalid escape \\x"},
		{"x = @\n", "unexpected character '@'"},
		{"= 1\n", "expected a setting name"},
		{"x = \"a\"\nx += [ \"b\" ]\n", "g.cfg:2: x += appends a list to a list"},
		{"x = " + strings.Repeat("[", 9) + strings.Repeat("]", 9) + "\n", "lists nest more than 8 deep"},
	} {
		_, err := ParseXLConfig("g.cfg", []byte(bad.src))
		var xe *XLError
		if !errors.Is(err, ErrXLConfig) || !errors.As(err, &xe) || !strings.Contains(err.Error(), bad.msg) {
			t.Errorf("%q: %v, want %q", bad.src, err, bad.msg)
		}
	}
}

// formatXL writes settings back in xl.cfg syntax, for the round trip.
func formatXL(c *XLConfig) string {
	var b strings.Builder
	var val func(v XLValue) string
	val = func(v XLValue) string {
		switch {
		case v.IsList:
			parts := make([]string, len(v.List))
			for i, x := range v.List {
				parts[i] = val(x)
			}
			return "[ " + strings.Join(parts, ",\n ") + " ]"
		case v.Number:
			return v.Atom
		}
		var q strings.Builder
		q.WriteByte('"')
		for i := 0; i < len(v.Atom); i++ {
			c := v.Atom[i]
			if c < 0x20 || c >= 0x7f || c == '"' || c == '\\' {
				fmt.Fprintf(&q, "\\x%02x", c)
			} else {
				q.WriteByte(c)
			}
		}
		q.WriteByte('"')
		return q.String()
	}
	for _, s := range c.Settings {
		fmt.Fprintf(&b, "%s = %s\n", s.Name, val(s.Value))
	}
	return b.String()
}

func stripLines(v *XLValue) {
	v.Line = 0
	for i := range v.List {
		stripLines(&v.List[i])
	}
}

// FuzzXLConfig: the reader never panics, a refusal names its file and a
// line of it, and what it reads, written back, reads the same.
func FuzzXLConfig(f *testing.F) {
	seeds, _ := filepath.Glob("../../cmd/usbhotplugd/testdata/xlcfg/*.cfg")
	for _, p := range seeds {
		b, err := os.ReadFile(p)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	f.Add([]byte("name='a';usbdev+=[\"\\101\",[1,[2]],]\n"))
	f.Fuzz(func(t *testing.T, b []byte) {
		c, err := ParseXLConfig("f.cfg", b)
		if err != nil {
			var xe *XLError
			if !errors.As(err, &xe) || xe.File != "f.cfg" || xe.Line < 1 || xe.Line > strings.Count(string(b), "\n")+1 {
				t.Fatalf("error without a line of the file: %v", err)
			}
			return
		}
		again, err := ParseXLConfig("f.cfg", []byte(formatXL(c)))
		if err != nil {
			t.Fatalf("written back, it does not read: %v\n%s", err, formatXL(c))
		}
		if len(again.Settings) != len(c.Settings) {
			t.Fatalf("%d settings, %d written back", len(c.Settings), len(again.Settings))
		}
		for i := range c.Settings {
			a, z := c.Settings[i], again.Settings[i]
			stripLines(&a.Value)
			stripLines(&z.Value)
			a.Line, z.Line = 0, 0
			if !reflect.DeepEqual(a, z) {
				t.Fatalf("setting %d: %+v, written back %+v", i, a, z)
			}
		}
	})
}
