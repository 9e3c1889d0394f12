package uevent_test

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/usbhotplugd/usbhotplugd/internal/fakekernel"
	"github.com/usbhotplugd/usbhotplugd/internal/uevent"
	"github.com/usbhotplugd/usbhotplugd/internal/usbsysfs"
)

// Scan gives parents before children and each device before its
// interfaces, with the keys a kernel event would carry.
func TestScanOrder(t *testing.T) {
	root := t.TempDir()
	if err := fakekernel.Standard(root); err != nil {
		t.Fatal(err)
	}
	evs, err := uevent.Scan(usbsysfs.NewFS(root))
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	seen := map[string]bool{}
	for _, e := range evs {
		if e.Action != "add" || e.Subsystem != "usb" {
			t.Fatalf("scan event %+v", e)
		}
		if _, err := uevent.Parse(uevent.Marshal(e)); err != nil {
			t.Fatalf("scan event does not parse: %v", err)
		}
		n := e.Name()
		parent := strings.TrimSuffix(e.DevPath, "/"+n)
		parent = parent[strings.LastIndexByte(parent, '/')+1:]
		if strings.Contains(parent, "-") && !seen[parent] {
			t.Fatalf("%s before its parent %s", n, parent)
		}
		seen[n] = true
		names = append(names, n)
	}
	want := "usb1 1-0:1.0 1-1 1-1:1.0 1-1.2 1-1.2:1.0 1-1.3 1-1.3:1.0 1-1.6 1-1.6:1.0 1-2 1-2:1.0 1-2:1.1 1-2:1.2 1-2:1.3 1-3 1-3:1.0 1-4 1-4:1.0 1-5 1-5:1.0"
	if got := strings.Join(names, " "); got != want {
		t.Fatalf("order\n got %s\nwant %s", got, want)
	}
	kbd := evs[8]
	if kbd.Env["PRODUCT"] != "46d/c31c/100" || kbd.Env["BUSNUM"] != "001" || kbd.Env["DEVNUM"] != "006" || kbd.Env["DRIVER"] != "usb" || kbd.DevPath != "/devices/pci0000:00/0000:00:14.0/usb1/1-1/1-1.6" {
		t.Fatalf("keyboard event %+v", kbd)
	}
	if i := evs[9]; i.Env["INTERFACE"] != "3/1/1" || i.Driver() != "usbhid" {
		t.Fatalf("keyboard interface event %+v", i)
	}
}

// chanSource delivers what the test sends; it stands for the netlink
// socket where the kernel cannot be made to plug a device.
type chanSource chan uevent.Message

func (c chanSource) Receive(ctx context.Context) (uevent.Message, error) {
	select {
	case m, ok := <-c:
		if !ok {
			return uevent.Message{}, errors.New("source closed")
		}
		return m, nil
	case <-ctx.Done():
		return uevent.Message{}, ctx.Err()
	}
}

func ev(action, name string, seq uint64) uevent.Message {
	dp := "/devices/usb1/" + name
	return uevent.Message{Event: uevent.Event{Action: action, DevPath: dp, Subsystem: "usb", DevType: "usb_device", Seqnum: seq,
		Env: map[string]string{"ACTION": action, "DEVPATH": dp, "SUBSYSTEM": "usb", "DEVTYPE": "usb_device", "SEQNUM": fmt.Sprint(seq)}}}
}

// A device that cannot be read has no events; the others have theirs,
// beside the error that names it.
func TestScanPastAnUnreadableDevice(t *testing.T) {
	root := t.TempDir()
	if err := fakekernel.Standard(root); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(root+"/bus/usb/devices/1-2/idVendor", []byte("zz\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	evs, err := uevent.Scan(usbsysfs.NewFS(root))
	unread, rest := usbsysfs.Partial(err)
	if rest != nil || len(unread) != 1 || unread[0].BusID != "1-2" {
		t.Fatalf("Scan: %v", err)
	}
	var devs int
	for _, e := range evs {
		if e.Name() == "1-2" || strings.HasPrefix(e.Name(), "1-2:") {
			t.Errorf("an event of the unreadable device: %+v", e)
		}
		if e.DevType == "usb_device" {
			devs++
		}
	}
	if devs != 8 {
		t.Errorf("%d device events, want the other 8", devs)
	}
}

// Live events that arrive during the scan are delivered after it, in order;
// the source's terminal error comes after what was queued.
func TestColdplugQueuesLiveEvents(t *testing.T) {
	src := make(chanSource)
	scan := func() ([]uevent.Event, error) {
		// The kernel reports a plug and an unplug while sysfs is read.
		src <- ev("add", "1-7", 1)
		src <- ev("remove", "1-6", 2)
		return []uevent.Event{ev("add", "1-6", 0).Event}, nil
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	s, err := uevent.Coldplug(ctx, src, scan)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	var got []string
	for range 3 {
		m, err := s.Receive(ctx)
		if err != nil {
			t.Fatal(err)
		}
		got = append(got, fmt.Sprintf("%s %s %v", m.Event.Action, m.Event.Name(), m.Coldplug))
	}
	if want := "add 1-6 true|add 1-7 false|remove 1-6 false"; strings.Join(got, "|") != want {
		t.Fatalf("got %s, want %s", strings.Join(got, "|"), want)
	}
	close(src)
	if _, err := s.Receive(ctx); err == nil || err.Error() != "source closed" {
		t.Fatalf("after the source ended: %v", err)
	}
}

// A queue past MaxQueued collapses into one overrun, so the consumer
// rescans instead of the daemon growing without bound.
func TestColdplugQueueBound(t *testing.T) {
	src := make(chanSource)
	block := make(chan struct{})
	scan := func() ([]uevent.Event, error) {
		for i := range uevent.MaxQueued + 10 {
			src <- ev("change", "1-6", uint64(i+1))
		}
		close(block)
		return nil, nil
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	s, err := uevent.Coldplug(ctx, src, scan)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	<-block
	// The last send may still be on its way into the queue.
	n, overruns := 0, 0
	for {
		m, err := s.Receive(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if m.Overrun {
			overruns++
			break
		}
		n++
	}
	if n != uevent.MaxQueued-1 || overruns != 1 {
		t.Fatalf("%d events then %d overruns, want %d then 1", n, overruns, uevent.MaxQueued-1)
	}
}

// A failed scan stops the stream's goroutine and says what failed.
func TestColdplugScanError(t *testing.T) {
	_, err := uevent.Coldplug(context.Background(), make(chanSource), func() ([]uevent.Event, error) {
		return uevent.Scan(usbsysfs.NewFS(t.TempDir() + "/missing"))
	})
	if err == nil || !strings.Contains(err.Error(), "coldplug scan") || !strings.Contains(err.Error(), "missing/bus/usb/devices") {
		t.Fatalf("scan of a missing tree: %v", err)
	}
}

func BenchmarkColdplugScan200(b *testing.B) {
	root := b.TempDir()
	bl := &fakekernel.Builder{Root: root}
	// 200 mice on two buses, 100 behind 7 hubs on each: a port number is
	// at most 31, a device number 127.
	const buses, hubs = 2, 7
	for bus := 1; bus <= buses; bus++ {
		bl.Add(fakekernel.Dev{BusID: fmt.Sprintf("usb%d", bus), Controller: fmt.Sprintf("devices/pci0000:00/0000:00:%02x.0", 0x13+bus), DevNum: 1, Vendor: "1d6b", Product: "0002", Class: "09", Interfaces: fakekernel.Hub})
		for h := range hubs {
			bl.Add(fakekernel.Dev{BusID: fmt.Sprintf("%d-%d", bus, h+1), DevNum: h + 2, Vendor: "05e3", Product: "0610", Class: "09", Interfaces: fakekernel.Hub})
		}
		for i := range 100 {
			bl.Add(fakekernel.Dev{BusID: fmt.Sprintf("%d-%d.%d", bus, 1+i/15, 1+i%15), DevNum: hubs + i + 2, Vendor: "046d", Product: "c077", Class: "00",
				Interfaces: []fakekernel.Intf{{Class: "03", SubClass: "01", Protocol: "02", Driver: "usbhid"}}})
		}
	}
	if err := bl.Err(); err != nil {
		b.Fatal(err)
	}
	fs := usbsysfs.NewFS(root)
	b.ReportAllocs()
	for b.Loop() {
		evs, err := uevent.Scan(fs)
		if err != nil || len(evs) != 2*(buses*(1+hubs)+200) {
			b.Fatalf("%d events, %v", len(evs), err)
		}
	}
}
