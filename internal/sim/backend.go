package sim

import (
	"context"
	"errors"
	"fmt"
	"strconv"

	"sync/atomic"
	"syscall"
	"time"

	"github.com/usbhotplugd/usbhotplugd/internal/xenstore"
)

// Backends simulates, over xenstore, the PVUSB drivers a real host would
// run: usbback (or QEMU's qusb backend) in dom0 and xen-hcd in each guest.
//
//   - backend state 1 with online=1 → 2 (InitWait) once num-ports and
//     usb-ver are valid, as usbback's probe does;
//   - backend 2 with frontend 1 → the frontend writes its ring references
//     and event channel, then frontend 3, backend 4, frontend 4;
//   - backend 5 (libxl closing it) → frontend 6, backend 6.
type Backends struct {
	XS *xenstore.Conn // a dom0 connection of its own

	// Delay is waited before each step: a slow backend.
	Delay time.Duration
	// FailProbe makes the backend refuse every controller: state 6 at
	// probe instead of 2.
	FailProbe bool
	// NoFrontend leaves guests without xen-hcd: backends stay at 2.
	NoFrontend bool

	// hold, while set (Hold), keeps the guests' frontends from
	// connecting, as a guest whose xen-hcd has not reacted yet: backends
	// stay at 2 until Release. libxl waits for exactly 2 when it adds a
	// controller, and times out if a frontend took the backend past it
	// before libxl read it.
	hold atomic.Bool
	wake chan struct{}
}

// Hold keeps the guests' frontends from connecting until Release.
func (b *Backends) Hold() { b.hold.Store(true) }

// Release lets the frontends that Hold held connect.
func (b *Backends) Release() {
	b.hold.Store(false)
	select {
	case b.wake <- struct{}{}:
	default: // a look is due already
	}
}

const backendRoot = "/local/domain/0/backend"

// A Running simulation; Stop ends it.
type Running struct {
	cancel context.CancelFunc
	done   chan struct{}
	err    error
}

// Stop ends the simulation and waits for its goroutine.
func (r *Running) Stop() error {
	r.cancel()
	<-r.done
	if errors.Is(r.err, context.Canceled) {
		return nil
	}
	return r.err
}

// Start runs the simulation until Stop; the watch is registered before
// Start returns, so nothing written afterwards is missed.
func (b *Backends) Start(ctx context.Context) (*Running, error) {
	ctx, cancel := context.WithCancel(ctx)
	evs, err := b.XS.Watch(ctx, backendRoot, "usbhotplugd-sim")
	if err != nil {
		cancel()
		return nil, err
	}
	r := &Running{cancel: cancel, done: make(chan struct{})}
	b.wake = make(chan struct{}, 1)
	go func() {
		defer close(r.done)
		defer b.XS.Unwatch(context.WithoutCancel(ctx), backendRoot, "usbhotplugd-sim")
		for {
			select {
			case <-ctx.Done():
				r.err = ctx.Err()
				return
			case _, ok := <-evs:
				if !ok {
					r.err = xenstore.ErrDisconnected
					return
				}
			case <-b.wake:
			}
			// A conflict that outlasted every retry (a guest writing its
			// nodes without pause) is tried again, as the kernel's
			// xenbus_switch_state does: no event may come to wake it.
			err := b.step(ctx)
			for errors.Is(err, syscall.EAGAIN) && ctx.Err() == nil {
				err = b.step(ctx)
			}
			if err != nil && ctx.Err() == nil {
				r.err = err
				return
			}
		}
	}()
	return r, nil
}

type simCtrl struct {
	back, front          string
	bstate, fstate       int
	online, ver, ports   string
	domid                uint32
	hasFront, hasBackend bool
}

func readNode(ctx context.Context, xs *xenstore.Conn, p string) (string, bool) {
	v, err := xs.Read(ctx, p)
	if err != nil {
		return "", false
	}
	return string(v), true
}

// controllers reads every backend of both kinds.
func controllers(ctx context.Context, xs *xenstore.Conn) ([]simCtrl, error) {
	var out []simCtrl
	for _, kind := range []string{"vusb", "qusb"} {
		root := backendRoot + "/" + kind
		doms, err := xs.Directory(ctx, root)
		if errors.Is(err, syscall.ENOENT) {
			continue
		}
		if err != nil {
			return nil, err
		}
		for _, d := range doms {
			domid, err := strconv.ParseUint(d, 10, 16)
			if err != nil {
				continue
			}
			devs, err := xs.Directory(ctx, root+"/"+d)
			if err != nil {
				continue // removed meanwhile
			}
			for _, dev := range devs {
				c := simCtrl{back: root + "/" + d + "/" + dev, domid: uint32(domid)}
				var bs, fs string
				bs, c.hasBackend = readNode(ctx, xs, c.back+"/state")
				c.online, _ = readNode(ctx, xs, c.back+"/online")
				c.ver, _ = readNode(ctx, xs, c.back+"/usb-ver")
				c.ports, _ = readNode(ctx, xs, c.back+"/num-ports")
				c.front, _ = readNode(ctx, xs, c.back+"/frontend")
				if c.front != "" {
					fs, c.hasFront = readNode(ctx, xs, c.front+"/state")
				}
				c.bstate, _ = strconv.Atoi(bs)
				c.fstate, _ = strconv.Atoi(fs)
				if c.hasBackend {
					out = append(out, c)
				}
			}
		}
	}
	return out, nil
}

func (b *Backends) pause(ctx context.Context) error {
	if b.Delay <= 0 {
		return nil
	}
	t := time.NewTimer(b.Delay)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

func (b *Backends) step(ctx context.Context) error {
	cs, err := controllers(ctx, b.XS)
	if err != nil {
		return err
	}
	for _, c := range cs {
		switch {
		case c.bstate == 1 && c.online == "1":
			if err := b.pause(ctx); err != nil {
				return err
			}
			n, nerr := strconv.Atoi(c.ports)
			next := "2"
			if b.FailProbe || nerr != nil || n < 1 || n > 31 || (c.ver != "1" && c.ver != "2") {
				next = "6"
			}
			if err := b.move(ctx, c, 1, func(_ *xenstore.Tx, w writer) error { return w(c.back+"/state", next) }); err != nil {
				return err
			}
		case c.bstate == 2 && c.hasFront && c.fstate == 1 && !b.NoFrontend && !b.hold.Load():
			if err := b.pause(ctx); err != nil {
				return err
			}
			perms := xenstore.Perms{{Access: xenstore.AccessNone, Domid: c.domid}, {Access: xenstore.AccessRead, Domid: 0}}
			err := b.move(ctx, c, 2, func(tx *xenstore.Tx, w writer) error {
				for _, kv := range [][2]string{{"urb-ring-ref", "8"}, {"conn-ring-ref", "9"}, {"event-channel", "23"}} {
					if err := w(c.front+"/"+kv[0], kv[1]); err != nil {
						return err
					}
					if err := tx.SetPerms(ctx, c.front+"/"+kv[0], perms); err != nil {
						return err
					}
				}
				for _, kv := range [][2]string{{c.front + "/state", "3"}, {c.back + "/state", "4"}, {c.front + "/state", "4"}} {
					if err := w(kv[0], kv[1]); err != nil {
						return err
					}
				}
				return nil
			})
			if err != nil {
				return err
			}
		case c.bstate == 5:
			if err := b.pause(ctx); err != nil {
				return err
			}
			// The frontend (xen-hcd) closes in a transaction of its own,
			// as the guest's kernel writes its own state: a guest writing
			// its frontend meanwhile conflicts with that write alone, and
			// the backend's switch, which reads and writes only its own
			// state, goes on whatever the guest does.
			if c.hasFront {
				err := b.XS.Update(ctx, func(ctx context.Context, tx *xenstore.Tx) error {
					if _, err := tx.Read(ctx, c.front+"/state"); err != nil {
						if errors.Is(err, syscall.ENOENT) {
							return nil // gone with its frontend
						}
						return err
					}
					return tx.Write(ctx, c.front+"/state", []byte("6"))
				})
				if err != nil && !errors.Is(err, syscall.EAGAIN) {
					return err
				}
			}
			err := b.move(ctx, c, 5, func(_ *xenstore.Tx, w writer) error { return w(c.back+"/state", "6") })
			if err != nil {
				return err
			}
		}
	}
	return nil
}

type writer func(path, value string) error

// move makes one step of a backend in a transaction that first checks the
// backend is still in the state the step was chosen for: the toolstack
// may have moved it meanwhile (a close requested while the frontend was
// connecting), and a stale step would undo that, as a real backend's
// state switch never does.
func (b *Backends) move(ctx context.Context, c simCtrl, from int, step func(tx *xenstore.Tx, w writer) error) error {
	return b.XS.Update(ctx, func(ctx context.Context, tx *xenstore.Tx) error {
		v, err := tx.Read(ctx, c.back+"/state")
		if errors.Is(err, syscall.ENOENT) {
			return nil // removed meanwhile
		}
		if err != nil {
			return err
		}
		if st, _ := strconv.Atoi(string(v)); st != from {
			return nil // moved meanwhile: the next event decides again
		}
		return step(tx, func(p, v string) error { return tx.Write(ctx, p, []byte(v)) })
	})
}

// busy reports a controller the simulation still has to move.
func (b *Backends) busy(c simCtrl) bool {
	switch {
	case c.bstate == 1 && c.online == "1", c.bstate == 5:
		return true
	case c.bstate == 2 && c.hasFront && c.fstate == 1:
		return !b.NoFrontend
	case c.bstate == 4 && c.hasFront && c.fstate == 3:
		return true
	}
	return false
}

// WaitIdle waits until no controller has a step left to take.
func (b *Backends) WaitIdle(ctx context.Context) error {
	token := fmt.Sprintf("usbhotplugd-sim-idle-%p", b)
	evs, err := b.XS.Watch(ctx, backendRoot, token)
	if err != nil {
		return err
	}
	defer b.XS.Unwatch(context.WithoutCancel(ctx), backendRoot, token)
	for {
		cs, err := controllers(ctx, b.XS)
		if err != nil {
			return err
		}
		idle := true
		for _, c := range cs {
			if b.busy(c) {
				idle = false
			}
		}
		if idle {
			return nil
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-evs:
		}
	}
}

// SeedQEMU writes what a guest's QEMU announces when it offers the qusb
// backend.
func SeedQEMU(ctx context.Context, s Store, domid uint32) error {
	return s.Write(ctx, fmt.Sprintf("/local/domain/0/device-model/%d/backends/qusb", domid), nil)
}
