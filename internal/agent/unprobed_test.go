package agent_test

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/usbhotplugd/usbhotplugd/internal/agent"
	"github.com/usbhotplugd/usbhotplugd/internal/fakekernel"
	"github.com/usbhotplugd/usbhotplugd/internal/uevent"
	"github.com/usbhotplugd/usbhotplugd/internal/xenstore/xenstoretest"
)

// unbindFromUsb makes busid a device the kernel never bound to the usb
// driver, as with /sys/bus/usb/drivers_autoprobe 0: no driver link, and
// returns its directory.
func unbindFromUsb(t *testing.T, root, busid string) string {
	t.Helper()
	dir, err := filepath.EvalSymlinks(filepath.Join(root, "bus/usb/devices", busid))
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range []string{filepath.Join(dir, "driver"), filepath.Join(root, "bus/usb/drivers/usb", busid)} {
		if err := os.Remove(p); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

func deviceEvent(t *testing.T, action, busid string) uevent.Message {
	t.Helper()
	path := "/devices/pci0000:00/0000:00:14.0/usb1/" + busid
	drv := ""
	if action == "bind" {
		drv = "DRIVER=usb\x00"
	}
	e, err := uevent.Parse(fmt.Appendf(nil, "%s@%s\x00ACTION=%s\x00DEVPATH=%s\x00SUBSYSTEM=usb\x00DEVTYPE=usb_device\x00SEQNUM=1\x00%s", action, path, action, path, drv))
	if err != nil {
		t.Fatal(err)
	}
	return uevent.Message{Event: e}
}

func statusOf(e *env, busid string) (agent.Audit, bool) {
	if st := e.status.Load(); st != nil {
		for _, d := range st.Devices {
			if d.BusID == busid {
				return d, true
			}
		}
	}
	return agent.Audit{}, false
}

// A device the kernel never bound to the usb driver (drivers_autoprobe
// 0) is in status, waiting, with what binds it: present at the start,
// or plugged while the agent runs (its add event, and no bind after).
func TestAgentShowsDevicesTheKernelNeverBound(t *testing.T) {
	s := xenstoretest.Embedded(t)
	e := newEnv(t, s)
	if err := (&fakekernel.Builder{Root: e.root}).Add(fakekernel.Dev{BusID: "1-7", DevNum: 20, Vendor: "1234", Product: "0002", Class: "00",
		Interfaces: []fakekernel.Intf{{Class: "01", SubClass: "01", Protocol: "00"}}}).Err(); err != nil {
		t.Fatal(err)
	}
	dir := unbindFromUsb(t, e.root, "1-7")
	// No store watch: the rescan its setting brings would pass over 1-8
	// before the look does.
	e.noWatches = true
	e.run(testPolicy, false)
	r, ok := statusOf(e, "1-7")
	if !ok {
		t.Fatal("1-7, never bound to the usb driver, is missing from status")
	}
	if r.Action != agent.ActPending || r.ID != "1234:0002" || !strings.Contains(r.Reason, "drivers_autoprobe") || !strings.Contains(r.Reason, "echo 1-7 > /sys/bus/usb/drivers_probe") {
		t.Errorf("1-7 in status: %+v", r)
	}
	// Bound at last: decided as any other.
	if err := fakekernel.LinkDriver(e.root, "1-7", dir, "usb"); err != nil {
		t.Fatal(err)
	}
	e.a.Handle(e.ctx, deviceEvent(t, "bind", "1-7"))
	e.await("1-7", agent.ActUnmatched)

	// Plugged while the agent runs: its add event, and no bind.
	if err := (&fakekernel.Builder{Root: e.root}).Add(fakekernel.Dev{BusID: "1-8", DevNum: 21, Vendor: "1234", Product: "0001", Class: "00",
		Interfaces: []fakekernel.Intf{{Class: "03", SubClass: "00", Protocol: "00"}}}).Err(); err != nil {
		t.Fatal(err)
	}
	unbindFromUsb(t, e.root, "1-8")
	e.a.Handle(e.ctx, deviceEvent(t, "add", "1-8"))
	r = e.await("1-8", agent.ActPending)
	if r.Trigger != agent.TrigProbeLook || !strings.Contains(r.Reason, "bound it to no driver") {
		t.Errorf("1-8 plugged and never bound: %+v", r)
	}
}
