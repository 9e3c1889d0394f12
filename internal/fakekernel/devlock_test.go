package fakekernel

import "testing"

func TestLockedBy(t *testing.T) {
	for _, c := range []struct{ path, data, want string }{
		{"/r/bus/usb/drivers/usbhid/unbind", "1-2:1.0", "1-2"},
		{"/r/bus/usb/drivers/usbback/bind", "1-1.6:1.0\n", "1-1.6"},
		{"/r/bus/usb/drivers/usb/unbind", "1-2", ""}, // a device's own driver: the hub's lock, not emulated
		{"/r/bus/usb/devices/1-2:1.0/driver/unbind", "1-2:1.0", "1-2"},
		{"/r/bus/usb/drivers_probe", "1-3:1.0", "1-3"},
		{"/r/bus/usb/devices/1-2/authorized", "0", "1-2"},
		{"/r/bus/usb/devices/1-2:1.1/authorized", "0", "1-2"},
		{"/r/bus/usb/devices/1-2:1.1/authorized", "1", ""},
		{"/r/bus/usb/devices/1-2/bConfigurationValue", "1", "1-2"},
		{"/r/bus/usb/devices/usb1/interface_authorized_default", "0", ""},
		{"/r/bus/usb/devices/1-2/power/control", "on", ""},
	} {
		if got := lockedBy(c.path, c.data); got != c.want {
			t.Errorf("lockedBy(%q, %q) = %q, want %q", c.path, c.data, got, c.want)
		}
	}
}
