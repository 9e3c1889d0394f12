package assign_test

import (
	"context"
	"testing"

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
