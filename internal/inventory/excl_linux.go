package inventory

import (
	"errors"
	"fmt"
	"path/filepath"

	"golang.org/x/sys/unix"
)

// openElsewhere says whether something in dom0 has block device name
// open: the kernel refuses an exclusive open of a disk or partition that
// is mounted (in any namespace, also while an unmount still writes it
// out, whatever the filesystem), used as swap, held by device-mapper, md,
// bcache or zfs, or opened exclusively by a program. The open is read-only
// and closed at once; a missing node or medium is not in use.
func openElsewhere(dev, name string) (bool, error) {
	path := filepath.Join(dev, name)
	fd, err := unix.Open(path, unix.O_RDONLY|unix.O_EXCL|unix.O_NONBLOCK|unix.O_CLOEXEC, 0)
	switch {
	case err == nil:
		unix.Close(fd)
		return false, nil
	case errors.Is(err, unix.EBUSY):
		return true, nil
	case errors.Is(err, unix.ENOENT), errors.Is(err, unix.ENXIO), errors.Is(err, unix.ENOMEDIUM):
		return false, nil
	}
	return false, fmt.Errorf("inventory: opening %s to see whether dom0 uses it: %w", path, err)
}
