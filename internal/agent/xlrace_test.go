package agent_test

import (
	"fmt"
	"io/fs"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/usbhotplugd/usbhotplugd/internal/agent"
	"github.com/usbhotplugd/usbhotplugd/internal/assign"
	"github.com/usbhotplugd/usbhotplugd/internal/fakekernel"
	"github.com/usbhotplugd/usbhotplugd/internal/usbsysfs"
	"github.com/usbhotplugd/usbhotplugd/internal/xenstore/xenstoretest"
)

// The race of the agent's attach with xl's, caught while the agent is still binding:
// xl chose the port before the agent's transaction and writes 1-1.6 over
// it while the agent binds 1-6 to usbback; usbback, whose rule for that
// port now names 1-1.6, refuses 1-6 (ENODEV) until the agent gives up;
// xl meanwhile binds 1-1.6 to usbback and reports success. The agent's
// rollback must not empty the port, which holds xl's device now (that would
// leave 1-1.6 in usbback at no port, given back to dom0: xl's attach
// silently undone), and 1-6 lost a race, not a refusal of usbback's: it is
// tried again, and attached at another port.
func TestAgentRollbackKeepsThePortXLWroteOver(t *testing.T) {
	xenstoretest.ForEach(t, func(t *testing.T, s xenstoretest.Store) {
		e := newEnv(t, s)
		var armed atomic.Bool
		var over atomic.Pointer[assign.Assignment]
		xlDone := make(chan error, 1)
		e.wrapKernel = func(kw usbsysfs.Writer) usbsysfs.Writer {
			k := kw.(*fakekernel.Kernel)
			k.Fail = func(w fakekernel.Write) error {
				if w.Path != "bus/usb/drivers/usbback/bind" || !strings.HasPrefix(w.Data, "1-6:") || !armed.Load() {
					return nil
				}
				if over.Load() != nil {
					// usbback's rule for that port names 1-1.6.
					return &fs.PathError{Op: "write", Path: w.Path, Err: syscall.ENODEV}
				}
				// xl's port write, over the port the agent just wrote.
				all, err := e.h.Assigned(e.ctx)
				if err != nil {
					t.Error(err)
					return nil
				}
				for _, x := range all {
					if x.BusID == "1-6" {
						p := fmt.Sprintf("/local/domain/0/backend/vusb/%d/%d/port/%d", x.Domid, x.Controller, x.Port)
						if err := e.xs.Write(e.ctx, p, []byte("1-1.6")); err != nil {
							t.Error(err)
						}
						over.Store(&x)
						// The rest of xl's attach of 1-1.6, at once, as xl
						// goes on (it waits for the kernel's lock, which the
						// agent's bind holds): its driver record, its
						// interface moved to usbback; xl reports success.
						go func() { xlDone <- e.xlFinishes() }()
					}
				}
				// usbback's rule for that port names 1-1.6 now.
				return &fs.PathError{Op: "write", Path: w.Path, Err: syscall.ENODEV}
			}
			return k
		}
		e.run(keyboardsPolicy, false)
		e.hearKernel()
		kiosk := e.doms["kiosk"].ID
		armed.Store(true)
		if err := e.kernel.Plug(keyboard("1-6", "0001")); err != nil {
			t.Fatal(err)
		}
		r, ok := e.awaitOneOf("1-6", 10*time.Second, agent.ActAttached, agent.ActRefused, agent.ActFailed)
		armed.Store(false)
		x := over.Load()
		if x == nil {
			t.Fatalf("the agent's bind of 1-6 was never reached (%s %v: %s)", r.Action, ok, r.Reason)
		}
		if err := <-xlDone; err != nil {
			t.Fatal(err)
		}
		if r.Action != agent.ActAttached {
			// The attach that lost the race is tried again, not refused.
			if r.Action != agent.ActFailed || !strings.Contains(r.Reason, "holds 1-1.6 now") {
				t.Errorf("the attach that lost the port to xl: %s: %s", r.Action, r.Reason)
			}
			e.await("1-6", agent.ActAttached)
		}
		e.settle()
		var bad []string
		if y, ok := e.at("1-1.6"); !ok || y.Domid != kiosk || y.Controller != x.Controller || y.Port != x.Port {
			bad = append(bad, fmt.Sprintf("xl's 1-1.6 is at %+v (%v) with driver %q, want at %d:%d where xl put it", y, ok, e.driverOf("1-1.6:1.0"), x.Controller, x.Port))
		}
		if y, ok := e.at("1-6"); !ok || y.Domid != kiosk {
			st, _ := statusOf(e, "1-6")
			bad = append(bad, fmt.Sprintf("the agent's 1-6 is at %+v (%v), want kiosk: %s: %s", y, ok, st.Action, st.Reason))
		}
		for _, b := range bad {
			t.Error(b)
		}
	})
}

// xlFinishes is the rest of xl's attach of 1-1.6 after its port write.
func (e *env) xlFinishes() error {
	if err := e.xs.Write(e.ctx, "/libxl/usbback/1-1_6/1-1_6@1_0/driver_path", []byte("/sys/bus/usb/drivers/usbhid")); err != nil {
		return err
	}
	for _, w := range [][2]string{{"bus/usb/drivers/usbhid/unbind", "1-1.6:1.0"}, {"bus/usb/drivers/usbback/bind", "1-1.6:1.0"}} {
		if err := e.kernel.WriteAttr(e.root+"/"+w[0], []byte(w[1])); err != nil {
			return err
		}
	}
	return nil
}
