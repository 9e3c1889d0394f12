package usbname_test

import (
	"errors"
	"slices"
	"strings"
	"testing"

	"github.com/usbhotplugd/usbhotplugd/internal/usbname"
)

func TestDevices(t *testing.T) {
	good := []string{"usb1", "usb63", "1-1", "1-1.6", "3-11", "63-31", "12-1.2.3.4.5.6", "2-31.31.31.31.31.31"}
	bad := []string{"", "usb", "usb0", "usb01", "usb64", "usb100", "usb-1", "usb1 ", "0-1", "00-1", "01-1", "64-1", "1-", "1-0",
		"1-1.0", "1-32", "1-1.32", "1-01", "1-1.06", "1-1.", "1-.1", "1-1..2", "-1", "a-1", "1-a", "1--1", "1-+1",
		"1-1.2.3.4.5.6.7", "1-1.6:1.0", "1-1/../..", "../1-1", "1-1\n", " 1-1", "1-1 ", "1-1.6\x00", "1-1e1", "1-0x1", "1-255"}
	for _, s := range good {
		if err := usbname.Valid(s); err != nil {
			t.Errorf("Valid(%q): %v", s, err)
		}
		id, _ := usbname.Parse(s)
		if id.String() != s {
			t.Errorf("Parse(%q).String() = %q", s, id.String())
		}
	}
	for _, s := range bad {
		if err := usbname.Valid(s); !errors.Is(err, usbname.ErrInvalid) {
			t.Errorf("Valid(%q) = %v, want ErrInvalid", s, err)
		}
	}
	if err := usbname.ValidDevice("usb1"); !errors.Is(err, usbname.ErrInvalid) || !strings.Contains(err.Error(), "root hub") {
		t.Errorf("ValidDevice(usb1) = %v", err)
	}
	if err := usbname.ValidDevice("1-1.6"); err != nil {
		t.Errorf("ValidDevice(1-1.6): %v", err)
	}
	if err := usbname.Valid("1-1.2.3.4.5.6.7"); err == nil || !strings.Contains(err.Error(), "7 ports deep") {
		t.Errorf("too deep: %v", err)
	}
}

func TestInterfaces(t *testing.T) {
	for s, dev := range map[string]string{"1-1.6:1.0": "1-1.6", "1-0:1.0": "usb1", "63-0:1.0": "usb63", "3-11:2.13": "3-11",
		"1-1:0.255": "1-1", "1-1.2.3.4.5.6:255.0": "1-1.2.3.4.5.6"} {
		got, err := usbname.DeviceOf(s)
		if err != nil || got != dev {
			t.Errorf("DeviceOf(%q) = %q, %v, want %q", s, got, err, dev)
		}
		in, _ := usbname.ParseInterface(s)
		if in.String() != s {
			t.Errorf("ParseInterface(%q).String() = %q", s, in.String())
		}
	}
	for _, s := range []string{"", "1-1", "usb1:1.0", "usb1-0:1.0", "0-0:1.0", "1-0.1:1.0", "1-00:1.0", "../x:1.0", "1-1:1", "1-1:1.0/..",
		"1-1:.0", "1-1:1.", "1-1:01.0", "1-1:1.00", "1-1:256.0", "1-1:1.256", "1-1:1.0:1.0", "1-1:1.0\n", "1-32:1.0", ":1.0", "1-1:-1.0"} {
		if err := usbname.ValidInterface(s); !errors.Is(err, usbname.ErrInvalid) {
			t.Errorf("ValidInterface(%q) = %v, want ErrInvalid", s, err)
		}
	}
}

func TestOrderAndParents(t *testing.T) {
	names := []string{"2-1", "1-10", "usb2", "1-2.1", "1-2", "usb1", "1-9", "bogus"}
	slices.SortFunc(names, usbname.Compare)
	want := []string{"usb1", "1-2", "1-2.1", "1-9", "1-10", "usb2", "2-1", "bogus"}
	if !slices.Equal(names, want) {
		t.Errorf("sorted %v, want %v", names, want)
	}
	for s, p := range map[string]string{"1-1.6": "1-1", "1-6": "usb1", "2-1.2.3": "2-1.2"} {
		id, _ := usbname.Parse(s)
		if got := id.Parent().String(); got != p {
			t.Errorf("Parent(%s) = %s, want %s", s, got, p)
		}
	}
	root, _ := usbname.Parse("usb1")
	if root.Parent().Bus != 0 {
		t.Errorf("a root hub has a parent: %v", root.Parent())
	}
}

// FuzzParse: every name accepted is the kernel's one spelling of what it
// parses to, holds no path separator, and a device or interface is
// never both.
func FuzzParse(f *testing.F) {
	for _, s := range []string{"usb1", "1-1.6", "1-0:1.0", "1-1.6:1.0", "63-31.31.31.31.31.31", "1-01", "usb0", "../x", "1-1:1.0\n"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		id, err := usbname.Parse(s)
		if err == nil {
			if id.String() != s {
				t.Fatalf("Parse(%q) = %v, which is %q", s, id, id.String())
			}
			if id.Bus < 1 || id.Bus > usbname.MaxBus || len(id.Ports) > usbname.MaxDepth {
				t.Fatalf("Parse(%q) = %v, out of the kernel's limits", s, id)
			}
		} else if !errors.Is(err, usbname.ErrInvalid) {
			t.Fatalf("Parse(%q): %v does not wrap ErrInvalid", s, err)
		}
		in, ierr := usbname.ParseInterface(s)
		if ierr == nil {
			if in.String() != s {
				t.Fatalf("ParseInterface(%q) = %q", s, in.String())
			}
			if err == nil {
				t.Fatalf("%q is both a device and an interface", s)
			}
			if d, _ := usbname.DeviceOf(s); usbname.Valid(d) != nil {
				t.Fatalf("DeviceOf(%q) = %q, not a device", s, d)
			}
		}
		if (err == nil || ierr == nil) && strings.ContainsAny(s, "/\x00 \n") {
			t.Fatalf("%q accepted", s)
		}
	})
}

func BenchmarkCompare(b *testing.B) {
	b.ReportAllocs()
	for b.Loop() {
		usbname.Compare("1-2.3.4", "1-2.3.10")
	}
}
