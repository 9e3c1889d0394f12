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
		// The backend answers behind a guest flooding the store: the wait
		// for it is libxl's, not the env's short one for tests of a
		// backend that never answers.
		e.h.InitTimeout, e.h.DestroyTimeout = 10*time.Second, 10*time.Second
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
		// And its state flips along, until its frontend is gone or it
		// has flipped 2000 times: a flood without end would starve the
		// simulated backend on a loaded machine, which the real one, in
		// the kernel, is not.
		var wg sync.WaitGroup
		wg.Go(func() {
			for i := 0; i < 2000 && g.Write(ctx, fp+"/state", []byte(strconv.Itoa(i%7))) == nil; i++ {
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

// destroy removes a domain's nodes as xl destroy does once its devices
// are gone: its home, its /libxl and /vm directories, its backends.
func destroy(t *testing.T, xs *xenstore.Conn, d sim.Domain) {
	t.Helper()
	ctx := context.Background()
	for _, p := range []string{fmt.Sprintf("/local/domain/%d", d.ID), fmt.Sprintf("/libxl/%d", d.ID), "/vm/" + d.UUID,
		fmt.Sprintf("/local/domain/0/backend/vusb/%d", d.ID), fmt.Sprintf("/local/domain/0/backend/qusb/%d", d.ID)} {
		if err := xs.Rm(ctx, p); err != nil && !errors.Is(err, syscall.ENOENT) {
			t.Error(err)
		}
	}
}

// writesController says a request writes a controller's nodes of domid.
func writesController(h xenstore.Header, p []byte, domid uint32) bool {
	if h.TxID == 0 || h.Type != xenstore.TypeWrite && h.Type != xenstore.TypeMkdir {
		return false
	}
	path, _, _ := strings.Cut(string(p), "\x00")
	return strings.HasPrefix(path, fmt.Sprintf("/libxl/%d/device/vusb/", domid))
}

// A domain destroyed while a controller is added to it, just before the
// transaction that writes the controller starts or just before it
// commits: the add fails with ErrNoDomain, and nothing of the controller
// is left under the dead domain's paths. A device attach that adds the
// controller it needs fails the same way.
func TestControllerNeverOutlivesItsDomain(t *testing.T) {
	for _, when := range []string{"start", "commit"} {
		for _, op := range []string{"pv", "devicemodel", "attach"} {
			t.Run(when+"/"+op, func(t *testing.T) {
				xenstoretest.ForEach(t, func(t *testing.T, s xenstoretest.Store) {
					ctx := context.Background()
					e := newEnv(t, s, true)
					killer := s.Dial(t)
					var once sync.Once
					starts := 0
					writing := map[uint32]bool{}
					var mu sync.Mutex
					h := proxied(t, s, e, func(hd xenstore.Header, p []byte) {
						mu.Lock()
						defer mu.Unlock()
						if writesController(hd, p, 1) {
							writing[hd.TxID] = true
						}
						if hd.Type == xenstore.TypeTransactionStart {
							starts++
						}
						// An attach's first transaction places its devices;
						// its second adds the controller they need.
						first := map[bool]int{true: 2, false: 1}[op == "attach"]
						switch {
						case when == "start" && hd.Type == xenstore.TypeTransactionStart && starts == first,
							when == "commit" && isCommit(hd, p) && writing[hd.TxID]:
							once.Do(func() { destroy(t, killer, sim.KioskDomain) })
						}
						if hd.Type == xenstore.TypeTransactionEnd {
							delete(writing, hd.TxID)
						}
					})
					var err error
					switch op {
					case "pv":
						_, err = h.AddController(ctx, 1, policy.CtrlSpec{Type: policy.TypePV, Ports: 2}, true)
					case "devicemodel":
						_, err = h.AddController(ctx, 1, policy.CtrlSpec{Type: policy.TypeDeviceModel}, true)
					case "attach":
						_, err = h.Attach(ctx, 1, dev("1-1.6"))
					}
					if !errors.Is(err, assign.ErrNoDomain) {
						t.Errorf("%s: %v, want ErrNoDomain", op, err)
					}
					for _, p := range []string{"/local/domain/1", "/libxl/1", "/local/domain/0/backend/vusb/1", "/libxl/usbback/1-1_6"} {
						if _, ok := e.read(t, p); ok {
							t.Errorf("%s is left", p)
						}
					}
				})
			})
		}
	}
}

// That look at the domain inside the transaction costs nothing when the
// guest writes below its home before every commit (its data, its control
// keys): on no store does it conflict, and the add commits at once.
func TestDomainLookInTheAddIgnoresItsGuest(t *testing.T) {
	xenstoretest.ForEach(t, func(t *testing.T, s xenstoretest.Store) {
		ctx := context.Background()
		e := newEnv(t, s, true)
		guest := s.Guest(t, 1)
		var starts, wrote atomic.Int64
		h := proxied(t, s, e, func(hd xenstore.Header, p []byte) {
			if hd.Type == xenstore.TypeTransactionStart {
				starts.Add(1)
			}
			if isCommit(hd, p) {
				for _, n := range []string{"/local/domain/1/data/junk", "/local/domain/1/control/shutdown"} {
					if guest.Write(ctx, n, []byte(strconv.Itoa(int(wrote.Add(1))))) != nil {
						t.Errorf("the guest cannot write %s", n)
					}
				}
			}
		})
		for _, typ := range []string{policy.TypePV, policy.TypeDeviceModel} {
			starts.Store(0)
			spec := policy.CtrlSpec{Type: typ}
			if typ == policy.TypePV {
				spec.Ports = 2
			}
			c, err := h.AddController(ctx, 1, spec, false)
			if typ == policy.TypeDeviceModel {
				// No QEMU here: refused after the commit.
				if !errors.Is(err, assign.ErrNotReady) {
					t.Fatalf("devicemodel: %v", err)
				}
			} else if err != nil || c.DevID != 0 {
				t.Fatalf("add: %+v %v", c, err)
			}
			if n := starts.Load(); n != 1 {
				t.Errorf("%s: %d transactions, want 1", typ, n)
			}
		}
	})
}

// A controller that xl usbctrl-detach removes between the listing of its
// domain's controllers and the reads of its nodes is gone, not an error:
// every domain's ports are still listed, and nothing is said skipped.
// One listed with no type that stays is skipped, alone.
func TestControllerRemovedWhileListed(t *testing.T) {
	xenstoretest.ForEach(t, func(t *testing.T, s xenstoretest.Store) {
		ctx, e := context.Background(), pvEnv(t, s)
		if _, err := e.h.AddController(ctx, 1, policy.CtrlSpec{Ports: 2}, true); err != nil {
			t.Fatal(err)
		}
		if _, err := e.h.Attach(ctx, 1, policy.DevSpec{BusID: "1-1.6", Controller: 0, Port: 1}); err != nil {
			t.Fatal(err)
		}
		e.idle(t)
		xl := s.Dial(t)
		var once sync.Once
		h := proxied(t, s, e, func(hd xenstore.Header, p []byte) {
			if hd.Type == xenstore.TypeRead && string(p) == "/libxl/1/device/vusb/1/type\x00" {
				once.Do(func() {
					if err := xl.Rm(ctx, "/libxl/1/device/vusb/1"); err != nil {
						t.Error(err)
					}
				})
			}
		})
		all, err := h.Assigned(ctx)
		if err != nil || len(all) != 1 || all[0].BusID != "1-1.6" {
			t.Fatalf("assigned: %+v %v", all, err)
		}
		if sk := h.Skipped(); len(sk) != 0 {
			t.Errorf("skipped: %+v", sk)
		}
		if err := xl.Write(ctx, "/libxl/1/device/vusb/7/frontend", []byte("/local/domain/1/device/vusb/7")); err != nil {
			t.Fatal(err)
		}
		all, err = h.Assigned(ctx)
		if err != nil || len(all) != 1 {
			t.Fatalf("assigned with a controller of no type: %+v %v", all, err)
		}
		if sk := h.Skipped(); len(sk) != 1 || sk[0].DevID != 7 || !errors.Is(sk[0].Err, assign.ErrBadStore) {
			t.Errorf("skipped: %+v", sk)
		}
	})
}

// A name under /libxl past any domid is no domain's: as a uint32 it
// would wrap onto a running domain's, whose ports would then be listed
// twice.
func TestLibxlNamePastAnyDomid(t *testing.T) {
	xenstoretest.ForEach(t, func(t *testing.T, s xenstoretest.Store) {
		ctx, e := context.Background(), pvEnv(t, s)
		if _, err := e.h.Attach(ctx, 1, dev("1-1.6")); err != nil {
			t.Fatal(err)
		}
		if err := e.xs.Write(ctx, "/libxl/4294967297/device/vusb/0/type", []byte("pv")); err != nil {
			t.Fatal(err)
		}
		all, err := e.h.Assigned(ctx)
		if err != nil || len(all) != 1 || all[0].Domid != 1 {
			t.Fatalf("assigned: %+v %v", all, err)
		}
	})
}
