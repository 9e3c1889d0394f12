package inventory_test

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/usbhotplugd/usbhotplugd/internal/fakekernel"
	"github.com/usbhotplugd/usbhotplugd/internal/inventory"
	"github.com/usbhotplugd/usbhotplugd/internal/usbsysfs"
)

// A disk whose filesystem the kernel still has open is in use though no
// mount shows it: an unmount leaves mountinfo before the cached data is
// written out, and a btrfs filesystem there names one of its devices only.
func TestInUseOpenFilesystem(t *testing.T) {
	root := fakekernel.TempDir(t)
	if err := fakekernel.Standard(root); err != nil {
		t.Fatal(err)
	}
	if err := (&fakekernel.Builder{Root: root}).AddDisk("1-3:1.0", fakekernel.Disk{Name: "sde", Dev: "8:64",
		Parts: []fakekernel.Disk{{Name: "sde1", Dev: "8:65"}, {Name: "sde2", Dev: "8:66"}}}).Err(); err != nil {
		t.Fatal(err)
	}
	mountinfo := filepath.Join(t.TempDir(), "mountinfo")
	// Root on an internal disk; a btrfs filesystem of two devices shows
	// the first, internal one and an anonymous device number.
	tab := "28 1 8:1 / / rw - ext4 /dev/sda1 rw\n29 28 0:45 / /srv rw - btrfs /dev/sdb1 rw\n"
	if err := os.WriteFile(mountinfo, []byte(tab), 0o644); err != nil {
		t.Fatal(err)
	}
	sys := usbsysfs.NewFS(root)
	d, err := sys.Device("1-3")
	if err != nil {
		t.Fatal(err)
	}
	if why := inventory.InUse(sys, d, mountinfo); why != "" {
		t.Fatalf("a free disk is in use: %s", why)
	}
	for _, c := range []struct{ link, want string }{
		{"fs/ext4/sde1", "/dev/sde1: its ext4 filesystem"},
		{"fs/xfs/sde2", "/dev/sde2: its xfs filesystem"},
		{"fs/btrfs/5b4a1c3e-0f6d-4e2a-9a7b-2c1d3e4f5a6b/devices/sde2", "/dev/sde2: its btrfs filesystem"},
	} {
		p := filepath.Join(root, c.link)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.Mkdir(p, 0o755); err != nil {
			t.Fatal(err)
		}
		if why := inventory.InUse(sys, d, mountinfo); !strings.Contains(why, c.want) || !strings.Contains(why, "still open") {
			t.Errorf("with %s: %q, want %q", c.link, why, c.want)
		}
		if err := os.Remove(p); err != nil {
			t.Fatal(err)
		}
	}
	// btrfs's own entries (features/) are no filesystem.
	if err := os.MkdirAll(filepath.Join(root, "fs/btrfs/features"), 0o755); err != nil {
		t.Fatal(err)
	}
	if why := inventory.InUse(sys, d, mountinfo); why != "" {
		t.Errorf("once closed: %s", why)
	}
}
