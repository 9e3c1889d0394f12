package agent_test

import (
	"strings"
	"testing"

	"github.com/usbhotplugd/usbhotplugd/internal/agent"
	"github.com/usbhotplugd/usbhotplugd/internal/fakekernel"
	"github.com/usbhotplugd/usbhotplugd/internal/xenstore/xenstoretest"
	"github.com/usbhotplugd/usbhotplugd/policy"
)

// wroteFor lists the kernel's writes from the nth on that name intf.
func wroteFor(k *fakekernel.Kernel, n int, intf string) []fakekernel.Write {
	var out []fakekernel.Write
	for _, w := range k.Writes()[n:] {
		if strings.Contains(w.Path, intf) || strings.Contains(w.Data, intf) {
			out = append(out, w)
		}
	}
	return out
}

// An attach waiting in the batch was decided on the device its pass saw.
// When the busid is another device's before the batch is done (a quick
// swap, a mode switch: here a disk the policy denies), the new device's
// pass decides afresh: the first device's attach is not done on it.
func TestAgentBatchedAttachIsNotDoneOnTheNextDevice(t *testing.T) {
	xenstoretest.ForEach(t, func(t *testing.T, s xenstoretest.Store) {
		e := newEnv(t, s)
		e.noWatches = true
		e.run(slowPolicy, false)
		if err := (&fakekernel.Builder{Root: e.root}).Add(benchDev("1-6", 1)).Err(); err != nil {
			t.Fatal(err)
		}
		disk := fakekernel.Dev{BusID: "1-6", DevNum: 60, Vendor: "0781", Product: "5581", Class: "00", Serial: "DISK",
			Interfaces: []fakekernel.Intf{{Class: "08", SubClass: "06", Protocol: "50", Driver: "usb-storage"}}}
		swapped := make(chan int, 1)
		var passes []string
		e.a.BeforePass(func(busid string) {
			passes = append(passes, busid)
			switch len(passes) {
			case 1: // 1-6's first pass: 1-3 waits behind it, so its attach waits in the batch
				e.a.Handle(e.ctx, addEvent(t, "1-3"))
			case 2: // 1-3's: the stick is swapped for the disk meanwhile
				if err := e.kernel.Unplug("1-6"); err != nil {
					t.Error(err)
				}
				if err := (&fakekernel.Builder{Root: e.root}).Add(disk).Err(); err != nil {
					t.Error(err)
				}
				swapped <- len(e.kernel.Writes())
				e.a.Handle(e.ctx, removeEvent(t, "1-6"))
				e.a.Handle(e.ctx, addEvent(t, "1-6"))
			}
		})
		e.a.Handle(e.ctx, addEvent(t, "1-6"))
		r := e.await("1-6", agent.ActDenied)
		if r.Serial != "DISK" {
			t.Errorf("denied %s %q, want the disk", r.ID, r.Serial)
		}
		e.settle()
		if x, ok := e.at("1-6"); ok {
			t.Errorf("1-6 is at domain %d port %d:%d", x.Domid, x.Controller, x.Port)
		}
		for _, w := range wroteFor(e.kernel, <-swapped, "1-6:1.0") {
			t.Errorf("after the swap the agent wrote %q to %s", w.Data, w.Path)
		}
	})
}

// An attach waiting in the batch when the policy is reloaded is decided
// again by the new policy: a reload that denies the device never lets the
// old decision attach it, even for a moment.
func TestAgentBatchedAttachIsDecidedAgainAfterAReload(t *testing.T) {
	xenstoretest.ForEach(t, func(t *testing.T, s xenstoretest.Store) {
		e := newEnv(t, s)
		e.noWatches = true
		e.run(slowPolicy, false)
		deny, err := policy.Parse("test.toml", []byte(testPolicy+"[[rule]]\nname = \"no-sticks\"\naction = \"deny\"\nmatch = { id = \"1234:5678\" }\n"), nil)
		if err != nil {
			t.Fatal(err)
		}
		if err := (&fakekernel.Builder{Root: e.root}).Add(benchDev("1-6", 1)).Err(); err != nil {
			t.Fatal(err)
		}
		var passes int
		e.a.BeforePass(func(busid string) {
			switch passes++; passes {
			case 1: // 1-6's: 1-3 waits behind it, so its attach waits in the batch
				e.a.Handle(e.ctx, addEvent(t, "1-3"))
			case 2: // 1-3's: the admin reloads meanwhile
				e.a.Reload(deny)
			}
		})
		e.a.Handle(e.ctx, addEvent(t, "1-6"))
		r := e.await("1-6", agent.ActDenied)
		if r.Rule != "no-sticks" {
			t.Errorf("denied by %q", r.Rule)
		}
		e.settle()
		if x, ok := e.at("1-6"); ok {
			t.Errorf("1-6 is at domain %d port %d:%d", x.Domid, x.Controller, x.Port)
		}
		for _, w := range wroteFor(e.kernel, 0, "1-6:1.0") {
			t.Errorf("the agent wrote %q to %s", w.Data, w.Path)
		}
	})
}
