package assign_test

import (
	"context"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/usbhotplugd/usbhotplugd/internal/assign"
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
