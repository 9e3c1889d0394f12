//go:build testhooks

package main

// Built only with -tags testhooks, for the soak test, which runs the agent
// as its own process inside a private user+network namespace: uevents
// come from the test's netlink socket (the kernel's are not there), and
// sysfs writes go to the fake kernel over the fixture tree.

import (
	"io"
	"os"
	"strconv"

	"github.com/usbhotplugd/usbhotplugd/internal/fakekernel"
	"github.com/usbhotplugd/usbhotplugd/internal/uevent"
)

func init() {
	if p := os.Getenv("USBHOTPLUGD_TEST_UEVENT_PORT"); p != "" {
		port, err := strconv.ParseUint(p, 10, 32)
		if err != nil {
			panic("USBHOTPLUGD_TEST_UEVENT_PORT: " + err.Error())
		}
		ueventSource = func() (uevent.Source, io.Closer, error) {
			l, err := uevent.ListenFrom(0, uint32(port))
			if err != nil {
				return nil, nil, err
			}
			return l, l, nil
		}
	}
	if root := os.Getenv("USBHOTPLUGD_TEST_FAKE_KERNEL"); root != "" {
		k := fakekernel.NewKernel(root)
		k.Accept = func(driver, intf string) bool { return true }
		sysfsWriter = k
	}
}
