package agent_test

import (
	"strings"
	"testing"

	"github.com/usbhotplugd/usbhotplugd/internal/agent"
	"github.com/usbhotplugd/usbhotplugd/internal/sim"
	"github.com/usbhotplugd/usbhotplugd/internal/xenstore/xenstoretest"
)

// A guest renamed while a device is attached to it: the detach names the
// domain by its name now, and the name the device was attached under, so
// the admin sees why a rule's target lost it.
func TestAgentDetachFromARenamedGuestNamesIt(t *testing.T) {
	xenstoretest.ForEach(t, func(t *testing.T, s xenstoretest.Store) {
		e := newEnv(t, s)
		e.run(testPolicy, false)
		k := e.doms["kiosk"]
		if a, ok := e.at("1-2"); !ok || a.Domid != k.ID {
			t.Fatal("audio not attached to the kiosk")
		}
		if err := sim.Rename(e.ctx, e.xs, k, "kiosk-old"); err != nil {
			t.Fatal(err)
		}
		r := e.await("1-2", agent.ActDetached)
		if r.Domain != "kiosk-old" || r.Domid != int(k.ID) || !strings.Contains(r.Reason, "detached from kiosk-old (domid 1, named kiosk when the agent attached it) port 0:1") {
			t.Errorf("the detach: domain %q domid %d: %s", r.Domain, r.Domid, r.Reason)
		}
		if r := e.await("1-2", agent.ActPending); !strings.Contains(r.Reason, "kiosk is not running") {
			t.Errorf("after the detach: %s", r.Reason)
		}
	})
}
