package assign_test

import (
	"context"
	"errors"
	"math"
	"strings"
	"testing"

	"github.com/usbhotplugd/usbhotplugd/internal/assign"
	"github.com/usbhotplugd/usbhotplugd/internal/xenstore/xenstoretest"
	"github.com/usbhotplugd/usbhotplugd/policy"
)

// A domain's twelfth controller gets devid 11 on every store, oxenstored
// included, whose listing puts "10" before "9" (there libxl's last name
// plus one is taken, and libxl fails).
func TestDevIDPastTen(t *testing.T) {
	xenstoretest.ForEach(t, func(t *testing.T, s xenstoretest.Store) {
		ctx := context.Background()
		e := newEnv(t, s, true)
		for want := range 12 {
			c, err := e.h.AddController(ctx, 1, policy.CtrlSpec{Ports: 1}, false)
			if err != nil {
				t.Fatalf("controller %d: %v", want, err)
			}
			if c.DevID != want {
				t.Fatalf("controller %d got devid %d", want, c.DevID)
			}
		}
	})
}

// A devid name in /libxl too large for libxl's devid (a C int), as an
// admin's xenstore-write can make it, is no devid: the next controller
// is not given a devid past it (one that wraps negative, or that libxl
// cannot name), and nothing is written outside the controllers' paths.
func TestDevIDNeverOverflows(t *testing.T) {
	for _, big := range []string{"2147483647", "9223372036854775807"} {
		t.Run(big, func(t *testing.T) {
			xenstoretest.ForEach(t, func(t *testing.T, s xenstoretest.Store) {
				ctx := context.Background()
				e := newEnv(t, s, true)
				if err := e.xs.Write(ctx, "/libxl/1/device/vusb/"+big+"/type", []byte("pv")); err != nil {
					t.Fatal(err)
				}
				c, err := e.h.AddController(ctx, 1, policy.CtrlSpec{Ports: 1}, false)
				if err == nil && (c.DevID < 0 || c.DevID >= math.MaxInt32) {
					t.Errorf("added controller %d", c.DevID)
				}
				if err != nil && !errors.Is(err, assign.ErrBadStore) {
					t.Errorf("add: %v", err)
				}
				if got := e.dump(t); strings.Contains(got, "vusb/-") || strings.Contains(got, "vusb/1/2147483648") {
					t.Errorf("tree:\n%s", got)
				}
			})
		})
	}
}
