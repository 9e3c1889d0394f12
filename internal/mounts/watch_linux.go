package mounts

import (
	"context"
	"errors"
	"fmt"

	"golang.org/x/sys/unix"
)

// A Watcher wakes at each mount or unmount that changes what a
// /proc/<pid>/mountinfo (or mounts) file shows. The kernel marks such a
// file POLLPRI at each change in its mount namespace since the file was
// opened or last polled, so nothing wakes in between and no change after
// OpenWatch is missed. A file that is not one (a fixture) never wakes it.
type Watcher struct {
	path string
	fd   int
}

// OpenWatch opens path for Run.
func OpenWatch(path string) (*Watcher, error) {
	fd, err := unix.Open(path, unix.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("mounts: watching %s: %w", path, err)
	}
	return &Watcher{path: path, fd: fd}, nil
}

// Close releases the file; Run must have returned.
func (w *Watcher) Close() error { return unix.Close(w.fd) }

// Run calls changed at each change, until ctx ends (then it returns nil).
func (w *Watcher) Run(ctx context.Context, changed func()) error {
	// The end of ctx is written to an eventfd the poll also waits on.
	efd, err := unix.Eventfd(0, unix.EFD_CLOEXEC)
	if err != nil {
		return fmt.Errorf("mounts: watching %s: eventfd: %w", w.path, err)
	}
	woken := make(chan struct{})
	stop := context.AfterFunc(ctx, func() {
		unix.Write(efd, []byte{1, 0, 0, 0, 0, 0, 0, 0})
		close(woken)
	})
	defer func() {
		if !stop() {
			<-woken // its write is done before the eventfd is closed
		}
		unix.Close(efd)
	}()
	for {
		fds := []unix.PollFd{{Fd: int32(w.fd), Events: unix.POLLPRI}, {Fd: int32(efd), Events: unix.POLLIN}}
		if _, err := unix.Poll(fds, -1); err != nil {
			if errors.Is(err, unix.EINTR) {
				continue
			}
			return fmt.Errorf("mounts: watching %s: %w", w.path, err)
		}
		if fds[1].Revents != 0 {
			return nil
		}
		switch ev := fds[0].Revents; {
		case ev&unix.POLLNVAL != 0:
			return fmt.Errorf("mounts: watching %s: %w", w.path, unix.EBADF)
		case ev&(unix.POLLPRI|unix.POLLERR) != 0:
			changed()
		}
	}
}
