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
	fd, busy, err := claim(dev, name)
	if fd >= 0 {
		unix.Close(fd)
	}
	return busy, err
}

// claim opens block device name exclusively, read-only, and returns the
// descriptor, or -1 when it is busy (claimed by another) or absent (no
// node, no medium).
func claim(dev, name string) (fd int, busy bool, err error) {
	path := filepath.Join(dev, name)
	fd, err = unix.Open(path, unix.O_RDONLY|unix.O_EXCL|unix.O_NONBLOCK|unix.O_CLOEXEC, 0)
	switch {
	case err == nil:
		return fd, false, nil
	case errors.Is(err, unix.EBUSY):
		return -1, true, nil
	case errors.Is(err, unix.ENOENT), errors.Is(err, unix.ENXIO), errors.Is(err, unix.ENOMEDIUM):
		return -1, false, nil
	}
	return -1, false, fmt.Errorf("inventory: opening %s to see whether dom0 uses it: %w", path, err)
}

func closeFD(fd int) { unix.Close(fd) }
