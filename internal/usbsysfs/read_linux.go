package usbsysfs

import (
	"io/fs"

	"golang.org/x/sys/unix"
)

// readSmall reads a sysfs attribute with three system calls (open, read,
// close): os.ReadFile's nine (poller registration, stat) add up when a
// command reads dozens of attributes. An attribute is at most a page, and
// sysfs (like a regular file) gives all it has to the first read: a read
// shorter than the buffer is the end, and no second read is made to see
// it. A read that fills the buffer (a binary attribute such as
// descriptors) is followed by more, to the end.
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
		out = append(out, page[:n]...)
		if n < len(page) {
			return out, nil
		}
	}
}
