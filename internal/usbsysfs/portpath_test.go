package usbsysfs

import (
	"os"
	"path/filepath"
	"regexp"
	"testing"
)

// isPCIAddr accepts what the form's regexp accepts, and only that.
func TestIsPCIAddr(t *testing.T) {
	form := regexp.MustCompile(`^[0-9a-f]{4,8}:[0-9a-f]{2}:[0-9a-f]{2}\.[0-7]$`)
	names := []string{"0000:00:14.0", "0000:00:14.7", "abcd:ef:09.3", "0000:00:14.8", "0000:00:14", "0000:00:14.00",
		"0000:00:1G.0", "0000:00:1A.0", "10000:e1:00.0", "ffffffff:00:14.0", "100000000:00:14.0", "000:00:14.0", ":00:14.0", "0000-00:14.0", "0000:00-14.0", "0000:00:14-0", "", "usb1", "1-1.6", "pci0000:00"}
	// Every one-byte change of a good address.
	for _, good := range []string{"0000:00:14.0", "10000:e1:00.0"} {
		for i := range len(good) {
			for _, c := range []byte("09afgAF:.-7x\x00\xff") {
				b := []byte(good)
				b[i] = c
				names = append(names, string(b))
			}
		}
	}
	for _, n := range names {
		if got, want := isPCIAddr(n), form.MatchString(n); got != want {
			t.Errorf("isPCIAddr(%q) = %v, want %v", n, got, want)
		}
	}
}

// A device at a UHCI or OHCI controller that shares its PCI slot with an
// EHCI one is at that EHCI's companion (the EHCI named); at the EHCI
// itself, at a companion-less UHCI, or at xHCI it is not.
func TestCompanionOf(t *testing.T) {
	root := t.TempDir()
	pci := filepath.Join(root, "devices/pci0000:00")
	ctrl := map[string]string{
		"0000:00:1d.0": pciUHCI, "0000:00:1d.7": pciEHCI, // a companion and its EHCI
		"0000:00:06.0": pciUHCI,    // a UHCI alone in its slot
		"0000:00:14.0": "0x0c0330", // xHCI
	}
	dev := map[string]string{"3-1": "0000:00:1d.0/usb3", "2-1": "0000:00:1d.7/usb2", "4-1": "0000:00:06.0/usb4", "1-1": "0000:00:14.0/usb1"}
	for addr, class := range ctrl {
		if err := os.MkdirAll(filepath.Join(pci, addr), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(pci, addr, "class"), []byte(class+"\n"), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.MkdirAll(filepath.Join(root, "bus/usb/devices"), 0o755); err != nil {
		t.Fatal(err)
	}
	for busid, at := range dev {
		d := filepath.Join(pci, at, busid)
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.Symlink(d, filepath.Join(root, "bus/usb/devices", busid)); err != nil {
			t.Fatal(err)
		}
	}
	f := NewFS(root)
	for busid, want := range map[string]string{"3-1": "0000:00:1d.7", "2-1": "", "4-1": "", "1-1": ""} {
		if got, err := f.CompanionOf(busid); err != nil || got != want {
			t.Errorf("CompanionOf(%s) = %q, %v; want %q", busid, got, err, want)
		}
	}
}
