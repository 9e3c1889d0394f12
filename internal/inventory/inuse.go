package inventory

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"

	"github.com/usbhotplugd/usbhotplugd/internal/mounts"
	"github.com/usbhotplugd/usbhotplugd/internal/usbsysfs"
)

// Storage says whether d has a mass-storage interface (class 08): a disk
// dom0 may use.
func Storage(d usbsysfs.Device) bool {
	return slices.ContainsFunc(d.Interfaces, func(in usbsysfs.Interface) bool { return in.Class == 0x08 })
}

// InUse says why dom0 uses d, so that it must stay with dom0: one of its
// disks or partitions is mounted (the root, a data volume), is held by
// device-mapper or md (LVM, dm-crypt, RAID), holds a filesystem the
// kernel still has open (see openFS); Busy asks the kernel itself, for a
// device about to be passed. It is "" when d is free. A storage
// device whose state cannot be read counts as in use: passing dom0's own
// disk to a guest is not a mistake to risk.
func InUse(sys *usbsysfs.FS, d usbsysfs.Device, mountinfo string) string {
	blocks, why := disks(sys, d)
	if why != "" || len(blocks) == 0 {
		return why
	}
	tab, err := mounts.Read(mountinfo)
	if err != nil {
		return fmt.Sprintf("dom0's mounts could not be read (%v)", err)
	}
	for _, b := range blocks {
		if p := tab.Using(b.Dev, b.Name); p != "" {
			return fmt.Sprintf("/dev/%s is mounted on %s", b.Name, p)
		}
		if len(b.Holders) > 0 {
			return fmt.Sprintf("/dev/%s is held by %s", b.Name, strings.Join(b.Holders, ", "))
		}
		fsType, err := openFS(sys.Root(), b.Name)
		if err != nil {
			return fmt.Sprintf("its filesystems could not be read (%v)", err)
		}
		if fsType != "" {
			return fmt.Sprintf("/dev/%s: its %s filesystem is still open in dom0's kernel (not yet done unmounting, or mounted where the agent does not see)", b.Name, fsType)
		}
	}
	return ""
}

// Stacked says whether device-mapper or md (or bcache, zfs) holds a disk
// or partition of d: some of them let go with no event.
func Stacked(sys *usbsysfs.FS, d usbsysfs.Device) bool {
	blocks, _ := disks(sys, d)
	return slices.ContainsFunc(blocks, func(b usbsysfs.BlockDev) bool { return len(b.Holders) > 0 })
}

// Busy says why dom0 still has a disk or partition of d open, when InUse
// found none of the reasons it knows: the kernel refuses an exclusive
// open of each (see openElsewhere). Only what is about to be passed is
// asked: the open is brief, but a mount tried at that instant (an
// automounter's, of a stick that stays with dom0) would fail with EBUSY.
// It is "" when d is free.
func Busy(sys *usbsysfs.FS, d usbsysfs.Device) string {
	blocks, why := disks(sys, d)
	if why != "" {
		return why
	}
	return busy(sys.Root(), blocks)
}

func busy(sysRoot string, blocks []usbsysfs.BlockDev) string {
	for _, b := range blocks {
		busy, err := openElsewhere(devDir(sysRoot), b.Name)
		if err != nil {
			return checkFailed(err)
		}
		if busy {
			return openInDom0(b.Name)
		}
	}
	return ""
}

func checkFailed(err error) string { return fmt.Sprintf("it could not be checked (%v)", err) }

func openInDom0(name string) string {
	return fmt.Sprintf("/dev/%s is open in dom0 (still being unmounted, swap, or held by a program)", name)
}

// Hold is Busy for a device about to be passed, and when d is free (why
// is "") it keeps each whole disk of d open exclusively until release,
// which the caller calls once d's storage driver has let it go. In
// between, no mount (an automounter's) can take the disk or a partition
// of it: the kernel refuses to claim a partition of a disk another
// holds. When anything is busy nothing is held. release may be called
// more than once.
func Hold(sys *usbsysfs.FS, d usbsysfs.Device) (release func(), why string) {
	var fds []int
	release = func() {
		for _, fd := range fds {
			closeFD(fd)
		}
		fds = nil
	}
	blocks, why := disks(sys, d)
	if why == "" {
		// Each disk and partition first, one by one: once the whole
		// disk is held, its partitions' own checks would be refused.
		why = busy(sys.Root(), blocks)
	}
	for _, b := range blocks {
		if why != "" {
			break
		}
		if !b.Whole {
			continue // the whole disk's claim covers its partitions
		}
		fd, busy, err := claim(devDir(sys.Root()), b.Name)
		switch {
		case err != nil:
			why = checkFailed(err)
		case busy: // claimed since it was checked
			why = openInDom0(b.Name)
		case fd >= 0:
			fds = append(fds, fd)
		}
	}
	if why != "" {
		release()
	}
	return release, why
}

// disks are d's disks and partitions (none when d is no storage device or
// left meanwhile), or why they could not be read.
func disks(sys *usbsysfs.FS, d usbsysfs.Device) ([]usbsysfs.BlockDev, string) {
	if !Storage(d) {
		return nil, ""
	}
	blocks, err := sys.BlockDevs(d.BusID)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, "" // left meanwhile
	}
	if err != nil {
		return nil, fmt.Sprintf("its disks could not be read (%v)", err)
	}
	return blocks, ""
}

// devDir is where the block devices of the sysfs tree at sysRoot have
// their nodes: /dev for /sys, and a fixture tree's own .dev (none, unless
// a test makes one), never the host's for a fixture.
func devDir(sysRoot string) string {
	if filepath.Clean(sysRoot) == "/sys" {
		return "/dev"
	}
	return filepath.Join(sysRoot, ".dev")
}

// Closing says whether a disk or partition of d holds a filesystem the
// kernel still has open though no mount shows it and nothing holds it:
// most likely an unmount still writing its data out, which ends with no
// event to wait for (a mount the agent does not see looks the same).
func Closing(sys *usbsysfs.FS, d usbsysfs.Device, mountinfo string) bool {
	if !Storage(d) {
		return false
	}
	blocks, err := sys.BlockDevs(d.BusID)
	if err != nil || len(blocks) == 0 {
		return false
	}
	tab, err := mounts.Read(mountinfo)
	if err != nil {
		return false
	}
	for _, b := range blocks {
		if tab.Using(b.Dev, b.Name) != "" || len(b.Holders) > 0 {
			continue
		}
		if t, err := openFS(sys.Root(), b.Name); err == nil && t != "" {
			return true
		}
	}
	return false
}

// openFS names the filesystem the kernel has open on block device name,
// as the filesystems that list themselves in sysfs show it: ext4 (and
// ext2, ext3), xfs, f2fs by device, btrfs by every device of the
// filesystem. It is "" when none does (vfat, exfat and others never do).
//
// The mount table is not enough: an unmount leaves it at once, and only
// then does the kernel write the cached data out (seconds, on a stick),
// so a disk passed at that moment loses it. A btrfs filesystem of several
// devices shows one of them there, and a mount in another namespace
// none.
func openFS(sysRoot, name string) (string, error) {
	for _, t := range []string{"ext4", "xfs", "f2fs"} {
		_, err := os.Lstat(filepath.Join(sysRoot, "fs", t, name))
		if err == nil {
			return t, nil
		}
		if !errors.Is(err, fs.ErrNotExist) {
			return "", fmt.Errorf("inventory: %w", err)
		}
	}
	dir := filepath.Join(sysRoot, "fs", "btrfs")
	des, err := os.ReadDir(dir)
	if errors.Is(err, fs.ErrNotExist) {
		return "", nil
	}
	if err != nil {
		return "", fmt.Errorf("inventory: %w", err)
	}
	for _, de := range des {
		// A filesystem's directory has devices/; features/ and the
		// like do not.
		_, err := os.Lstat(filepath.Join(dir, de.Name(), "devices", name))
		if err == nil {
			return "btrfs", nil
		}
		if !errors.Is(err, fs.ErrNotExist) && !errors.Is(err, syscall.ENOTDIR) {
			return "", fmt.Errorf("inventory: %w", err)
		}
	}
	return "", nil
}
