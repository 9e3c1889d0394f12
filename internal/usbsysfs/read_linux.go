package usbsysfs

import (
	"io/fs"

	"golang.org/x/sys/unix"
)

// readSmall reads a sysfs attribute with three system calls (open, read,
// close): os.ReadFile's nine (poller registration, stat) add up when a
// command reads dozens of attributes. An attribute is at most a page;
// larger files are read to their end all the same.
func readSmall(path string) ([]byte, error) {
	fd, err := unix.Open(path, unix.O_RDONLY|unix.O_CLOEXEC, 0)
	for err == unix.EINTR {
		fd, err = unix.Open(path, unix.O_RDONLY|unix.O_CLOEXEC, 0)
	}
	if err != nil {
		return nil, &fs.PathError{Op: "open", Path: path, Err: err}
	}
	defer unix.Close(fd)
	var page [4096]byte
	var out []byte
	for {
		n, err := unix.Read(fd, page[:])
		if err == unix.EINTR {
			continue
		}
		if err != nil {
			return nil, &fs.PathError{Op: "read", Path: path, Err: err}
		}
		if n == 0 {
			return out, nil
		}
		out = append(out, page[:n]...)
	}
}
