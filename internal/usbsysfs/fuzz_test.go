package usbsysfs_test

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/usbhotplugd/usbhotplugd/internal/fakekernel"
	"github.com/usbhotplugd/usbhotplugd/internal/usbsysfs"
)

// fuzzAttrs are the attributes of a device FuzzDevice writes into, beside
// its descriptors.
var fuzzAttrs = []string{"busnum", "devnum", "idVendor", "idProduct", "bcdDevice", "bDeviceClass", "bNumConfigurations",
	"bNumInterfaces", "bConfigurationValue", "serial", "product", "speed", "version", "devpath", "authorized", "1-1:1.0/bInterfaceClass"}

// FuzzDevice: whatever a device's descriptors and one of its attributes
// hold, reading it gives the device or an error that names it, never a
// panic, and a scan of the bus still lists every other device, that one
// as read or as unreadable.
func FuzzDevice(f *testing.F) {
	root := filepath.Join(f.TempDir(), "sys")
	if err := fakekernel.Copy("testdata/real/sys", root); err != nil {
		f.Fatal(err)
	}
	dir := filepath.Join(root, "bus/usb/devices/1-1")
	desc, err := os.ReadFile(filepath.Join(dir, "descriptors"))
	if err != nil {
		f.Fatal(err)
	}
	orig := map[string][]byte{"descriptors": desc}
	for _, a := range fuzzAttrs {
		orig[a], _ = os.ReadFile(filepath.Join(dir, a)) // absent: written empty, then put back empty
	}
	sys := usbsysfs.NewFS(root)
	all, err := sys.Devices()
	if err != nil {
		f.Fatal(err)
	}
	f.Add(desc, uint8(0), "1\n")
	f.Add(desc[:18], uint8(9), "KBD\x1b[2J\n")
	f.Add(append(desc[:len(desc):len(desc)], 9, 2, 0xff, 0xff), uint8(7), "x")
	f.Add([]byte{}, uint8(2), "zzzz\n")
	f.Fuzz(func(t *testing.T, d []byte, which uint8, val string) {
		attr := fuzzAttrs[int(which)%len(fuzzAttrs)]
		write := func(name string, b []byte) {
			if err := os.WriteFile(filepath.Join(dir, name), b, 0o644); err != nil {
				t.Fatal(err)
			}
		}
		write("descriptors", d)
		write(attr, []byte(val))
		defer func() {
			write("descriptors", orig["descriptors"])
			write(attr, orig[attr])
		}()
		dev, err := sys.Device("1-1")
		if err != nil {
			if !strings.Contains(err.Error(), "1-1") {
				t.Fatalf("error %q does not name the device", err)
			}
		} else if dev.BusID != "1-1" || dev.Hash == "" {
			t.Fatalf("device %+v", dev)
		}
		// The scan costs twenty reads: a tenth of the inputs ask for it.
		if which%10 == 0 {
			devs, err := sys.Devices()
			if unread, rest := usbsysfs.Partial(err); rest != nil || len(devs)+len(unread) != len(all) {
				t.Fatalf("scan: %d devices, %d unread of %d: %v", len(devs), len(unread), len(all), err)
			}
		}
	})
}
