package agent_test

import (
	"sync"
	"testing"

	"github.com/usbhotplugd/usbhotplugd/internal/agent"
	"github.com/usbhotplugd/usbhotplugd/internal/fakekernel"
	"github.com/usbhotplugd/usbhotplugd/internal/xenstore/xenstoretest"
)

const slowPolicy = testPolicy + `
[[rule]]
name = "sticks"
action = "attach"
match = { id = "1234:5678" }
target = { domain = "kiosk" }
duplicates = "all"
`

// A device whose driver probes it for long holds the kernel's device lock
// all that time, and its serial cannot be read: the agent takes it for
// probing and goes on with the other devices (one worker blocked on it
// would attach nothing else, and starve the watchdog); it attaches it
// once the kernel lets go, with no other event to tell.
func TestAgentSlowProbeHoldsUpNoOtherDevice(t *testing.T) {
	xenstoretest.ForEach(t, func(t *testing.T, s xenstoretest.Store) {
		e := newEnv(t, s)
		e.noWatches = true // no rescan of their first events races the trigger asserted
		e.run(slowPolicy, false)
		release, err := fakekernel.HoldDevice(e.root, "1-6")
		if err != nil {
			t.Fatal(err)
		}
		defer release()
		if err := (&fakekernel.Builder{Root: e.root}).Add(benchDev("1-6", 1)).Add(benchDev("1-7", 2)).Err(); err != nil {
			t.Fatal(err)
		}
		e.a.Handle(e.ctx, addEvent(t, "1-6"))
		e.a.Handle(e.ctx, addEvent(t, "1-7"))
		if r := e.await("1-7", agent.ActAttached); r.Domain != "kiosk" {
			t.Errorf("1-7: %+v", r)
		}
		if _, ok := e.at("1-6"); ok {
			t.Fatal("1-6 attached while the kernel held it")
		}
		release()
		if r := e.await("1-6", agent.ActAttached); r.Domain != "kiosk" || r.Trigger != agent.TrigUnlocked {
			t.Errorf("1-6 once the kernel let go: %+v", r)
		}
	})
}

// A root hub's lock is held while a device on its ports is probed; its
// pass needs only its default, which needs no lock: with authorization
// before probe it is made inert all the same, with no failure, and the
// devices under it are attached once the kernel lets go.
func TestAgentRootHubHeldIsMadeInert(t *testing.T) {
	xenstoretest.ForEach(t, func(t *testing.T, s xenstoretest.Store) {
		e := newEnv(t, s)
		e.noWatches = true // no rescan of their first events races the trigger asserted
		release, err := fakekernel.HoldDevice(e.root, "usb1")
		if err != nil {
			t.Fatal(err)
		}
		defer release()
		var mu sync.Mutex
		var failed []agent.Audit
		e.onAudit = func(r agent.Audit) {
			if r.Action == agent.ActFailed {
				mu.Lock()
				failed = append(failed, r)
				mu.Unlock()
			}
		}
		e.run(authzPolicy, false)
		if got := e.rootDefault("usb1"); got != "0" {
			t.Fatalf("usb1's interface_authorized_default is %s while held, want 0", got)
		}
		release()
		if r := e.await("1-2", agent.ActAttached); r.Trigger != agent.TrigUnlocked {
			t.Errorf("1-2 once usb1 was let go: %+v", r)
		}
		mu.Lock()
		defer mu.Unlock()
		if len(failed) > 0 {
			t.Errorf("failures: %+v", failed)
		}
	})
}

// A device the kernel holds at the agent's first start (a slow probe at
// boot) is present all the same once it can be read: its pass while held
// names no plug, so a rule for later plugs does not take it.
func TestAgentHeldAtFirstStartIsPresent(t *testing.T) {
	xenstoretest.ForEach(t, func(t *testing.T, s xenstoretest.Store) {
		e := newEnv(t, s)
		if err := (&fakekernel.Builder{Root: e.root}).Add(benchDev("1-6", 1)).Err(); err != nil {
			t.Fatal(err)
		}
		release, err := fakekernel.HoldDevice(e.root, "1-6")
		if err != nil {
			t.Fatal(err)
		}
		defer release()
		e.run(whenPolicy, false)
		release()
		if r := e.await("1-6", agent.ActDenied); r.Rule != "at-boot-stays" {
			t.Errorf("1-6, present at the first start: %+v", r)
		}
	})
}
