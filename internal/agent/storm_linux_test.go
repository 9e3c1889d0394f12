package agent_test

import (
	"bytes"
	"context"
	"fmt"
	"syscall"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/usbhotplugd/usbhotplugd/internal/agent"
	"github.com/usbhotplugd/usbhotplugd/internal/nstest"
	"github.com/usbhotplugd/usbhotplugd/internal/uevent"
	"github.com/usbhotplugd/usbhotplugd/internal/xenstore/xenstoretest"
)

const stormEnv = "USBHOTPLUGD_AGENT_STORM_CHILD"

// A storm of kernel events overruns the agent's netlink socket (a real
// one, in a user+network namespace of its own, with a small buffer, not
// read during the storm): the kernel drops datagrams, among them the
// events of a device plugged in the middle of it, and says so with
// ENOBUFS. The rescan that follows finds
// the device, and the agent attaches it; one that left meanwhile is found
// gone.
func TestAgentStormOverrunsTheSocket(t *testing.T) {
	if !nstest.Child(stormEnv) {
		out, err := nstest.Run(t, stormEnv, syscall.CLONE_NEWNET, nil, "-test.run=^TestAgentStormOverrunsTheSocket$", "-test.v")
		if err != nil {
			t.Fatalf("in the namespace: %v\n%s", err, out)
		}
		if !bytes.Contains(out, []byte("--- PASS: TestAgentStormOverrunsTheSocket")) {
			t.Fatalf("the namespace's run did not pass the test:\n%s", out)
		}
		return
	}
	e := newEnv(t, xenstoretest.Start(t, xenstoretest.KindEmbedded))
	e.run(benchPolicy(4), false)
	fd, err := unix.Socket(unix.AF_NETLINK, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, unix.NETLINK_KOBJECT_UEVENT)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Close(fd)
	if err := unix.Bind(fd, &unix.SockaddrNetlink{Family: unix.AF_NETLINK}); err != nil {
		t.Fatal(err)
	}
	sa, err := unix.Getsockname(fd)
	if err != nil {
		t.Fatal(err)
	}
	l, err := uevent.ListenFrom(4096, sa.(*unix.SockaddrNetlink).Pid)
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	// The storm: the events of devices that stay as they are, and, in
	// its middle, a device plugged and a denied one pulled out, with no
	// event of theirs that gets through.
	send := func(b []byte) {
		if err := unix.Sendto(fd, b, 0, &unix.SockaddrNetlink{Family: unix.AF_NETLINK, Groups: 1}); err != nil && err != unix.ENOBUFS {
			t.Fatal(err)
		}
	}
	const p = "/devices/pci0000:00/0000:00:14.0/usb1/1-1/1-1.6"
	for i := range 20000 {
		if i == 10000 {
			if err := e.kernel.Plug(benchDev("1-6", 1)); err != nil {
				t.Fatal(err)
			}
			if err := e.kernel.Unplug("1-3"); err != nil {
				t.Fatal(err)
			}
		}
		send(fmt.Appendf(nil, "change@%s\x00ACTION=change\x00DEVPATH=%s\x00SUBSYSTEM=usb\x00DEVTYPE=usb_device\x00SEQNUM=%d\x00", p, p, i+1))
	}
	// Read only now: nothing read the socket during the storm, as a
	// reader busy elsewhere does not, and most of it was dropped.
	ctx, cancel := context.WithCancel(e.ctx)
	pumped := make(chan error, 1)
	go func() { pumped <- e.a.PumpEvents(ctx, l) }()
	defer func() {
		cancel()
		<-pumped
	}()
	var attached, gone bool
	for !attached || !gone {
		select {
		case r := <-e.audits:
			attached = attached || r.BusID == "1-6" && r.Action == agent.ActAttached && r.Domain == "kiosk"
			gone = gone || r.BusID == "1-3" && r.Action == agent.ActGone
		case <-e.ctx.Done():
			t.Fatalf("1-6 attached %v, 1-3 gone %v\nlog:\n%s", attached, gone, e.logText())
		}
	}
	if st := e.a.Stats(); st.Overruns == 0 {
		t.Errorf("no overrun counted: %+v", st)
	}
}
