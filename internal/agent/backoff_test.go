package agent_test

import (
	"io/fs"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"

	"github.com/usbhotplugd/usbhotplugd/internal/agent"
	"github.com/usbhotplugd/usbhotplugd/internal/fakekernel"
	"github.com/usbhotplugd/usbhotplugd/internal/uevent"
	"github.com/usbhotplugd/usbhotplugd/internal/usbsysfs"
	"github.com/usbhotplugd/usbhotplugd/internal/xenstore/xenstoretest"
	"github.com/usbhotplugd/usbhotplugd/policy"
)

// A failed attach rolls back: its interfaces go back to their dom0
// driver, and the kernel says so with bind and unbind events. Those are
// no reason to try again before the retry is due: a device whose usbback
// bind always fails would otherwise move between drivers in a loop.
func TestFailedAttachWaitsForItsRetry(t *testing.T) {
	xenstoretest.ForEach(t, func(t *testing.T, s xenstoretest.Store) {
		e := newEnv(t, s)
		var failing atomic.Bool
		var binds atomic.Int64
		e.wrapKernel = func(kw usbsysfs.Writer) usbsysfs.Writer {
			k := kw.(*fakekernel.Kernel)
			k.OnEvent = func(ev uevent.Event) { e.a.Handle(e.ctx, uevent.Message{Event: ev}) }
			k.Fail = func(w fakekernel.Write) error {
				if failing.Load() && w.Path == "bus/usb/drivers/usbback/bind" && strings.HasPrefix(w.Data, "1-2:") {
					binds.Add(1)
					return &fs.PathError{Op: "write", Path: w.Path, Err: syscall.EINVAL}
				}
				return nil
			}
			return k
		}
		e.run(testPolicy, false)
		if _, ok := e.at("1-2"); !ok {
			t.Fatal("1-2 not attached")
		}
		failing.Store(true)
		p, err := policy.Parse("test.toml", []byte(strings.Replace(testPolicy, `target = { domain = "kiosk" }`, `target = { domain = "desk" }`, 1)), nil)
		if err != nil {
			t.Fatal(err)
		}
		e.a.Reload(p)
		first := e.await("1-2", agent.ActFailed)
		// The record says it is not given up, and when it is tried again.
		if !strings.Contains(first.Reason, "invalid argument; tried again in 500ms") {
			t.Errorf("the first failure: %s", first.Reason)
		}
		// Until the retry, only what is not the rollback's own echo (a
		// domain change: the attach wrote the guest's new controller)
		// may try again at once; each try is one bind.
		fails := int64(1)
		for next := e.await("1-2", agent.ActFailed); next.Trigger != agent.TrigRetry; next = e.await("1-2", agent.ActFailed) {
			fails++
			if echo := next.Trigger == "bind" || next.Trigger == "unbind" || next.Trigger == agent.TrigPortChanged; echo || fails > 5 {
				t.Fatalf("after the failure (%s) came failure %d on %q: the retry's delay was not waited for", first.Trigger, fails, next.Trigger)
			}
		}
		if n := binds.Load(); n != fails+1 {
			t.Errorf("%d binds for %d failed tries and the retry", n, fails)
		}
	})
}
