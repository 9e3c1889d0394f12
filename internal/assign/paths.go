package assign

import (
	"fmt"
	"math"
	"strconv"
	"strings"

	"github.com/usbhotplugd/usbhotplugd/internal/usbname"
	"github.com/usbhotplugd/usbhotplugd/internal/usbsysfs"
)

// sysDrivers is where libxl records an interface's original driver, as the
// canonical path of a real /sys (whatever root this host's sysfs is under).
const sysDrivers = "/sys/bus/usb/drivers/"

func homePath(domid uint32) string { return fmt.Sprintf("/local/domain/%d", domid) }
func libxlDir(domid uint32) string { return fmt.Sprintf("/libxl/%d/device/vusb", domid) }
func libxlPath(domid uint32, devid int) string {
	return fmt.Sprintf("/libxl/%d/device/vusb/%d", domid, devid)
}
func frontendPath(domid uint32, devid int) string {
	return fmt.Sprintf("/local/domain/%d/device/vusb/%d", domid, devid)
}
func backendPath(kind string, domid uint32, devid int) string {
	return fmt.Sprintf("/local/domain/0/backend/%s/%d/%d", kind, domid, devid)
}

// encode turns a busid or interface name into a xenstore path element as
// libxl does: "." becomes "_" and ":" becomes "@".
func encode(s string) string {
	return strings.NewReplacer(".", "_", ":", "@").Replace(s)
}

func usbbackRecord(busid string) string { return "/libxl/usbback/" + encode(busid) }
func driverPathKey(busid, intf string) string {
	return usbbackRecord(busid) + "/" + encode(intf) + "/driver_path"
}

// driverFromRecord reads a recorded driver path back into a driver name,
// refusing anything but /sys/bus/usb/drivers/<name>.
func driverFromRecord(p string) (string, error) {
	name, ok := strings.CutPrefix(p, sysDrivers)
	if !ok || usbsysfs.ValidDriver(name) != nil {
		return "", fmt.Errorf("recorded driver path %q is not %s<driver>", p, sysDrivers)
	}
	return name, nil
}

// checkBackendPath accepts only the backend path libxl would have written
// for this controller.
func checkBackendPath(p string, domid uint32, devid int) (kind string, err error) {
	for _, k := range []string{"vusb", "qusb"} {
		if p == backendPath(k, domid, devid) {
			return k, nil
		}
	}
	if rest, ok := strings.CutPrefix(p, "/local/domain/"); ok {
		if be, _, ok := strings.Cut(rest, "/"); ok && be != "0" {
			if _, ok := atoiStrict(be); !ok {
				be = strconv.Quote(be) // whatever was written there
			}
			return "", fmt.Errorf("its backend %q is in domain %s (a driver domain), not dom0: %w", p, be, ErrNotDom0Backend)
		}
	}
	return "", fmt.Errorf("backend path %q is not /local/domain/0/backend/{vusb,qusb}/%d/%d", p, domid, devid)
}

// checkBusID validates a busid read from xenstore before it reaches sysfs.
func checkBusID(s string) error {
	if usbname.ValidDevice(s) != nil {
		return fmt.Errorf("%q is not a device busid", s)
	}
	return nil
}

// portValue is a port's value as a message shows it: a busid as it is,
// anything else quoted, since the node holds whatever was written there
// (and a message may reach a terminal).
func portValue(v string) string {
	if v == "" || checkBusID(v) == nil {
		return v
	}
	return strconv.Quote(v)
}

// maxDevID is the largest devid: libxl's libxl_devid is a C int, and a
// larger one would wrap (negative, or past it) in the paths made from it.
const maxDevID = math.MaxInt32

// parseDevID reads a controller's devid from its node's name.
func parseDevID(s string) (int, bool) {
	n, ok := atoiStrict(s)
	return n, ok && n <= maxDevID
}

func atoiStrict(s string) (int, bool) {
	n, err := strconv.Atoi(s)
	return n, err == nil && n >= 0 && strconv.Itoa(n) == s
}
