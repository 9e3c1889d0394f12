package xenstore

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"time"
)

var errClosed = net.ErrClosed

// Candidates returns the paths Dial tries, in libxenstore's order:
// $XENSTORED_PATH alone if set; otherwise $XENSTORED_RUNDIR/socket (or the
// default run directories' sockets), then /dev/xen/xenbus.
func Candidates() []string {
	if p := os.Getenv("XENSTORED_PATH"); p != "" {
		return []string{p}
	}
	var c []string
	if d := os.Getenv("XENSTORED_RUNDIR"); d != "" {
		c = append(c, filepath.Join(d, "socket"))
	} else {
		c = append(c, "/var/run/xenstored/socket", "/run/xenstored/socket")
	}
	return append(c, "/dev/xen/xenbus")
}

// Dial connects to the local store, trying each of Candidates. A socket is
// connected to; anything else (the xenbus device) is opened read-write.
func Dial(ctx context.Context) (*Conn, error) {
	var errs []error
	for _, p := range Candidates() {
		c, err := DialPath(ctx, p)
		if err == nil {
			return c, nil
		}
		errs = append(errs, err)
	}
	// One line, each path's reason; errors.Is sees every one.
	msgs := make([]string, len(errs))
	for i, e := range errs {
		msgs[i] = strings.TrimPrefix(e.Error(), "xenstore: ")
	}
	return nil, &dialError{msg: "xenstore: no store reachable: " + strings.Join(msgs, "; "), errs: errs}
}

func kindOf(m os.FileMode) string {
	switch {
	case m.IsRegular():
		return "a regular file"
	case m.IsDir():
		return "a directory"
	case m&os.ModeNamedPipe != 0:
		return "a named pipe"
	case m&os.ModeDevice != 0:
		return "a block device"
	}
	return "a " + m.Type().String() + " file"
}

// ErrNotStore: the path names no store (a regular file, a directory).
var ErrNotStore = errors.New("not a store")

// dialError is Dial's failure at every path.
type dialError struct {
	msg  string
	errs []error
}

func (e *dialError) Error() string   { return e.msg }
func (e *dialError) Unwrap() []error { return e.errs }

// DialPath connects to the store at one path.
func DialPath(ctx context.Context, path string) (*Conn, error) {
	st, err := os.Stat(path)
	if err != nil {
		return nil, fmt.Errorf("xenstore: %w", err)
	}
	if st.Mode()&os.ModeSocket != 0 {
		nc, err := dialUnix(ctx, path)
		if err != nil {
			return nil, fmt.Errorf("xenstore: dial %s: %w", path, err)
		}
		return NewConn(nc), nil
	}
	if st.Mode()&os.ModeCharDevice == 0 && !onXenfs(path) {
		// A regular file would have requests written into it (the one
		// exception: /proc/xen/xenbus, a file of xenfs, which libxenstore
		// opens when /dev/xen/xenbus is missing).
		return nil, fmt.Errorf("xenstore: %s is %s, neither a unix socket nor the xenbus device: %w", path, kindOf(st.Mode()), ErrNotStore)
	}
	f, err := os.OpenFile(path, os.O_RDWR, 0)
	if err != nil {
		return nil, fmt.Errorf("xenstore: open %s: %w", path, err)
	}
	// The xenbus device, or a character device standing in for it: one
	// message a write.
	return NewMessageConn(f), nil
}

// retryDial calls dial until it is not refused for a full accept queue,
// as libxenstore's blocking connect waits: the C xenstored's backlog is 1
// while it has not yet accepted the previous client.
func retryDial(ctx context.Context, dial func() (io.ReadWriteCloser, error)) (io.ReadWriteCloser, error) {
	wait := 50 * time.Microsecond
	for {
		c, err := dial()
		if !errors.Is(err, syscall.EAGAIN) {
			return c, err
		}
		select {
		case <-ctx.Done():
			return nil, fmt.Errorf("%w (its accept queue stayed full)", ctx.Err())
		case <-time.After(wait):
		}
		wait = min(2*wait, 20*time.Millisecond)
	}
}
