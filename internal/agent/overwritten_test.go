package agent_test

import (
	"fmt"
	"testing"

	"github.com/usbhotplugd/usbhotplugd/internal/agent"
	"github.com/usbhotplugd/usbhotplugd/internal/xenstore/xenstoretest"
)

const keyboardsPolicy = testPolicy + `
[[rule]]
name = "keyboards"
action = "attach"
match = { id = "1234:0001" }
target = { domain = "kiosk" }
duplicates = "all"
`

// xl picks its port before its transaction and writes its device there
// even when another attach took that port meanwhile: the agent's device,
// written over, is found at no port with its interfaces in usbback, and
// goes back to its guest at another port (nobody detached it: xl's detach
// gives a device back to its dom0 drivers). The agent hears of it only
// through the pass of xl's device (no store watches here): a pass whose
// read of every port finds a port changed looks at the device that left
// it.
func TestAgentGetsBackAPortXLWroteOver(t *testing.T) {
	xenstoretest.ForEach(t, func(t *testing.T, s xenstoretest.Store) {
		e := newEnv(t, s)
		e.noWatches = true
		orig := e.original()
		e.run(keyboardsPolicy, false)
		e.hearKernel()
		if err := e.kernel.Plug(keyboard("1-6", "0001")); err != nil {
			t.Fatal(err)
		}
		first := e.await("1-6", agent.ActAttached)
		kiosk := e.doms["kiosk"].ID
		// xl's attach of 1-1.6, to the port it found free before the
		// agent's attach: its port writes, its driver record, its
		// interface moved to usbback.
		for _, p := range []string{
			fmt.Sprintf("/local/domain/0/backend/vusb/%d/%d/port/%d", kiosk, first.Ctrl, first.Port),
			fmt.Sprintf("/libxl/%d/device/vusb/%d/port/%d", kiosk, first.Ctrl, first.Port),
		} {
			if err := e.xs.Write(e.ctx, p, []byte("1-1.6")); err != nil {
				t.Fatal(err)
			}
		}
		if err := e.xs.Write(e.ctx, "/libxl/usbback/1-1_6/1-1_6@1_0/driver_path", []byte("/sys/bus/usb/drivers/usbhid")); err != nil {
			t.Fatal(err)
		}
		for _, w := range [][2]string{{"bus/usb/drivers/usbhid/unbind", "1-1.6:1.0"}, {"bus/usb/drivers/usbback/bind", "1-1.6:1.0"}} {
			if err := e.kernel.WriteAttr(e.root+"/"+w[0], []byte(w[1])); err != nil {
				t.Fatal(err)
			}
		}
		again := e.await("1-6", agent.ActAttached)
		if again.Domid != int(kiosk) || again.Ctrl == first.Ctrl && again.Port == first.Port {
			t.Fatalf("1-6 attached again at %d:%d:%d, want kiosk at another port than %d:%d\n%s", again.Domid, again.Ctrl, again.Port, first.Ctrl, first.Port, e.logText())
		}
		e.settle()
		x, ok := e.at("1-1.6")
		if !ok || x.Controller != first.Ctrl || x.Port != first.Port {
			t.Errorf("xl's 1-1.6 is at %+v (%v), want where xl put it", x, ok)
		}
		for _, bad := range e.checkConverged(orig, nil, map[string]uint32{"1-2": kiosk, "1-4": e.doms["desk"].ID, "1-5": e.doms["desk"].ID, "1-6": kiosk, "1-1.6": kiosk}) {
			if bad != "1-1.6 has no ownership record" {
				t.Error(bad)
			}
		}
	})
}
