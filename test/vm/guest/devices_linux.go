package main

import (
	"errors"
	"io/fs"
	"os"
	"sort"
	"sync"
	"syscall"
	"time"

	"github.com/usbhotplugd/usbhotplugd/internal/usbsysfs"
)

// busyWait is how long the devices op waits for the devices' reads. The
// kernel holds a device's lock while a driver probes one of its
// interfaces (and a hub's while a child of it is enumerated), and a read
// of its serial, product or configuration waits for the lock: a probe
// that takes seconds (slowprobe.scn) would stall the host's every look at
// the guest, and with it the scenario's clock. Normal probes end well
// within it, even under TCG.
const busyWait = 2 * time.Second

// blocked are the devices whose read still waits for the kernel (in a
// goroutine, since a system call cannot be called back); the devices op
// leaves them out at once until that read returns.
var blocked struct {
	mu sync.Mutex
	m  map[string]bool
}

type devRead struct {
	busid string
	ch    chan devResult
}

type devResult struct {
	d   usbsysfs.Device
	err error
}

// devices is usbsysfs.Devices, but a device whose lock the kernel holds
// for longer than busyWait is left out, as if it were not enumerated yet.
func devices() ([]usbsysfs.Device, error) {
	sys := usbsysfs.NewFS("/sys")
	ents, err := os.ReadDir("/sys/bus/usb/devices")
	if err != nil {
		return nil, err
	}
	var reads []devRead
	blocked.mu.Lock()
	if blocked.m == nil {
		blocked.m = map[string]bool{}
	}
	for _, e := range ents {
		n := e.Name()
		if usbsysfs.ValidBusID(n) != nil || blocked.m[n] {
			continue
		}
		blocked.m[n] = true
		rd := devRead{n, make(chan devResult, 1)}
		go func() {
			d, err := sys.Device(rd.busid)
			blocked.mu.Lock()
			delete(blocked.m, rd.busid)
			blocked.mu.Unlock()
			rd.ch <- devResult{d, err}
		}()
		reads = append(reads, rd)
	}
	blocked.mu.Unlock()
	deadline := time.NewTimer(busyWait)
	defer deadline.Stop()
	expired := false
	var out []usbsysfs.Device
	var unread usbsysfs.UnreadableError
	for _, rd := range reads {
		var r devResult
		if !expired {
			select {
			case r = <-rd.ch:
			case <-deadline.C:
				expired = true
			}
		}
		if expired {
			select {
			case r = <-rd.ch:
			default:
				continue // its lock is held (a probe, a reset): left out
			}
		}
		n := rd.busid
		if errors.Is(r.err, fs.ErrNotExist) || errors.Is(r.err, syscall.ENODEV) && !sys.Present(n) {
			continue // left while it was read
		}
		if r.err != nil {
			unread.Devices = append(unread.Devices, usbsysfs.DeviceError{BusID: n, Err: r.err})
			continue
		}
		out = append(out, r.d)
	}
	sort.SliceStable(out, func(i, j int) bool { return usbsysfs.BusIDLess(out[i].BusID, out[j].BusID) })
	if len(unread.Devices) > 0 {
		sort.SliceStable(unread.Devices, func(i, j int) bool {
			return usbsysfs.BusIDLess(unread.Devices[i].BusID, unread.Devices[j].BusID)
		})
		return out, &unread
	}
	return out, nil
}
