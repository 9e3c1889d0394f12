package agent_test

import (
	"fmt"
	"testing"

	"github.com/usbhotplugd/usbhotplugd/internal/xenstore/xenstoretest"
	"github.com/usbhotplugd/usbhotplugd/policy"
)

// A port naming a device that left while the agent was down is cleared at
// the start, and the device is in status no more than any other absent
// one: no later pass over its busid (no store watch here) is needed.
func TestStatusListsNoDeviceThatLeft(t *testing.T) {
	xenstoretest.ForEach(t, func(t *testing.T, s xenstoretest.Store) {
		e := newEnv(t, s)
		kiosk := e.doms["kiosk"].ID
		if _, err := e.h.Attach(e.ctx, kiosk, policy.DevSpec{BusID: "1-1.6", Controller: -1}); err != nil {
			t.Fatal(err)
		}
		a, _ := e.at("1-1.6")
		for _, p := range []string{"/local/domain/0/backend/vusb/%d/%d/port/%d", "/libxl/%d/device/vusb/%d/port/%d"} {
			if err := e.xs.Write(e.ctx, fmt.Sprintf(p, kiosk, a.Controller, a.Port+1), []byte("1-7")); err != nil {
				t.Fatal(err)
			}
		}
		e.noWatches = true
		e.run(testPolicy, false)
		if _, ok := e.at("1-7"); ok {
			t.Fatal("the port of 1-7 (gone) was not cleared")
		}
		if r, ok := statusOf(e, "1-7"); ok {
			t.Errorf("1-7 left the host, and status still lists it: %+v", r)
		}
	})
}
