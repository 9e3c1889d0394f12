package fakekernel_test

import (
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"syscall"
	"testing"

	"github.com/usbhotplugd/usbhotplugd/internal/fakekernel"
	"github.com/usbhotplugd/usbhotplugd/internal/usbname"
)

// FuzzWriteAttr: whatever is written wherever, the fake kernel answers
// with an errno or nothing, never panics, writes nothing outside the
// tree, and leaves a tree a kernel could show: every entry of
// bus/usb/devices is a name the kernel makes and leads to its directory.
func FuzzWriteAttr(f *testing.F) {
	for _, r := range readTable(f) {
		f.Add(r.file, r.data)
	}
	f.Add("../../../../x", "1")
	f.Add("devices/usb1/interface_authorized_default", "0")
	f.Add("devices/1-3:1.0/authorized", "0")
	root := filepath.Join(f.TempDir(), "sys")
	if err := fakekernel.Copy("../usbsysfs/testdata/real/sys", root); err != nil {
		f.Fatal(err)
	}
	if err := fakekernel.AddDriver(root, "usbback"); err != nil {
		f.Fatal(err)
	}
	k := fakekernel.NewKernel(root)
	f.Fuzz(func(t *testing.T, file, data string) {
		err := k.WriteAttr(filepath.Join(root, "bus/usb", file), []byte(data))
		var pe *fs.PathError
		var e syscall.Errno
		if err != nil && (!errors.As(err, &pe) || !errors.As(err, &e)) {
			t.Fatalf("write %q to %s: %v is not a path error with an errno", data, file, err)
		}
		des, err := os.ReadDir(filepath.Join(root, "bus/usb/devices"))
		if err != nil {
			t.Fatal(err)
		}
		for _, de := range des {
			if usbname.Valid(de.Name()) != nil && usbname.ValidInterface(de.Name()) != nil {
				t.Fatalf("after %q to %s: bus/usb/devices/%s", data, file, de.Name())
			}
			if _, err := os.Stat(filepath.Join(root, "bus/usb/devices", de.Name())); err != nil {
				t.Fatalf("after %q to %s: %v", data, file, err)
			}
		}
	})
}
