package usbsysfs

import (
	"errors"
	"fmt"
	"os"
	"strings"
	"sync"
	"time"
)

// ErrBusy is what a read of a device gives when the kernel holds its
// device lock for longer than the FS waits (WithLockWait): a driver is
// probing one of its interfaces (or a child of the hub), or the device is
// being reset. The device is on the host; it is read again once the
// kernel lets go (Unlocked).
var ErrBusy = errors.New("busy: the kernel holds the device's lock (a driver probing it, or a reset)")

// heldAttrs are the attributes the kernel shows only under the device's
// lock (usb_lock_device_interruptible in drivers/usb/core/sysfs.c): a read
// of them waits while a driver probes an interface of the device, which
// can take seconds (a control message's 5 s timeout, a firmware load),
// and the lock of a hub is held while a child of it is enumerated and
// probed.
var heldAttrs = [...]string{"serial", "manufacturer", "product", "bConfigurationValue", "bNumInterfaces"}

// OnlyBusy says whether err is ErrBusy and nothing else: each error it
// joins (errors.Join) is ErrBusy, wrapped or not. Such a failure is the
// kernel still at the device, which the pass after Unlocked finishes; one
// with any other error in it is a failure.
func OnlyBusy(err error) bool {
	if err == nil {
		return false
	}
	if err == ErrBusy {
		return true
	}
	switch e := err.(type) {
	case interface{ Unwrap() []error }:
		errs := e.Unwrap()
		for _, c := range errs {
			if !OnlyBusy(c) {
				return false
			}
		}
		return len(errs) > 0
	case interface{ Unwrap() error }:
		return OnlyBusy(e.Unwrap())
	}
	return false
}

// A DeviceLocker takes a device's lock as the kernel takes it to show the
// attributes that need it. A fake kernel implements it beside Writer
// (WithWriter finds it there); the real kernel takes its lock itself.
type DeviceLocker interface {
	LockDevice(busid string) (unlock func())
}

// DefaultLockWait is how long the agent's reads wait for the kernel to let
// go of a device's lock before the device is taken for still probing:
// enough for a lock taken for an instant, far less than a driver's slow
// probe (seconds), which would hold up every other device behind it.
const DefaultLockWait = 100 * time.Millisecond

// DefaultProbeWait is how long the agent's writes that have a dom0 driver
// probe an interface (a bind, a drivers_probe) wait for the kernel before
// the device is taken for still probing: a driver's usual probe (tens of
// milliseconds, an audio or video device's some hundreds) is within it,
// a device that does not answer its driver is far beyond.
const DefaultProbeWait = 500 * time.Millisecond

// held is what device reads of a device under its lock and its parent's.
type held struct {
	vals       [len(heldAttrs)]string
	errs       [len(heldAttrs)]error
	parentHash string // the hub's descriptor hash; its strings need its lock
	parentErr  error
}

// readHeld reads the attributes of busid (open as dir) that need its
// device lock, then, unless parent is "", the hash of its parent hub,
// which needs the hub's. at, when set, is told whose lock it waits for.
func (f *FS) readHeld(dir attrDir, busid, parent string, at func(string)) (h held) {
	func() {
		defer f.lockDevice(busid)()
		for i, n := range heldAttrs {
			b, err := dir.read(n)
			h.vals[i], h.errs[i] = strings.TrimRight(string(b), "\n"), err
		}
	}()
	if parent != "" {
		if at != nil {
			at(parent)
		}
		defer f.lockDevice(parent)()
		h.parentHash, h.parentErr = f.hashDir(f.devPath(parent), nil)
	}
	return h
}

func (f *FS) lockDevice(busid string) (unlock func()) {
	if f.locker == nil {
		return func() {}
	}
	return f.locker.LockDevice(busid)
}

// held reads readHeld's attributes, waiting for the kernel's lock at most
// as long as WithLockWait says; ErrBusy after that.
func (f *FS) held(dir attrDir, busid, parent string) (held, error) {
	if f.waits == nil {
		return f.readHeld(dir, busid, parent, nil), nil
	}
	return f.waits.read(f, dir, busid, parent)
}

// lockWaits are an FS's reads that wait for a device's lock with a
// deadline, and the devices whose read is still blocked in the kernel.
type lockWaits struct {
	d       time.Duration // for a read
	probe   time.Duration // for a write a driver's probe runs in
	mu      sync.Mutex
	blocked map[string]bool      // busid -> its read still waits for the kernel; guarded by mu
	late    map[string]lateWrite // intf -> how its last probe write ended, after the wait; guarded by mu
	// running are the probe writes still in the kernel after their wait,
	// by interface: one the device's leaving (ForgetLate) or another
	// write of the interface overtook is marked so, and its ending is
	// not kept. Guarded by mu.
	running map[string]*inflight
	freed   map[string]bool // busids whose blocked read ended, not yet taken; guarded by mu
	wake    chan struct{}   // a token when freed gains a busid
	// hubs are the hashes of the hubs read, by busid: a hub's lock is
	// held through every plug, reset and probe behind it, and its hash
	// changes only with the hub (hubHash). Guarded by mu.
	hubs map[string]hubHash
}

// A hubHash is a hub's hash with what tells that hub from the next one at
// its busid: its directory's identity. Its address would not (a root hub's
// is always 1, and a new controller may take an old one's bus number);
// sysfs makes a new device's directory anew, with a new inode.
type hubHash struct {
	dir  os.FileInfo
	hash string
}

// WithLockWait returns a copy of f whose reads of a device wait for the
// kernel's device lock at most d (> 0), then fail with ErrBusy: one device
// a driver probes for seconds does not stall the reader of every other.
// The read goes on in the background until the kernel answers (no system
// call can be called back: a driver that never ends its probe keeps a
// thread and a descriptor for as long); while it does, the device reads
// as busy at once, and when it ends the device's busid is given by
// Unlocked. Its writes that have a dom0 driver probe an interface (Bind
// to a driver other than usbback, Probe) wait DefaultProbeWait (d if
// longer) and go on in the same way. The copy keeps the hashes of the
// hubs it read, each for as long as the hub at that busid is the one it
// read (its directory).
func (f *FS) WithLockWait(d time.Duration) *FS {
	g := *f
	g.waits = &lockWaits{d: d, probe: max(d, DefaultProbeWait), blocked: map[string]bool{}, late: map[string]lateWrite{}, running: map[string]*inflight{}, freed: map[string]bool{}, wake: make(chan struct{}, 1), hubs: map[string]hubHash{}}
	return &g
}

// Unlocked is told (a token; it never closes) when a device that read as
// busy can be read again; TakeUnlocked says which. Nil without
// WithLockWait.
func (f *FS) Unlocked() <-chan struct{} {
	if f.waits == nil {
		return nil
	}
	return f.waits.wake
}

// TakeUnlocked gives the busids whose lock the kernel let go of since the
// last call, in no order.
func (f *FS) TakeUnlocked() []string {
	if f.waits == nil {
		return nil
	}
	w := f.waits
	w.mu.Lock()
	defer w.mu.Unlock()
	out := make([]string, 0, len(w.freed))
	for b := range w.freed {
		out = append(out, b)
	}
	clear(w.freed)
	return out
}

func busy(dir, lock string) error {
	return fmt.Errorf("usbsysfs: %s: %s: %w", dir, lock, ErrBusy)
}

// hub is the cached hash of parent, if it is still the hub it was hashed
// from; ok false to read it, and cur to keep beside the hash read.
func (w *lockWaits) hub(f *FS, parent string) (hash string, cur hubHash, ok bool) {
	if parent == "" {
		return "", cur, false
	}
	var err error
	if cur.dir, err = os.Stat(f.devPath(parent)); err != nil {
		return "", cur, false
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	c, ok := w.hubs[parent]
	return c.hash, cur, ok && os.SameFile(c.dir, cur.dir)
}

// read runs readHeld in a goroutine and waits for it at most w.d (the hub's
// hash it takes from w.hubs when it has it), with its own copy of the
// directory, so the caller's returning closes nothing the read uses.
func (w *lockWaits) read(f *FS, dir attrDir, busid, parent string) (held, error) {
	if w.isBlocked(busid) {
		return held{}, busy(dir.path, "its lock or its hub's")
	}
	cachedHash, hub, cached := w.hub(f, parent)
	readParent := parent
	if cached {
		readParent = ""
	}
	own := dir.dup()
	var h held
	var waitingFor string // guarded by w.mu
	if !w.run(busid, w.d, func() {
		h = f.readHeld(own, busid, readParent, func(b string) {
			w.mu.Lock()
			waitingFor = b
			w.mu.Unlock()
		})
		own.close()
	}) {
		lock := "its lock"
		w.mu.Lock()
		if waitingFor != "" {
			lock = "the lock of its hub " + waitingFor
		}
		w.mu.Unlock()
		return held{}, busy(dir.path, lock)
	}
	if cached {
		h.parentHash = cachedHash
	} else if parent != "" && h.parentErr == nil {
		w.mu.Lock()
		hub.hash = h.parentHash
		w.hubs[parent] = hub
		w.mu.Unlock()
	}
	return h, nil
}

// write runs intf's write to path that has a driver probe it (a bind, a
// drivers_probe) in a goroutine and waits for it at most w.probe: the
// kernel runs the probe inside the write, under the device's lock, and a
// device that answers nothing makes it last 5 s per control message.
//
// One that ended after the wait with an error is kept, and the next write
// of intf, if it is the same, returns that error instead of writing
// again: a caller whose write went on without it hears how it ended, and
// goes on to the next interface rather than trying the one that fails,
// slowly, forever.
func (w *lockWaits) write(busid, intf, path string, fn func() error) error {
	if late, ok := w.takeLate(intf); ok && late.path == path {
		return fmt.Errorf("the kernel ended the last one so, after the wait: %w", unwrapPath(late.err))
	}
	if w.isBlocked(busid) {
		return fmt.Errorf("the kernel holds it (a driver's probe or a reset): %w", ErrBusy)
	}
	var err error
	this := &inflight{}
	w.mu.Lock()
	w.overtake(intf)
	w.running[intf] = this
	w.mu.Unlock()
	if !w.run(busid, w.probe, func() {
		err = fn()
		w.mu.Lock()
		defer w.mu.Unlock()
		if w.running[intf] == this {
			delete(w.running, intf)
		}
		if err != nil && !this.overtaken {
			w.late[intf] = lateWrite{path, err} // told to the next write of intf, if it ended late
		}
	}) {
		return fmt.Errorf("the driver's probe goes on in the kernel: %w", ErrBusy)
	}
	w.takeLate(intf) // it ended in time: told now
	return err
}

// An inflight is a probe write that may still be in the kernel.
type inflight struct {
	overtaken bool // its ending tells nothing any more; guarded by mu
}

// A lateWrite is how a probe write that ended after the wait ended.
type lateWrite struct {
	path string
	err  error
}

// takeLate takes what intf's last probe write left to tell: it answers
// the very next write of intf alone, and only the same write (after
// another, of another driver, an admin's or xl's move, the interface is
// in another state than the one it failed in).
func (w *lockWaits) takeLate(intf string) (lateWrite, bool) {
	w.mu.Lock()
	defer w.mu.Unlock()
	late, ok := w.late[intf]
	delete(w.late, intf)
	return late, ok
}

// overtake marks intf's probe write still in the kernel, if any, as one
// whose ending tells nothing: another write of intf came after it. Call
// it with mu held.
func (w *lockWaits) overtake(intf string) {
	if r := w.running[intf]; r != nil {
		r.overtaken = true
		delete(w.running, intf)
	}
}

// forgetLate is takeLate for a write that is no probe write (an unbind, a
// bind to usbback).
func (f *FS) forgetLate(intf string) {
	if w := f.waits; w != nil {
		w.takeLate(intf)
		w.mu.Lock()
		w.overtake(intf)
		w.mu.Unlock()
	}
}

// ForgetLate drops what busid's writes that ended late left to tell: the
// device left, and the next at its busid is another.
func (f *FS) ForgetLate(busid string) {
	if f.waits == nil {
		return
	}
	w := f.waits
	w.mu.Lock()
	defer w.mu.Unlock()
	for intf := range w.late {
		if strings.HasPrefix(intf, busid+":") {
			delete(w.late, intf)
		}
	}
	// A write still in the kernel ends for the device that left.
	for intf := range w.running {
		if strings.HasPrefix(intf, busid+":") {
			w.overtake(intf)
		}
	}
}

func (w *lockWaits) isBlocked(busid string) bool {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.blocked[busid]
}

// run runs fn in a goroutine and waits for it at most d. It says false
// when fn still runs: busid then reads as busy until fn ends, and Unlocked
// says so then; what fn sets is the caller's only when run says true. The
// goroutine belongs to w: it ends when the kernel answers (a system call
// blocked on a kernel lock cannot be stopped).
func (w *lockWaits) run(busid string, d time.Duration, fn func()) bool {
	done := make(chan struct{})
	go func() {
		fn()
		close(done)
		w.mu.Lock()
		late := w.blocked[busid]
		if late {
			delete(w.blocked, busid)
			w.freed[busid] = true
		}
		w.mu.Unlock()
		if late {
			select {
			case w.wake <- struct{}{}:
			default:
			}
		}
	}()
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-done:
		return true
	case <-t.C:
		w.mu.Lock()
		defer w.mu.Unlock()
		select {
		case <-done: // it ended as the timer fired
			return true
		default:
			w.blocked[busid] = true
			return false
		}
	}
}
