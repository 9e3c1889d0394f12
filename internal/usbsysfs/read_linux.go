package usbsysfs

import (
	"io"
	"io/fs"
	"path/filepath"

	"golang.org/x/sys/unix"
)

// readSmall reads a sysfs attribute with three system calls (open, read,
// close): os.ReadFile's nine (poller registration, stat) add up when a
// command reads dozens of attributes. Sysfs (like a regular file) gives
// all it has to the first read: a read shorter than the buffer is the end,
// and no second read is made to see it. A read that fills the buffer (a
// long string, a binary attribute such as descriptors) is followed by
// more, to the end. The buffer is a few lines, not a page: the values are
// short, and a page-sized frame made the caller's stack grow (a copy of
// every frame below it) in the middle of a command.
func readSmall(path string) ([]byte, error) {
	return readSmallAt(unix.AT_FDCWD, path, path)
}

// readSmallAt is readSmall for the file name in the directory open as
// dirfd; path is the file's whole path, for errors.
func readSmallAt(dirfd int, name, path string) ([]byte, error) {
	// O_NONBLOCK changes nothing for sysfs or a regular file; a FIFO in a
	// fixture tree's attribute's place then reads empty instead of
	// waiting for a writer for ever.
	const flags = unix.O_RDONLY | unix.O_CLOEXEC | unix.O_NONBLOCK
	fd, err := unix.Openat(dirfd, name, flags, 0)
	for err == unix.EINTR {
		fd, err = unix.Openat(dirfd, name, flags, 0)
	}
	if err != nil {
		return nil, &fs.PathError{Op: "open", Path: path, Err: err}
	}
	defer unix.Close(fd)
	var buf [512]byte
	var out []byte
	for {
		n, err := unix.Read(fd, buf[:])
		if err == unix.EINTR {
			continue
		}
		if err != nil {
			return nil, &fs.PathError{Op: "read", Path: path, Err: err}
		}
		out = append(out, buf[:n]...)
		if n < len(buf) {
			return out, nil
		}
		if len(out) > maxAttr {
			return nil, &fs.PathError{Op: "read", Path: path, Err: errTooLarge}
		}
	}
}

// A attrDir is a directory whose attributes are read relative to it: each
// read then costs the kernel one name's lookup, not the walk of the whole
// path (through bus/usb/devices' symlink) again.
type attrDir struct {
	path string
	fd   int // -1: not open, the reads take the whole path
}

// openAttrDir opens dir for reads; one it cannot open is read by whole
// paths, whose errors then say what is wrong.
func openAttrDir(dir string) attrDir {
	fd, err := unix.Open(dir, unix.O_PATH|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		fd = -1
	}
	return attrDir{path: dir, fd: fd}
}

func (d attrDir) read(name string) ([]byte, error) {
	p := filepath.Join(d.path, name)
	if d.fd < 0 {
		return readSmall(p)
	}
	return readSmallAt(d.fd, name, p)
}

// dup is d with a descriptor of its own, for a read that may outlive
// d's close; by whole paths when it cannot be had.
func (d attrDir) dup() attrDir {
	if d.fd < 0 {
		return d
	}
	fd, err := unix.FcntlInt(uintptr(d.fd), unix.F_DUPFD_CLOEXEC, 0)
	if err != nil {
		fd = -1
	}
	return attrDir{path: d.path, fd: fd}
}

func (d attrDir) close() {
	if d.fd >= 0 {
		unix.Close(d.fd)
	}
}

// writeSmall writes an attribute with three system calls (open, write,
// close): an *os.File costs five more (the poller's registration, which
// sysfs refuses, and the flags set and restored around it).
func writeSmall(path string, data []byte) error {
	fd, err := unix.Open(path, unix.O_WRONLY|unix.O_CLOEXEC, 0)
	for err == unix.EINTR {
		fd, err = unix.Open(path, unix.O_WRONLY|unix.O_CLOEXEC, 0)
	}
	if err != nil {
		return &fs.PathError{Op: "open", Path: path, Err: err}
	}
	for {
		n, err := unix.Write(fd, data)
		if err == unix.EINTR {
			continue
		}
		if err == nil && n == 0 && len(data) > 0 {
			err = io.ErrUnexpectedEOF // as an *os.File says it
		}
		if err != nil {
			unix.Close(fd)
			return &fs.PathError{Op: "write", Path: path, Err: err}
		}
		if data = data[n:]; len(data) == 0 {
			break
		}
	}
	if err := unix.Close(fd); err != nil {
		return &fs.PathError{Op: "close", Path: path, Err: err}
	}
	return nil
}
