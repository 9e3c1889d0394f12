package server

import (
	"errors"
	"fmt"
	"net"
	"os"
	"sync"
	"syscall"
	"time"
)

var (
	// ErrSocketInUse is returned by Listen when a server answers on the
	// socket already there.
	ErrSocketInUse = errors.New("socket in use")
	// ErrNotSocket is returned by Listen when the path holds something
	// other than a socket.
	ErrNotSocket = errors.New("not a socket")
)

// Listen opens a unix socket at path without harming whoever else serves
// there: a socket that accepts a connection is left alone and refused,
// naming the process that holds it; a file that is not a socket is refused;
// only a stale socket (nobody listening) is replaced. Closing the listener
// removes the socket file only if it is still the one Listen made.
func Listen(path string) (net.Listener, error) {
	fi, err := os.Lstat(path)
	switch {
	case errors.Is(err, os.ErrNotExist):
		return bind(path, false)
	case err != nil:
		return nil, fmt.Errorf("xenstored socket %s: %w", path, err)
	case fi.Mode()&os.ModeSocket == 0:
		return nil, fmt.Errorf("xenstored socket %s: it exists and is %s, refusing to replace it: %w", path, kind(fi), ErrNotSocket)
	}
	if err := stale(path); err != nil {
		return nil, err
	}
	return bind(path, true)
}

// stale returns nil when the socket at path answers no connection, and
// an error naming its holder when it does.
func stale(path string) error {
	nc, err := net.DialTimeout("unix", path, 2*time.Second)
	if err == nil {
		holder := peerName(nc)
		nc.Close()
		return fmt.Errorf("xenstored socket %s is served by %s; refusing to replace it: %w", path, holder, ErrSocketInUse)
	}
	if errors.Is(err, syscall.ECONNREFUSED) {
		return nil
	}
	if errors.Is(err, syscall.EAGAIN) {
		return fmt.Errorf("xenstored socket %s is served by a process whose accept queue is full; refusing to replace it: %w", path, ErrSocketInUse)
	}
	return fmt.Errorf("xenstored socket %s: cannot tell whether it is in use: %w", path, err)
}

// bind listens at path, where nothing or a stale socket is, and records
// which file it made there.
func bind(path string, replace bool) (net.Listener, error) {
	if replace {
		if err := os.Remove(path); err != nil && !errors.Is(err, os.ErrNotExist) {
			return nil, fmt.Errorf("xenstored socket %s: removing the stale socket: %w", path, err)
		}
	}
	l, err := net.Listen("unix", path)
	if err != nil {
		return nil, fmt.Errorf("xenstored socket %s: %w", path, err)
	}
	ul := l.(*net.UnixListener)
	ul.SetUnlinkOnClose(false) // Close removes it only while it is still ours
	fi, err := os.Lstat(path)
	if err != nil {
		l.Close()
		return nil, fmt.Errorf("xenstored socket %s: %w", path, err)
	}
	return &ownListener{UnixListener: ul, path: path, fi: fi}, nil
}

// An ownListener removes its socket file on Close, unless another server
// has put its own socket at the path meanwhile.
type ownListener struct {
	*net.UnixListener
	path string
	fi   os.FileInfo
	once sync.Once
}

func (l *ownListener) Close() error {
	err := l.UnixListener.Close()
	l.once.Do(func() {
		if fi, lerr := os.Lstat(l.path); lerr == nil && os.SameFile(fi, l.fi) {
			os.Remove(l.path)
		}
	})
	return err
}

func kind(fi os.FileInfo) string {
	switch m := fi.Mode(); {
	case m.IsRegular():
		return "a regular file"
	case m.IsDir():
		return "a directory"
	case m&os.ModeSymlink != 0:
		return "a symbolic link"
	case m&os.ModeNamedPipe != 0:
		return "a FIFO"
	case m&os.ModeDevice != 0:
		return "a device"
	default:
		return "not a socket (" + m.String() + ")"
	}
}
