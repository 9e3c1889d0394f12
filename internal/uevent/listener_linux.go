//go:build linux

package uevent

import (
	"context"
	"errors"
	"fmt"
	"os"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// Stats counts what a Listener refused.
type Stats struct {
	Received  uint64 // events delivered
	NotKernel uint64 // datagrams from a sender other than the kernel
	Malformed uint64 // datagrams that failed validation
	Overruns  uint64 // ENOBUFS reports
}

// A Listener receives kernel uevents. Receive may be called from one
// goroutine at a time; Close may be called from any, more than once.
type Listener struct {
	f         *os.File
	rc        syscall.RawConn
	trustPort uint32 // sender port id accepted: 0, the kernel (tests set another)
	buf       []byte

	closeOnce                                sync.Once
	received, notKernel, malformed, overruns atomic.Uint64
}

// DefaultBufferSize is the receive buffer asked for: large enough for a
// storm of hundreds of devices.
const DefaultBufferSize = 8 << 20

// Listen opens a NETLINK_KOBJECT_UEVENT socket bound to group 1 with a
// receive buffer of bufSize bytes (DefaultBufferSize if 0).
func Listen(bufSize int) (*Listener, error) {
	return listen(bufSize, 0)
}

// ListenFrom is Listen for tests inside a private network namespace:
// the datagrams of the one user-space sender with port id port are taken
// as the kernel's, and no other.
func ListenFrom(bufSize int, port uint32) (*Listener, error) {
	return listen(bufSize, port)
}

func listen(bufSize int, trustPort uint32) (*Listener, error) {
	if bufSize <= 0 {
		bufSize = DefaultBufferSize
	}
	fd, err := unix.Socket(unix.AF_NETLINK, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC|unix.SOCK_NONBLOCK, unix.NETLINK_KOBJECT_UEVENT)
	if err != nil {
		return nil, fmt.Errorf("uevent: socket: %w", err)
	}
	// SO_RCVBUFFORCE needs CAP_NET_ADMIN; without it SO_RCVBUF is capped by
	// net.core.rmem_max.
	if unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_RCVBUFFORCE, bufSize) != nil {
		_ = unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_RCVBUF, bufSize)
	}
	if err := unix.Bind(fd, &unix.SockaddrNetlink{Family: unix.AF_NETLINK, Groups: 1}); err != nil {
		unix.Close(fd)
		return nil, fmt.Errorf("uevent: bind to group 1: %w", err)
	}
	f := os.NewFile(uintptr(fd), "uevent")
	rc, err := f.SyscallConn()
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("uevent: %w", err)
	}
	return &Listener{f: f, rc: rc, trustPort: trustPort, buf: make([]byte, 4096)}, nil
}

// Close closes the socket; a Receive in progress returns an error wrapping
// os.ErrClosed.
func (l *Listener) Close() error {
	var err error
	l.closeOnce.Do(func() { err = l.f.Close() })
	return err
}

// Stats returns the listener's counters.
func (l *Listener) Stats() Stats {
	return Stats{Received: l.received.Load(), NotKernel: l.notKernel.Load(), Malformed: l.malformed.Load(), Overruns: l.overruns.Load()}
}

// Receive returns the next event or overrun. Datagrams from other senders
// are dropped (and counted); a malformed one from the kernel is counted
// and returned as Refused, since an event of the kernel's was lost. It
// returns ctx.Err() when ctx ends, and os.ErrClosed after Close.
func (l *Listener) Receive(ctx context.Context) (Message, error) {
	// A deadline left by an earlier, canceled call must not fail this one.
	if err := l.f.SetReadDeadline(time.Time{}); err != nil {
		return Message{}, fmt.Errorf("uevent: %w", err)
	}
	// Cancellation sets a deadline in the past, which wakes the read. If
	// it has begun, wait for it, so that it cannot land on a later call.
	fired := make(chan struct{})
	stop := context.AfterFunc(ctx, func() {
		l.f.SetReadDeadline(time.Unix(1, 0))
		close(fired)
	})
	defer func() {
		if !stop() {
			<-fired
		}
	}()
	for {
		if err := ctx.Err(); err != nil {
			return Message{}, err
		}
		b, from, err := l.read()
		if errors.Is(err, ErrMalformed) {
			if from != l.trustPort {
				l.notKernel.Add(1)
				continue
			}
			l.malformed.Add(1)
			return Message{Refused: err}, nil
		}
		if err != nil {
			if errors.Is(err, unix.ENOBUFS) {
				l.overruns.Add(1)
				return Message{Overrun: true}, nil
			}
			if ctx.Err() != nil {
				return Message{}, ctx.Err()
			}
			return Message{}, fmt.Errorf("uevent: receive: %w", err)
		}
		if from != l.trustPort {
			l.notKernel.Add(1)
			continue
		}
		ev, err := Parse(b)
		if err != nil {
			l.malformed.Add(1)
			return Message{Refused: err, RefusedSubsystem: SubsystemOf(b)}, nil
		}
		l.received.Add(1)
		return Message{Event: ev}, nil
	}
}

// read returns one datagram and its sender's port id.
func (l *Listener) read() ([]byte, uint32, error) {
	var (
		n     int
		from  uint32
		opErr error
	)
	err := l.rc.Read(func(fd uintptr) bool {
		// Size the datagram first, so none is ever truncated.
		size, _, e := unix.Recvfrom(int(fd), nil, unix.MSG_PEEK|unix.MSG_TRUNC)
		if e == unix.EAGAIN {
			return false
		}
		if e != nil {
			opErr = e
			return true
		}
		// Past MaxDatagram it is refused whole: the buffer need not hold
		// it (and another process's flood does not make it grow).
		if want := min(size, MaxDatagram+1); want > len(l.buf) {
			l.buf = make([]byte, want)
		}
		var sa unix.Sockaddr
		n, _, _, sa, e = unix.Recvmsg(int(fd), l.buf, nil, 0)
		if size > MaxDatagram {
			n = size // told whole below; never sliced
		}
		if e == unix.EAGAIN {
			return false
		}
		if e != nil {
			opErr = e
			return true
		}
		if nl, ok := sa.(*unix.SockaddrNetlink); ok {
			from = nl.Pid
		} else {
			from = ^uint32(0)
		}
		return true
	})
	if err != nil {
		return nil, 0, err
	}
	if opErr != nil {
		return nil, 0, opErr
	}
	if n > len(l.buf) {
		return nil, from, refuse("%d bytes is more than %d", n, MaxDatagram)
	}
	return l.buf[:n], from, nil
}
