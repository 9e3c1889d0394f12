package inventory_test

import (
	"errors"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/usbhotplugd/usbhotplugd/internal/fakekernel"
	"github.com/usbhotplugd/usbhotplugd/internal/inventory"
	"github.com/usbhotplugd/usbhotplugd/internal/usbsysfs"
)

// A partition something in dom0 has open exclusively is in use whatever
// the mount table says: a filesystem still being written out after its
// unmount (vfat and exfat show it nowhere else), swap, a program. The
// block device is a real loop device, held as a mount holds it.
func TestInUseExclusiveOpen(t *testing.T) {
	loop := newLoop(t)
	root := fakekernel.TempDir(t)
	if err := fakekernel.Standard(root); err != nil {
		t.Fatal(err)
	}
	if err := (&fakekernel.Builder{Root: root}).AddDisk("1-3:1.0", fakekernel.Disk{Name: "sde", Dev: "8:64",
		Parts: []fakekernel.Disk{{Name: "sde1", Dev: "8:65"}}}).Err(); err != nil {
		t.Fatal(err)
	}
	// The fixture's own /dev: sde1 is the loop device.
	dev := filepath.Join(root, ".dev")
	if err := os.MkdirAll(dev, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(loop, filepath.Join(dev, "sde1")); err != nil {
		t.Fatal(err)
	}
	mountinfo := filepath.Join(t.TempDir(), "mountinfo")
	if err := os.WriteFile(mountinfo, []byte("28 1 8:1 / / rw - ext4 /dev/sda1 rw\n"), 0o644); err != nil {
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
	fd, err := unix.Open(loop, unix.O_RDONLY|unix.O_EXCL|unix.O_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	why := inventory.InUse(sys, d, mountinfo)
	closing := inventory.Closing(sys, d, mountinfo)
	unix.Close(fd)
	if !strings.Contains(why, "/dev/sde1 is open in dom0") {
		t.Errorf("held: %q", why)
	}
	if !closing {
		t.Error("a partition held with no mount is not taken for one still closing")
	}
	if why := inventory.InUse(sys, d, mountinfo); why != "" {
		t.Errorf("let go, still in use: %s", why)
	}
}

// newLoop is a free loop device over a small file, detached when the test
// ends.
func newLoop(t *testing.T) string {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("a loop device needs root")
	}
	ctl, err := unix.Open("/dev/loop-control", unix.O_RDWR|unix.O_CLOEXEC, 0)
	if errors.Is(err, unix.ENOENT) && os.Getenv("CI") == "" {
		t.Skip("no loop devices here (/dev/loop-control)")
	}
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Close(ctl)
	n, err := unix.IoctlRetInt(ctl, unix.LOOP_CTL_GET_FREE)
	if err != nil {
		t.Fatal(err)
	}
	img := filepath.Join(t.TempDir(), "disk.img")
	if err := os.WriteFile(img, make([]byte, 1<<20), 0o600); err != nil {
		t.Fatal(err)
	}
	f, err := os.Open(img)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	path := "/dev/loop" + strconv.Itoa(n)
	lfd, err := unix.Open(path, unix.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	if err := unix.IoctlSetInt(lfd, unix.LOOP_SET_FD, int(f.Fd())); err != nil {
		unix.Close(lfd)
		t.Fatal(err)
	}
	t.Cleanup(func() {
		unix.IoctlSetInt(lfd, unix.LOOP_CLR_FD, 0)
		unix.Close(lfd)
	})
	return path
}
