package agent_test

import (
	"testing"

	"github.com/usbhotplugd/usbhotplugd/internal/agent"
	"github.com/usbhotplugd/usbhotplugd/internal/sim"
	"github.com/usbhotplugd/usbhotplugd/internal/xenstore/xenstoretest"
)

// A guest migrates from host A to host B, each with its own store and its
// own agent under the same policy, the simulated domains doing libxl's
// steps on both ends: B receives it as kiosk--incoming, A renames its copy
// kiosk--migratedaway, B renames its copy kiosk and unpauses it, A
// destroys its copy by force. A's device is given back to dom0 at once;
// B's device goes to the guest only once it is kiosk; neither agent gets
// in the migration's way.
func TestAgentsFollowAMigratingGuest(t *testing.T) {
	xenstoretest.ForEach(t, func(t *testing.T, s xenstoretest.Store) {
		a := newEnv(t, s)
		b := newEnv(t, xenstoretest.Start(t, s.Name()))
		a.run(testPolicy, false)
		b.run(testPolicy, false)
		src := a.doms["kiosk"]
		if x, ok := a.at("1-2"); !ok || x.Domid != src.ID {
			t.Fatalf("host A: the audio device is not at the kiosk before the migration: %+v", x)
		}
		// Host B has no kiosk yet: its audio device waits.
		if err := sim.ForceDestroy(b.ctx, b.xs, b.doms["kiosk"]); err != nil {
			t.Fatal(err)
		}
		b.await("1-2", agent.ActReleased)
		b.settle()

		// B: the receiving copy is created paused, as kiosk--incoming.
		dst := b.start("kiosk" + sim.IncomingSuffix)
		b.settle()
		if x, ok := b.at("1-2"); ok {
			t.Fatalf("host B attached to the guest still being received: %+v", x)
		}
		// A: the sent copy is renamed; the device stays where it is until
		// the copy is destroyed (the guest no longer runs there).
		if err := sim.Rename(a.ctx, a.xs, src, "kiosk"+sim.MigratedAwaySuffix); err != nil {
			t.Fatal(err)
		}
		a.settle()
		// B: the received copy takes the name and runs; the device follows
		// at once, without another domain event.
		if err := sim.Rename(b.ctx, b.xs, dst, "kiosk"); err != nil {
			t.Fatal(err)
		}
		if r := b.await("1-2", agent.ActAttached); r.Domid != int(dst.ID) || r.Domain != "kiosk" {
			t.Errorf("host B after the arrival: %+v", r)
		}
		// A: its copy is destroyed by force, as libxl does after a
		// migration; the device is given back to dom0's driver at once.
		if err := sim.ForceDestroy(a.ctx, a.xs, src); err != nil {
			t.Fatalf("the source's destroy failed (a device kept it?): %v", err)
		}
		a.await("1-2", agent.ActReleased)
		a.settle()
		b.settle()
		if x, ok := a.at("1-2"); ok {
			t.Errorf("host A: the audio device is still at a port: %+v", x)
		}
		for _, intf := range []string{"1-2:1.0", "1-2:1.3"} {
			if drv := a.driverOf(intf); drv == "usbback" || drv == "" {
				t.Errorf("host A: %s left with driver %q, not its dom0 driver", intf, drv)
			}
			if drv := b.driverOf(intf); drv != "usbback" {
				t.Errorf("host B: %s has driver %q, not usbback", intf, drv)
			}
		}
		if x, ok := b.at("1-2"); !ok || x.Domid != dst.ID {
			t.Errorf("host B: the audio device is not at the arrived guest: %+v", x)
		}
	})
}
