package agent_test

import (
	"strings"
	"testing"

	"github.com/usbhotplugd/usbhotplugd/internal/agent"
	"github.com/usbhotplugd/usbhotplugd/internal/fakekernel"
	"github.com/usbhotplugd/usbhotplugd/internal/xenstore/xenstoretest"
)

// drain takes the audits of busid that arrived, after the agent is idle.
func (e *env) drain(busid string) []agent.Audit {
	e.t.Helper()
	e.settle()
	var out []agent.Audit
	for len(e.audits) > 0 {
		if r := <-e.audits; r.BusID == busid {
			out = append(out, r)
		}
	}
	return out
}

// A smart-card reader whose CCID interface no driver takes, on a device the
// agent never attached: the interface is left alone, at the first pass and
// at every rescan.
func TestAgentLeavesDriverlessInterfacesAlone(t *testing.T) {
	xenstoretest.ForEach(t, func(t *testing.T, s xenstoretest.Store) {
		e := newEnv(t, s)
		reader := fakekernel.Dev{BusID: "1-6", DevNum: 30, Vendor: "076b", Product: "3031", Class: "00",
			Interfaces: []fakekernel.Intf{{Class: "0b", SubClass: "00", Protocol: "00"}, {Class: "03", SubClass: "00", Protocol: "00", Driver: "usbhid"}}}
		if err := (&fakekernel.Builder{Root: e.root}).Add(reader).Err(); err != nil {
			t.Fatal(err)
		}
		e.run(testPolicy, false)
		for _, w := range e.kernel.Writes() {
			if strings.Contains(string(w.Data), "1-6:") || strings.Contains(w.Path, "1-6:") {
				t.Errorf("wrote %q to %s for an interface nobody unbound", w.Data, w.Path)
			}
		}
		if e.driverOf("1-6:1.0") != "" || e.driverOf("1-6:1.1") != "usbhid" {
			t.Errorf("drivers now %q, %q", e.driverOf("1-6:1.0"), e.driverOf("1-6:1.1"))
		}
		if strings.Contains(e.logText(), `"busid":"1-6","id":"076b:3031","trigger":"start","action":"released"`) {
			t.Error("the reader was said to be released")
		}
		if err := e.a.Rescan(e.ctx, "a test's rescan"); err != nil {
			t.Fatal(err)
		}
		if got := e.drain("1-6"); len(got) > 0 {
			t.Errorf("a rescan repeated %+v", got)
		}
		for _, w := range e.kernel.Writes() {
			if strings.Contains(string(w.Data), "1-6:") {
				t.Errorf("the rescan wrote %q to %s", w.Data, w.Path)
			}
		}
	})
}
