package assign_test

import (
	"context"
	"errors"
	"reflect"
	"testing"

	"github.com/usbhotplugd/usbhotplugd/internal/assign"
	"github.com/usbhotplugd/usbhotplugd/internal/xenstore/xenstoretest"
	"github.com/usbhotplugd/usbhotplugd/policy"
)

// DomainList finds what Domain and List find, in one round trip for a
// domid with no controller or libxl's usual one, and reads what it did
// not predict (a second controller, a domain's name) as Domain and List
// do.
func TestDomainList(t *testing.T) {
	xenstoretest.ForEach(t, func(t *testing.T, s xenstoretest.Store) {
		e := newEnv(t, s, false)
		ctx := context.Background()
		xs, cc := xenstoretest.DialCounting(t, s)
		h := &assign.Host{XS: xs, Sys: e.h.Sys}
		check := func(nameOrID string, maxTrips int) {
			t.Helper()
			wantD, err := e.h.Domain(ctx, nameOrID)
			if err != nil {
				t.Fatal(err)
			}
			wantL, err := e.h.List(ctx, wantD.ID)
			if err != nil {
				t.Fatal(err)
			}
			cc.Take()
			d, l, err := h.DomainList(ctx, nameOrID)
			if err != nil {
				t.Fatal(err)
			}
			if _, trips := cc.Take(); trips > maxTrips {
				t.Errorf("DomainList(%q): %d round trips, want at most %d", nameOrID, trips, maxTrips)
			}
			if d != wantD || !reflect.DeepEqual(l, wantL) {
				t.Errorf("DomainList(%q) = %+v, %+v; Domain and List found %+v, %+v", nameOrID, d, l, wantD, wantL)
			}
		}
		if _, err := e.h.AddController(ctx, 1, policy.CtrlSpec{Version: 2, Ports: 4}, true); err != nil {
			t.Fatal(err)
		}
		if _, err := e.h.Attach(ctx, 1, dev("1-2")); err != nil {
			t.Fatal(err)
		}
		e.idle(t)
		check("1", 1)
		check("kiosk", 3) // the name found in two, then the listing in one
		check("2", 1)     // no controller
		if _, err := e.h.AddController(ctx, 1, policy.CtrlSpec{Version: 2, Ports: 15}, true); err != nil {
			t.Fatal(err)
		}
		e.idle(t)
		check("1", 3) // the second controller read, then its ports

		if _, _, err := h.DomainList(ctx, "7"); !errors.Is(err, assign.ErrNoDomain) {
			t.Errorf("DomainList of no domain: %v, want ErrNoDomain", err)
		}
	})
}

// A command's attach after DomainAhead reads the domain's controllers
// inside its transaction in one round trip: fewer round trips than
// Domain and Attach on a new Host, with the same port.
func TestDomainAhead(t *testing.T) {
	xenstoretest.ForEach(t, func(t *testing.T, s xenstoretest.Store) {
		e := newEnv(t, s, false)
		ctx := context.Background()
		// One domain under /libxl: the snapshot reads no two domains side
		// by side, whose requests could share a round trip or not.
		if err := e.xs.Rm(ctx, "/libxl/2"); err != nil {
			t.Fatal(err)
		}
		if _, err := e.h.AddController(ctx, 1, policy.CtrlSpec{Version: 2, Ports: 4}, true); err != nil {
			t.Fatal(err)
		}
		attach := func(resolve func(h *assign.Host, ctx context.Context, nameOrID string) (assign.Domain, error), nameOrID string) (assign.Assignment, int) {
			t.Helper()
			xs, cc := xenstoretest.DialCounting(t, s)
			h := &assign.Host{XS: xs, Sys: e.h.Sys}
			d, err := resolve(h, ctx, nameOrID)
			if err != nil {
				t.Fatal(err)
			}
			a, err := h.Attach(ctx, d.ID, dev("1-2"))
			if err != nil {
				t.Fatal(err)
			}
			_, trips := cc.Take()
			e.idle(t)
			if err := e.h.Detach(ctx, 1, a.Controller, a.Port); err != nil {
				t.Fatal(err)
			}
			e.idle(t)
			return a, trips
		}
		for _, nameOrID := range []string{"1", "kiosk"} {
			plain, plainTrips := attach((*assign.Host).Domain, nameOrID)
			ahead, aheadTrips := attach((*assign.Host).DomainAhead, nameOrID)
			if ahead != plain {
				t.Errorf("%s: after DomainAhead the attach gave %+v, without it %+v", nameOrID, ahead, plain)
			}
			if aheadTrips > plainTrips-2 {
				t.Errorf("%s: DomainAhead and Attach: %d round trips; Domain and Attach: %d", nameOrID, aheadTrips, plainTrips)
			}
			t.Logf("%s: round trips: %d with DomainAhead, %d without", nameOrID, aheadTrips, plainTrips)
		}
	})
}

// A domid past the last a domain can have is no domain, not the domain
// it wraps to as a uint32 (4294967297 would be domain 1, as it is for xl).
func TestDomidPastTheLast(t *testing.T) {
	xenstoretest.ForEach(t, func(t *testing.T, s xenstoretest.Store) {
		e := newEnv(t, s, true)
		ctx := context.Background()
		for _, id := range []string{"4294967297", "4294967298", "32752", "9223372036854775807"} {
			if d, err := e.h.Domain(ctx, id); !errors.Is(err, assign.ErrNoDomain) {
				t.Errorf("Domain(%s): %+v %v", id, d, err)
			}
			if d, _, err := e.h.DomainList(ctx, id); !errors.Is(err, assign.ErrNoDomain) {
				t.Errorf("DomainList(%s): %+v %v", id, d, err)
			}
			if d, err := e.h.DomainAhead(ctx, id); !errors.Is(err, assign.ErrNoDomain) {
				t.Errorf("DomainAhead(%s): %+v %v", id, d, err)
			}
		}
		if d, err := e.h.Domain(ctx, "1"); err != nil || d.Name != "kiosk" {
			t.Errorf("Domain(1): %+v %v", d, err)
		}
	})
}
