package xenstore

import (
	"context"
	"io"
	"os"

	"golang.org/x/sys/unix"
)

// dialUnix connects to a unix socket, made and connected with plain
// system calls and then read through the runtime's poller as an *os.File:
// the net package's dialer adds address resolution, a goroutine watching
// ctx and two more system calls, which a one-shot command pays each run.
func dialUnix(ctx context.Context, path string) (io.ReadWriteCloser, error) {
	sa := &unix.SockaddrUnix{Name: path}
	return retryDial(ctx, func() (io.ReadWriteCloser, error) {
		fd, err := unix.Socket(unix.AF_UNIX, unix.SOCK_STREAM|unix.SOCK_CLOEXEC|unix.SOCK_NONBLOCK, 0)
		if err != nil {
			return nil, os.NewSyscallError("socket", err)
		}
		// A unix socket connects at once or fails, never EINPROGRESS.
		if err := unix.Connect(fd, sa); err != nil {
			unix.Close(fd)
			return nil, os.NewSyscallError("connect", err)
		}
		return os.NewFile(uintptr(fd), path), nil
	})
}
