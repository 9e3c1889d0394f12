//go:build linux

package xenstoretest

import (
	"encoding/binary"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"sync/atomic"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"
)

// Layout of struct xenstore_domain_interface (xen/include/public/io/xs_wire.h).
const (
	ringSize   = 1024
	offReq     = 0
	offRsp     = 1024
	offReqCons = 2048
	offReqProd = 2052
	offRspCons = 2056
	offRspProd = 2060
)

// A ringConn speaks to a real xenstored as a guest does: over the shared
// page the shim maps for that domain, waking the daemon through the
// shim's event-channel FIFO with the port the daemon bound for it.
type ringConn struct {
	page   []byte
	evtchn *os.File
	port   [4]byte
	closed atomic.Bool
}

// OpenRing connects to the ring of an introduced domain of the daemon
// whose shim directory is dir.
func OpenRing(dir string, domid uint32) (io.ReadWriteCloser, error) {
	f, err := os.OpenFile(filepath.Join(dir, fmt.Sprintf("ring-%d", domid)), os.O_RDWR, 0)
	if err != nil {
		return nil, fmt.Errorf("guest ring of domain %d: %w", domid, err)
	}
	defer f.Close()
	page, err := unix.Mmap(int(f.Fd()), 0, 4096, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_SHARED)
	if err != nil {
		return nil, fmt.Errorf("mapping the ring of domain %d: %w", domid, err)
	}
	// oxenstored serves a ring only when its domain's own port fires.
	b, err := os.ReadFile(filepath.Join(dir, fmt.Sprintf("port-%d", domid)))
	if err != nil {
		unix.Munmap(page)
		return nil, fmt.Errorf("event channel port of domain %d: %w", domid, err)
	}
	port, err := strconv.ParseUint(string(b), 10, 32)
	if err != nil {
		unix.Munmap(page)
		return nil, fmt.Errorf("event channel port of domain %d: %q: %w", domid, b, err)
	}
	ev, err := os.OpenFile(filepath.Join(dir, "evtchn"), os.O_WRONLY|unix.O_NONBLOCK, 0)
	if err != nil {
		unix.Munmap(page)
		return nil, fmt.Errorf("event channel FIFO: %w", err)
	}
	r := &ringConn{page: page, evtchn: ev}
	binary.NativeEndian.PutUint32(r.port[:], uint32(port))
	return r, nil
}

func (r *ringConn) idx(off int) *uint32 { return (*uint32)(unsafe.Pointer(&r.page[off])) }

func (r *ringConn) notify() {
	r.evtchn.Write(r.port[:]) // a full FIFO already holds a wake-up
}

// wait backs off from spinning to short sleeps: the ring has no other
// wake-up for the reader, as the shim drops the daemon's notifications.
func wait(spins *int) {
	*spins++
	if *spins < 64 {
		return
	}
	time.Sleep(20 * time.Microsecond)
}

func (r *ringConn) Write(b []byte) (int, error) {
	done := 0
	spins := 0
	for done < len(b) {
		if r.closed.Load() {
			return done, os.ErrClosed
		}
		cons := atomic.LoadUint32(r.idx(offReqCons))
		prod := atomic.LoadUint32(r.idx(offReqProd))
		space := ringSize - int(prod-cons)
		if space <= 0 {
			r.notify()
			wait(&spins)
			continue
		}
		start := int(prod % ringSize)
		n := min(space, len(b)-done, ringSize-start)
		copy(r.page[offReq+start:offReq+start+n], b[done:done+n])
		atomic.StoreUint32(r.idx(offReqProd), prod+uint32(n))
		done += n
		spins = 0
	}
	r.notify()
	return done, nil
}

func (r *ringConn) Read(b []byte) (int, error) {
	spins := 0
	for {
		if r.closed.Load() {
			return 0, io.EOF
		}
		cons := atomic.LoadUint32(r.idx(offRspCons))
		prod := atomic.LoadUint32(r.idx(offRspProd))
		avail := int(prod - cons)
		if avail <= 0 || avail > ringSize {
			wait(&spins)
			continue
		}
		start := int(cons % ringSize)
		n := min(avail, len(b), ringSize-start)
		copy(b[:n], r.page[offRsp+start:offRsp+start+n])
		atomic.StoreUint32(r.idx(offRspCons), cons+uint32(n))
		r.notify() // the daemon may have more output waiting for room
		return n, nil
	}
}

// Close stops the ring's users; the page stays mapped, since a reader may
// still be looking at it, and is small.
func (r *ringConn) Close() error {
	if r.closed.Swap(true) {
		return nil
	}
	return r.evtchn.Close()
}
