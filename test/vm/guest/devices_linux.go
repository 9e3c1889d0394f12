package main

import (
	"errors"
	"slices"
	"time"

	"github.com/usbhotplugd/usbhotplugd/internal/usbsysfs"
)

// busyWait is how long the devices op waits for a device's lock. The
// kernel holds a device's lock while a driver probes one of its
// interfaces (and a hub's while a child of it is enumerated), and a read
// of its serial, product or configuration waits for the lock: a probe
// that takes seconds (slowprobe.scn) would stall the host's every look at
// the guest, and with it the scenario's clock. Normal probes end well
// within it, even under TCG.
const busyWait = 500 * time.Millisecond

// guestSys reads the guest's sysfs as the agent does, with a deadline on
// each device's lock; it keeps which devices' reads still wait, across
// looks, so each is waited for once.
var guestSys = usbsysfs.NewFS("/sys").WithLockWait(busyWait)

// devices is usbsysfs.Devices, but a device whose lock the kernel holds
// for longer than busyWait is left out, as if it were not enumerated yet.
func devices() ([]usbsysfs.Device, error) {
	devs, err := guestSys.Devices()
	unread, rest := usbsysfs.Partial(err)
	if rest != nil {
		return nil, rest
	}
	unread = slices.DeleteFunc(unread, func(u usbsysfs.DeviceError) bool { return errors.Is(u.Err, usbsysfs.ErrBusy) })
	if len(unread) > 0 {
		return devs, &usbsysfs.UnreadableError{Devices: unread}
	}
	return devs, nil
}
