package agent_test

import (
	"testing"

	"github.com/usbhotplugd/usbhotplugd/internal/uevent"
	"github.com/usbhotplugd/usbhotplugd/internal/xenstore/xenstoretest"
)

// A device the agent decided but gave no port (denied, pending), pulled
// out while the kernel's events were lost: the rescan the overrun
// triggers finds it gone, though nothing but the agent's memory names it.
func TestAgentRescanAfterOverrunFindsADecidedDeviceGone(t *testing.T) {
	xenstoretest.ForEach(t, func(t *testing.T, s xenstoretest.Store) {
		e := newEnv(t, s)
		e.run(testPolicy, false)
		for _, b := range []string{"1-3", "1-1.2"} { // denied; with dom0
			if !statusHas(e, b) {
				t.Fatalf("%s has no status before the unplug", b)
			}
			if err := e.kernel.Unplug(b); err != nil {
				t.Fatal(err)
			}
		}
		e.a.Handle(e.ctx, uevent.Message{Overrun: true})
		e.settle()
		gone := map[string]bool{}
		for len(e.audits) > 0 {
			if r := <-e.audits; r.Action == "gone" {
				gone[r.BusID] = true
			}
		}
		for _, b := range []string{"1-3", "1-1.2"} {
			if !gone[b] || statusHas(e, b) {
				t.Errorf("%s left: gone audit %v, still in the status %v", b, gone[b], statusHas(e, b))
			}
		}
	})
}

func statusHas(e *env, busid string) bool {
	st := e.status.Load()
	if st == nil {
		return false
	}
	for _, d := range st.Devices {
		if d.BusID == busid {
			return true
		}
	}
	return false
}
