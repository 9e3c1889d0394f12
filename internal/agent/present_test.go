package agent_test

import (
	"slices"
	"testing"

	"github.com/usbhotplugd/usbhotplugd/internal/agent"
	"github.com/usbhotplugd/usbhotplugd/internal/fakekernel"
	"github.com/usbhotplugd/usbhotplugd/internal/xenstore/xenstoretest"
)

const whenPolicy = `
[[rule]]
name = "boot-audio"
action = "attach"
match = { id = "0d8c:0014", when = "present" }
target = { domain = "kiosk" }

[[rule]]
name = "later-to-desk"
action = "attach"
match = { id = "1234:5678", when = "plugged" }
target = { domain = "desk" }
duplicates = "all"

[[rule]]
name = "at-boot-stays"
action = "deny"
match = { id = "1234:5678" }
`

// match.when: what was plugged at the agent's first start since dom0
// booted is "present", what came later "plugged"; restarting the agent
// changes neither, and plugging a device again makes it "plugged".
func TestAgentWhenPresentOrPlugged(t *testing.T) {
	xenstoretest.ForEach(t, func(t *testing.T, s xenstoretest.Store) {
		e := newEnv(t, s)
		bld := &fakekernel.Builder{Root: e.root}
		if err := bld.Add(benchDev("1-6", 1)).Err(); err != nil {
			t.Fatal(err)
		}
		e.run(whenPolicy, false)
		if a, ok := e.at("1-2"); !ok || a.Domid != e.doms["kiosk"].ID {
			t.Errorf("audio, present at the first start: %+v %v", a, ok)
		}
		if _, ok := e.at("1-6"); ok {
			t.Error("1-6, present at the first start, was attached by a rule for plugged devices")
		}
		// Plugged while the agent runs.
		if err := bld.Add(benchDev("1-7", 2)).Err(); err != nil {
			t.Fatal(err)
		}
		e.a.Handle(e.ctx, addEvent(t, "1-7"))
		if r := e.await("1-7", "attached"); r.Domain != "desk" || r.Rule != "later-to-desk" {
			t.Errorf("1-7 plugged later: %+v", r)
		}
		names, err := e.xs.Directory(e.ctx, agent.PresentRoot)
		if err != nil {
			t.Fatal(err)
		}
		if !slices.Contains(names, "1-2") || !slices.Contains(names, "1-6") || slices.Contains(names, "1-7") {
			t.Errorf("present records: %q", names)
		}

		// 1-6 unplugged and plugged again (another address) is plugged now.
		if err := e.kernel.Unplug("1-6"); err != nil {
			t.Fatal(err)
		}
		e.a.Handle(e.ctx, removeEvent(t, "1-6"))
		e.await("1-6", "gone")
		if err := bld.Add(benchDev("1-6", 3)).Err(); err != nil {
			t.Fatal(err)
		}
		e.a.Handle(e.ctx, addEvent(t, "1-6"))
		if r := e.await("1-6", "attached"); r.Domain != "desk" {
			t.Errorf("1-6 plugged again: %+v", r)
		}

		// A restart keeps each device's kind: nothing moves.
		e.stop()
		e.run(whenPolicy, false)
		for busid, dom := range map[string]string{"1-2": "kiosk", "1-6": "desk", "1-7": "desk"} {
			if a, ok := e.at(busid); !ok || a.Domid != e.doms[dom].ID {
				t.Errorf("after the restart %s: %+v %v, want at %s", busid, a, ok, dom)
			}
		}
	})
}
