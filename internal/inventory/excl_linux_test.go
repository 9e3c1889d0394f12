package inventory_test

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/usbhotplugd/usbhotplugd/internal/fakekernel"
	"github.com/usbhotplugd/usbhotplugd/internal/inventory"
	"github.com/usbhotplugd/usbhotplugd/internal/nstest"
	"github.com/usbhotplugd/usbhotplugd/internal/usbsysfs"
)

// A partition something in dom0 has open exclusively is in use whatever
// the mount table says: a filesystem still being written out after its
// unmount (vfat and exfat show it nowhere else), swap, a program. The
// block device is a real loop device, held as a mount holds it.
func TestInUseExclusiveOpen(t *testing.T) {
	sys, d, loop := loopDisk(t, fakekernel.Disk{Name: "sde", Dev: "8:64",
		Parts: []fakekernel.Disk{{Name: "sde1", Dev: "8:65"}}}, "sde1")
	mountinfo := filepath.Join(t.TempDir(), "mountinfo")
	if err := os.WriteFile(mountinfo, []byte("28 1 8:1 / / rw - ext4 /dev/sda1 rw\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if why := inventory.Busy(sys, d); why != "" {
		t.Fatalf("a free disk is in use: %s", why)
	}
	fd, err := unix.Open(loop, unix.O_RDONLY|unix.O_EXCL|unix.O_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	why, cheap := inventory.Busy(sys, d), inventory.InUse(sys, d, mountinfo)
	unix.Close(fd)
	if !strings.Contains(why, "/dev/sde1 is open in dom0") {
		t.Errorf("held: %q", why)
	}
	if cheap != "" {
		t.Errorf("InUse opened the disk: %q", cheap)
	}
	if why := inventory.Busy(sys, d); why != "" {
		t.Errorf("let go, still in use: %s", why)
	}
}

// From the check until the storage driver lets the disk go, the agent
// holds it: an exclusive claim (a mount's, an automounter's) is refused
// until release, and a disk claimed already is said busy, nothing held.
// The whole disk is a real loop device.
func TestHoldKeepsClaimsOff(t *testing.T) {
	sys, d, loop := loopDisk(t, fakekernel.Disk{Name: "sde", Dev: "8:64"}, "sde")
	claimed := func() bool {
		t.Helper()
		fd, err := unix.Open(loop, unix.O_RDONLY|unix.O_EXCL|unix.O_CLOEXEC, 0)
		if err == nil {
			unix.Close(fd)
			return false
		}
		if !errors.Is(err, unix.EBUSY) {
			t.Fatal(err)
		}
		return true
	}

	release, why := inventory.Hold(sys, d)
	if why != "" {
		t.Fatalf("a free disk not held: %s", why)
	}
	if !claimed() {
		t.Error("held, and another exclusive open succeeded")
	}
	release()
	release() // twice is harmless
	if claimed() {
		t.Error("released, and still claimed")
	}

	fd, err := unix.Open(loop, unix.O_RDONLY|unix.O_EXCL|unix.O_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	release, why = inventory.Hold(sys, d)
	release()
	unix.Close(fd)
	if !strings.Contains(why, "/dev/sde is open in dom0") {
		t.Errorf("claimed elsewhere: %q", why)
	}
	if claimed() {
		t.Error("a refused hold left the disk claimed")
	}
}

// loopDisk is a fixture host whose device 1-3 has disk, and whose own
// /dev (the fixture's .dev) has node as a real loop device.
func loopDisk(t *testing.T, disk fakekernel.Disk, node string) (*usbsysfs.FS, usbsysfs.Device, string) {
	t.Helper()
	loop := nstest.Loop(t)
	root := fakekernel.TempDir(t)
	if err := fakekernel.Standard(root); err != nil {
		t.Fatal(err)
	}
	if err := (&fakekernel.Builder{Root: root}).AddDisk("1-3:1.0", disk).Err(); err != nil {
		t.Fatal(err)
	}
	dev := filepath.Join(root, ".dev")
	if err := os.MkdirAll(dev, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(loop, filepath.Join(dev, node)); err != nil {
		t.Fatal(err)
	}
	sys := usbsysfs.NewFS(root)
	d, err := sys.Device("1-3")
	if err != nil {
		t.Fatal(err)
	}
	return sys, d, loop
}
