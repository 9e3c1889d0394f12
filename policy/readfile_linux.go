package policy

import (
	"fmt"
	"io"
	"os"

	"golang.org/x/sys/unix"
)

// readRegular reads a policy file: a regular file of at most MaxFileSize
// bytes. It opens without blocking and checks the type on the open file
// before reading, so a FIFO (which would wait for a writer) or a device
// such as /dev/zero (which never ends) is refused by name, and a file
// swapped for one between a check and the open cannot slip through.
func readRegular(path string) ([]byte, error) {
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
	if st.Size > MaxFileSize {
		unix.Close(fd)
		return nil, fmt.Errorf("%s: %w: %d bytes; a policy file is at most %d MiB", path, ErrLimit, st.Size, MaxFileSize>>20)
	}
	f := os.NewFile(uintptr(fd), path)
	defer f.Close()
	// The size can grow while we read: never read past the limit.
	b, err := io.ReadAll(io.LimitReader(f, MaxFileSize+1))
	if err != nil {
		return nil, err
	}
	if len(b) > MaxFileSize {
		return nil, fmt.Errorf("%s: %w: a policy file is at most %d MiB", path, ErrLimit, MaxFileSize>>20)
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
