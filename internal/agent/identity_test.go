package agent_test

import (
	"strings"
	"testing"

	"github.com/usbhotplugd/usbhotplugd/internal/xenstore/xenstoretest"
)

// A rule naming a socket by its port path attaches what is plugged there;
// the audit record names the socket for good.
func TestAgentMatchesPortPath(t *testing.T) {
	xenstoretest.ForEach(t, func(t *testing.T, s xenstoretest.Store) {
		e := newEnv(t, s)
		e.run(`
[[rule]]
name = "front-socket"
action = "attach"
match = { port_path = "pci-0000:00:14.0-usbv2-0:2" }
target = { domain = "kiosk" }
`, false)
		if a, ok := e.at("1-2"); !ok || a.Domid != e.doms["kiosk"].ID {
			t.Fatalf("audio not attached by port path: %+v %v\n%s", a, ok, e.logText())
		}
		if _, ok := e.at("1-3"); ok {
			t.Error("storage attached")
		}
		if log := e.logText(); !strings.Contains(log, `"busid":"1-2","id":"0d8c:0014","trigger":"start","action":"attached","port_path":"pci-0000:00:14.0-usb-0:2"`) {
			t.Errorf("the audit record lacks the port path:\n%s", log)
		}
	})
}
