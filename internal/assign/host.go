package assign

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/usbhotplugd/usbhotplugd/internal/usbsysfs"
	"github.com/usbhotplugd/usbhotplugd/internal/xenstore"
)

// Errors a caller can test with errors.Is.
var (
	ErrNoDomain      = errors.New("no such domain")
	ErrNoDevice      = errors.New("no such USB device on the host")
	ErrNotAssignable = errors.New("USB device is not assignable")
	// ErrUsbbackRefused: usbback's probe refused the device (it serves
	// no hub, no SuperSpeed device, and no high-speed device at a USB 1.1
	// controller): trying again cannot help until it is plugged again.
	ErrUsbbackRefused = errors.New("usbback refuses the device")
	// ErrDriverChanged: an interface changed driver while the attach
	// moved it (another toolstack at work); the attach was rolled back.
	ErrDriverChanged  = errors.New("the interface changed driver meanwhile")
	ErrAssigned       = errors.New("USB device already attached to a domain")
	ErrNoController   = errors.New("no such USB controller")
	ErrNoFreePort     = errors.New("no free port")
	ErrNoPort         = errors.New("no such port")
	ErrPortBusy       = errors.New("port is in use")
	ErrPortEmpty      = errors.New("nothing attached at that port")
	ErrPortChanged    = errors.New("the port holds another device now")
	ErrDeviceExists   = errors.New("controller already exists")
	ErrTimeout        = errors.New("backend did not answer in time")
	ErrUnsupported    = errors.New("not supported")
	ErrBadStore       = errors.New("unexpected xenstore contents")
	ErrNotDom0Backend = errors.New("backend is not dom0")
	ErrBackendRefused = errors.New("backend refused the controller")
	ErrNotReady       = errors.New("the guest is not ready yet")
	// ErrGivingBack is a detach done but for its dom0 driver's probe,
	// which goes on in the kernel (usbsysfs.ErrBusy): the port is clear,
	// the driver records stay until the give-back is finished.
	ErrGivingBack = errors.New("removed from the guest; its dom0 driver still probes it")
)

// libxl's timeouts (libxl_internal.h).
const (
	InitTimeout    = 10 * time.Second // wait for the backend's InitWait
	DestroyTimeout = 10 * time.Second // wait for the backend's Closed
)

// A Host is dom0's view: its xenstore connection and its sysfs. The zero
// timeouts mean libxl's.
type Host struct {
	XS  *xenstore.Conn
	Sys *usbsysfs.FS

	InitTimeout    time.Duration
	DestroyTimeout time.Duration
	// Warn, when set, hears about what was tolerated: stale ports, records
	// that could not be used.
	Warn func(msg string)
	// DialQMP connects to a guest's device model, for emulated
	// (devicemodel) controllers; nil dials libxl's socket for the domain.
	DialQMP func(ctx context.Context, domid uint32) (QMP, func(), error)

	shapeMu sync.Mutex
	shape   map[uint32][]Controller // the last snapshot's; see prefetch
	skipped []Skipped               // the controllers the last snapshot set apart
	said    map[string]bool         // warnOnce's messages
}

func (h *Host) warn(format string, a ...any) {
	if h.Warn != nil {
		h.Warn(fmt.Sprintf(format, a...))
	}
}

// maxSaid bounds the messages warnOnce remembers: past it, new ones are
// no longer said, rather than kept without end.
const maxSaid = 256

// warnOnce is warn for what every look at the store finds again (a
// stray node, a port that names no device): said once, not at every
// pass, where it would drown the other warnings.
func (h *Host) warnOnce(format string, a ...any) {
	if h.Warn == nil {
		return
	}
	msg := fmt.Sprintf(format, a...)
	h.shapeMu.Lock()
	if h.said == nil {
		h.said = map[string]bool{}
	}
	say := !h.said[msg] && len(h.said) < maxSaid
	if say {
		h.said[msg] = true
	}
	h.shapeMu.Unlock()
	if say {
		h.Warn(msg)
	}
}

func (h *Host) initTimeout() time.Duration {
	if h.InitTimeout > 0 {
		return h.InitTimeout
	}
	return InitTimeout
}

func (h *Host) destroyTimeout() time.Duration {
	if h.DestroyTimeout > 0 {
		return h.DestroyTimeout
	}
	return DestroyTimeout
}

// rw is what both a connection and a transaction do.
type rw interface {
	Read(ctx context.Context, path string) ([]byte, error)
	Write(ctx context.Context, path string, value []byte) error
	Rm(ctx context.Context, path string) error
	Mkdir(ctx context.Context, path string) error
	SetPerms(ctx context.Context, path string, perms xenstore.Perms) error
	Directory(ctx context.Context, path string) ([]string, error)
	ReadMany(ctx context.Context, paths []string) ([][]byte, []error)
	Gets(ctx context.Context, gets []xenstore.Get) []xenstore.Got
	WriteMany(ctx context.Context, nodes [][2]string) error
}

func notExist(err error) bool { return errors.Is(err, syscall.ENOENT) }

// readOpt reads a node; ok is false when it does not exist.
func readOpt(ctx context.Context, r rw, path string) (string, bool, error) {
	b, err := r.Read(ctx, path)
	if notExist(err) {
		return "", false, nil
	}
	if err != nil {
		return "", false, err
	}
	return string(b), true, nil
}

// dirOpt lists a node's children; none when it does not exist.
func dirOpt(ctx context.Context, r rw, path string) ([]string, error) {
	d, err := r.Directory(ctx, path)
	if notExist(err) {
		return nil, nil
	}
	return d, err
}

type optValue struct {
	v  string
	ok bool
}

// readMany reads paths with one request each, all sent in one write: n
// reads cost one round trip. A missing node is not an error.
func readMany(ctx context.Context, r rw, paths []string) ([]optValue, error) {
	out := make([]optValue, len(paths))
	vals, errs := r.ReadMany(ctx, paths)
	for i, err := range errs {
		switch {
		case err == nil:
			out[i] = optValue{string(vals[i]), true}
		case notExist(err):
			errs[i] = nil
		}
	}
	return out, errors.Join(errs...)
}

func write(ctx context.Context, r rw, path, value string) error {
	return r.Write(ctx, path, []byte(value))
}

func rmOpt(ctx context.Context, r rw, path string) error {
	if err := r.Rm(ctx, path); err != nil && !notExist(err) {
		return err
	}
	return nil
}

// pathCleanup removes path, then each parent that is left with an empty
// value and no children, as libxl__xs_path_cleanup does.
func pathCleanup(ctx context.Context, r rw, path string) error {
	if err := rmOpt(ctx, r, path); err != nil {
		return err
	}
	for p := parent(path); p != "/" && p != ""; p = parent(p) {
		v, ok, err := readOpt(ctx, r, p)
		if err != nil || !ok || v != "" {
			return err
		}
		kids, err := dirOpt(ctx, r, p)
		if err != nil || len(kids) > 0 {
			return err
		}
		if err := rmOpt(ctx, r, p); err != nil {
			return err
		}
	}
	return nil
}

func parent(p string) string {
	for i := len(p) - 1; i > 0; i-- {
		if p[i] == '/' {
			return p[:i]
		}
	}
	return "/"
}

var watchSeq atomic.Uint64

// waitState waits until the node at path holds want (or, with atLeast, a
// later state: a backend that reached InitWait and went on to Connected
// before we looked has initialised), or the timeout.
func (h *Host) waitState(ctx context.Context, path string, want int, atLeast bool, timeout time.Duration) error {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	token := fmt.Sprintf("usbhotplugd-wait-%d", watchSeq.Add(1))
	evs, err := h.XS.Watch(ctx, path, token)
	if err != nil {
		return err
	}
	defer h.XS.Unwatch(context.WithoutCancel(ctx), path, token)
	for {
		select {
		case <-ctx.Done():
			if errors.Is(ctx.Err(), context.DeadlineExceeded) {
				return fmt.Errorf("%s did not become %d within %v: %w", path, want, timeout, ErrTimeout)
			}
			return ctx.Err()
		case _, ok := <-evs:
			if !ok {
				return fmt.Errorf("watch on %s ended: %w", path, xenstore.ErrDisconnected)
			}
		}
		v, present, err := readOpt(ctx, h.XS, path)
		if err != nil {
			continue // re-checked at the next event or the deadline
		}
		if !present {
			return fmt.Errorf("%s disappeared while waiting for state %d: %w", path, want, ErrBadStore)
		}
		n, perr := strconv.Atoi(v)
		if perr == nil && (n == want || atLeast && n > want && n <= 4) {
			return nil
		}
		if perr == nil && atLeast && n >= 5 {
			return fmt.Errorf("%s is %d: the backend refused it and is closing: %w", path, n, ErrBackendRefused)
		}
	}
}
