package agent_test

import (
	"testing"

	"github.com/usbhotplugd/usbhotplugd/internal/agent"
	"github.com/usbhotplugd/usbhotplugd/internal/fakekernel"
	"github.com/usbhotplugd/usbhotplugd/internal/uevent"
	"github.com/usbhotplugd/usbhotplugd/internal/xenstore/xenstoretest"
)

// A device pulled out and plugged back before a pass saw it gone (its
// remove and add behind one pass, or lost) was plugged after its twins:
// under duplicates = "first" the twin plugged before it goes first now.
func TestAgentReplugSeenAtOncePlugsLast(t *testing.T) {
	xenstoretest.ForEach(t, func(t *testing.T, s xenstoretest.Store) {
		e := newEnv(t, s)
		e.run(`
[[rule]]
name = "badge"
action = "attach"
match = { id = "0c27:3bfa" }
target = { domain = "lobby" }
duplicates = "first"
`, false)
		st := map[string]agent.Audit{}
		for _, d := range e.status.Load().Devices {
			st[d.BusID] = d
		}
		if st["1-1.2"].Action != agent.ActPending || st["1-1.3"].Action != agent.ActRefused {
			t.Fatalf("at the start: 1-1.2 %s, 1-1.3 %s; want 1-1.2 first", st["1-1.2"].Action, st["1-1.3"].Action)
		}
		if err := e.kernel.Unplug("1-1.2"); err != nil {
			t.Fatal(err)
		}
		if err := e.kernel.Plug(fakekernel.Dev{BusID: "1-1.2", DevNum: 20, Vendor: "0c27", Product: "3bfa", Class: "00",
			Interfaces: []fakekernel.Intf{{Class: "03", SubClass: "01", Protocol: "01", Driver: "usbhid"}}}); err != nil {
			t.Fatal(err)
		}
		e.a.Handle(e.ctx, uevent.Message{Overrun: true})
		e.settle()
		for _, d := range e.status.Load().Devices {
			st[d.BusID] = d
		}
		if st["1-1.3"].Action != agent.ActPending || st["1-1.2"].Action != agent.ActRefused {
			t.Errorf("after 1-1.2 was plugged again: 1-1.2 %s (%s), 1-1.3 %s (%s); want 1-1.3 first",
				st["1-1.2"].Action, st["1-1.2"].Reason, st["1-1.3"].Action, st["1-1.3"].Reason)
		}
	})
}
