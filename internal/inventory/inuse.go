package inventory

import (
	"errors"
	"fmt"
	"io/fs"
	"slices"
	"strings"

	"github.com/usbhotplugd/usbhotplugd/internal/mounts"
	"github.com/usbhotplugd/usbhotplugd/internal/usbsysfs"
)

// Storage says whether d has a mass-storage interface (class 08): a disk
// dom0 may use.
func Storage(d usbsysfs.Device) bool {
	return slices.ContainsFunc(d.Interfaces, func(in usbsysfs.Interface) bool { return in.Class == 0x08 })
}

// InUse says why dom0 uses d, so that it must stay with dom0: one of its
// disks or partitions is mounted (the root, a data volume), or is held by
// device-mapper or md (LVM, dm-crypt, RAID). It is "" when d is free. A
// storage device whose state cannot be read counts as in use: passing
// dom0's own disk to a guest is not a mistake to risk.
func InUse(sys *usbsysfs.FS, d usbsysfs.Device, mountinfo string) string {
	if !Storage(d) {
		return ""
	}
	blocks, err := sys.BlockDevs(d.BusID)
	if errors.Is(err, fs.ErrNotExist) {
		return "" // left meanwhile
	}
	if err != nil {
		return fmt.Sprintf("its disks could not be read (%v)", err)
	}
	if len(blocks) == 0 {
		return ""
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
	}
	return ""
}
