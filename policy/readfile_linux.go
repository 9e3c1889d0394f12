package policy

import (
	"fmt"
	"io"
	"os"

	"golang.org/x/sys/unix"
)

// readRegular reads a policy file: a regular file of at most MaxFileSize
// bytes.
func readRegular(path string) ([]byte, error) {
	return ReadRegular(path, MaxFileSize, "a policy file")
}

// ReadRegular reads a file an admin names as policy files are read: a
// regular file of at most max bytes (a whole number of MiB), else an
// error (ErrNotRegular, ErrLimit) that names path and says what (the kind
// of file: "a policy file") may be. It opens without blocking and checks
// the type on the open file before reading, so a FIFO (which would wait
// for a writer) or a device such as /dev/zero (which never ends) is
// refused by name, and a file swapped for one between a check and the
// open cannot slip through.
func ReadRegular(path string, max int64, what string) ([]byte, error) {
	fd, err := unix.Open(path, unix.O_RDONLY|unix.O_NONBLOCK|unix.O_CLOEXEC|unix.O_NOCTTY, 0)
	if err != nil {
		return nil, &os.PathError{Op: "open", Path: path, Err: err}
	}
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil {
		unix.Close(fd)
		return nil, &os.PathError{Op: "stat", Path: path, Err: err}
	}
	if st.Mode&unix.S_IFMT != unix.S_IFREG {
		unix.Close(fd)
		return nil, fmt.Errorf("%s: %w (%s)", path, ErrNotRegular, fileKind(st.Mode))
	}
	if st.Size > max {
		unix.Close(fd)
		return nil, fmt.Errorf("%s: %d bytes: %s is at most %d MiB (%w)", path, st.Size, what, max>>20, ErrLimit)
	}
	f := os.NewFile(uintptr(fd), path)
	defer f.Close()
	// The size can grow while we read: never read past the limit.
	b, err := io.ReadAll(io.LimitReader(f, max+1))
	if err != nil {
		return nil, err
	}
	if int64(len(b)) > max {
		return nil, fmt.Errorf("%s: more than %d MiB: %s is at most %d MiB (%w)", path, max>>20, what, max>>20, ErrLimit)
	}
	return b, nil
}

func fileKind(mode uint32) string {
	switch mode & unix.S_IFMT {
	case unix.S_IFIFO:
		return "a named pipe"
	case unix.S_IFCHR:
		return "a character device"
	case unix.S_IFBLK:
		return "a block device"
	case unix.S_IFSOCK:
		return "a socket"
	case unix.S_IFDIR:
		return "a directory"
	}
	return fmt.Sprintf("file type %#o", mode&unix.S_IFMT)
}
