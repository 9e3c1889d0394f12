package assign_test

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/usbhotplugd/usbhotplugd/internal/assign"
	"github.com/usbhotplugd/usbhotplugd/internal/sim"
	"github.com/usbhotplugd/usbhotplugd/internal/xenstore"
	"github.com/usbhotplugd/usbhotplugd/internal/xenstore/xenstoretest"
	"github.com/usbhotplugd/usbhotplugd/policy"
)

// What a guest can write is its own tree under /local/domain/<domid>,
// its frontends above all. These tests play such a guest, over its own
// connection (a ring, for the real daemons), with what xenstore lets it do.

// proxied is a Host like e's whose connection goes through a proxy that
// calls before(h, payload) ahead of passing each request on.
func proxied(t *testing.T, s xenstoretest.Store, e *env, before func(h xenstore.Header, payload []byte)) *assign.Host {
	t.Helper()
	sock := xenstoretest.Proxy(t, s.SocketPath(), func(h xenstore.Header, p []byte) string {
		before(h, p)
		return ""
	})
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	xs, err := xenstore.DialPath(ctx, sock)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { xs.Close() })
	return &assign.Host{XS: xs, Sys: e.h.Sys, InitTimeout: e.h.InitTimeout, DestroyTimeout: e.h.DestroyTimeout, Warn: e.h.Warn}
}

func isCommit(h xenstore.Header, p []byte) bool {
	return h.Type == xenstore.TypeTransactionEnd && string(p) == "T\x00"
}

// A guest that writes its frontend's state without pause gets a write in
// between every transaction's start and its commit; the C xenstored then
// fails each commit that removes the frontend. usbctrl-detach still
// removes the controller, with or without a backend that answers (the
// forced round removes the frontend in a transaction too).
func TestGuestWritingItsFrontendCannotKeepItsController(t *testing.T) {
	for _, backend := range []bool{true, false} {
		t.Run(map[bool]string{true: "backend", false: "no-backend"}[backend], func(t *testing.T) {
			xenstoretest.ForEach(t, func(t *testing.T, s xenstoretest.Store) {
				ctx := context.Background()
				e := newEnv(t, s, !backend)
				e.h.DestroyTimeout = 50 * time.Millisecond
				if _, err := e.h.AddController(ctx, 1, policy.CtrlSpec{Ports: 2}, backend); err != nil {
					t.Fatal(err)
				}
				e.idle(t)
				guest := s.Guest(t, 1)
				var wrote atomic.Int64
				h := proxied(t, s, e, func(hd xenstore.Header, p []byte) {
					if isCommit(hd, p) {
						v := strconv.Itoa(int(wrote.Load()%2) + 4)
						if guest.Write(ctx, "/local/domain/1/device/vusb/0/state", []byte(v)) == nil {
							wrote.Add(1)
						}
					}
				})
				err := h.RemoveController(ctx, 1, 0)
				if backend && err != nil || !backend && err != nil && !strings.Contains(err.Error(), "removed, but its backend never closed") {
					t.Fatalf("remove (the guest wrote %d times): %v", wrote.Load(), err)
				}
				if wrote.Load() == 0 {
					t.Fatal("the guest never wrote")
				}
				e.idle(t)
				if got := e.dump(t); got != e.initial {
					t.Fatalf("tree after the removal:\n%s", got)
				}
			})
		})
	}
}

// The nodes the project writes keep libxl's permissions, as the guest
// sees them: it reads its backend and may write only its frontend; it
// cannot touch /libxl, its ports, its name or another guest's devices,
// nor add a frontend of its own; the other guest sees none of it.
func TestGuestSeesLibxlsPermissions(t *testing.T) {
	xenstoretest.ForEach(t, func(t *testing.T, s xenstoretest.Store) {
		ctx, e := context.Background(), pvEnv(t, s)
		if _, err := e.h.Attach(ctx, 1, dev("1-1.6")); err != nil {
			t.Fatal(err)
		}
		e.idle(t)
		const (
			fp = "/local/domain/1/device/vusb/0"
			bp = "/local/domain/0/backend/vusb/1/0"
			lp = "/libxl/1/device/vusb/0"
		)
		g, other := s.Guest(t, 1), s.Guest(t, 2)
		for _, p := range []string{fp + "/backend", fp + "/state", bp + "/state", bp + "/port/1", bp + "/num-ports", bp + "/frontend"} {
			if _, err := g.Read(ctx, p); err != nil {
				t.Errorf("the guest cannot read %s: %v", p, err)
			}
		}
		for _, p := range []string{fp + "/state", fp + "/urb-ring-ref", fp + "/new/deep"} {
			if err := g.Write(ctx, p, []byte("1")); err != nil {
				t.Errorf("the guest cannot write its frontend's %s: %v", p, err)
			}
		}
		for _, p := range []string{bp + "/port/1", bp + "/port/3", bp + "/state", bp + "/num-ports", bp + "/new", lp + "/backend", lp + "/type",
			"/libxl/usbback/1-1_6/1-1_6@1_0/driver_path", "/libxl/1/device/vusb/1/type", "/local/domain/1/name", "/local/domain/1/device/vusb/1/backend",
			"/local/domain/0/backend/vusb/1/1/port/1", "/vm/" + sim.KioskDomain.UUID + "/name"} {
			was, existed := e.read(t, p)
			if err := g.Write(ctx, p, []byte("1-9")); !errors.Is(err, syscall.EACCES) {
				t.Errorf("the guest writes %s: %v", p, err)
			}
			// Removing a node that is not there is no change: oxenstored
			// and the embedded store say OK to it.
			g.Rm(ctx, p)
			if now, exists := e.read(t, p); now != was || exists != existed {
				t.Errorf("the guest changed %s from %q (%v) to %q (%v)", p, was, existed, now, exists)
			}
		}
		if err := g.SetPerms(ctx, bp, xenstore.Perms{{Access: xenstore.AccessBoth, Domid: 1}}); err == nil {
			t.Errorf("the guest took its backend")
		}
		// Its frontend is its own, but it cannot give it away.
		if err := g.SetPerms(ctx, fp, xenstore.Perms{{Access: xenstore.AccessNone, Domid: 0}}); err == nil {
			t.Errorf("the guest gave its frontend to dom0")
		}
		for _, p := range []string{fp + "/state", bp + "/port/1", lp + "/backend"} {
			if _, err := other.Read(ctx, p); !errors.Is(err, syscall.EACCES) {
				t.Errorf("another guest reads %s: %v", p, err)
			}
			if err := other.Write(ctx, p, []byte("x")); !errors.Is(err, syscall.EACCES) {
				t.Errorf("another guest writes %s: %v", p, err)
			}
		}
		if v, _ := e.read(t, bp+"/port/1"); v != "1-1.6" {
			t.Fatalf("port 1 holds %q", v)
		}
	})
}

// Whatever the guest writes in its frontend, and however much: usb-list
// shows a state that is not a XenbusState as -1 (as for a missing one),
// and the attach, detach and removal of its controller go on as usual,
// the nodes it made going with the frontend.
func TestGuestFrontendValues(t *testing.T) {
	xenstoretest.ForEach(t, func(t *testing.T, s xenstoretest.Store) {
		ctx, e := context.Background(), pvEnv(t, s)
		e.idle(t)
		const fp = "/local/domain/1/device/vusb/0"
		g := s.Guest(t, 1)
		state := func() int {
			t.Helper()
			l, err := e.h.List(ctx, 1)
			if err != nil || len(l) != 1 {
				t.Fatalf("list: %+v %v", l, err)
			}
			return l[0].State
		}
		for _, tc := range []struct {
			v    string
			want int
		}{
			{"4", 4}, {"-1", -1}, {"16", -1}, {"4\x00junk", -1}, {"99999999999999999999", -1},
			{strings.Repeat("9", 1500), -1}, {"", -1}, {" 4", -1}, {"0x4", -1}, {"\xff\xfe", -1}, {"3", 3},
		} {
			if err := g.Write(ctx, fp+"/state", []byte(tc.v)); err != nil {
				t.Fatalf("the guest writes %q: %v", tc.v, err)
			}
			if got := state(); got != tc.want {
				t.Errorf("state %q listed as %d, want %d", tc.v, got, tc.want)
			}
		}
		// As many nodes as its quota lets it make, below its frontend.
		made := 0
		for made < 2000 {
			var batch [][2]string
			for i := range 100 {
				batch = append(batch, [2]string{fmt.Sprintf("%s/junk/%d", fp, made+i), "x"})
			}
			if g.WriteMany(ctx, batch) != nil {
				break
			}
			made += len(batch)
		}
		t.Logf("the guest made %d nodes", made)
		if err := g.Rm(ctx, fp+"/state"); err != nil {
			t.Fatal(err)
		}
		if got := state(); got != -1 {
			t.Errorf("no state listed as %d", got)
		}
		// And its state flips all along, until its frontend is gone.
		var wg sync.WaitGroup
		wg.Go(func() {
			for i := 0; g.Write(ctx, fp+"/state", []byte(strconv.Itoa(i%7))) == nil; i++ {
			}
		})
		a, err := e.h.Attach(ctx, 1, dev("1-1.6"))
		if err != nil || a.Port != 1 {
			t.Fatalf("attach: %+v %v", a, err)
		}
		if err := e.h.Detach(ctx, 1, 0, 1); err != nil {
			t.Fatal(err)
		}
		if err := e.h.RemoveController(ctx, 1, 0); err != nil {
			t.Fatal(err)
		}
		wg.Wait()
		e.idle(t)
		if got := strings.Replace(e.dump(t), "/libxl/usbback = \"\"   (n0)\n", "", 1); got != e.initial {
			t.Fatalf("tree after the removal:\n%s", got)
		}
	})
}
