package fakekernel

import (
	"os"
	"path/filepath"
)

// keepsAcrossReset says whether a driver has pre_reset and post_reset
// methods, with which usb_reset_device keeps it bound through a reset:
// usbhid's, usb-storage's, uas's and the hub driver's do. Others
// (usbback, cdc_ether, usblp, ...) are unbound before the reset and the
// interface is probed again after it.
func keepsAcrossReset(drv string) bool {
	switch drv {
	case "usbhid", "usb-storage", "uas", "hub":
		return true
	}
	return false
}

// Reset resets a device as usb_reset_device does (usbreset's
// USBDEVFS_RESET, a driver's usb_reset_device or usb_queue_reset_device
// after an error): each interface whose driver cannot keep it through a
// reset is unbound (its unbind sent), the port is reset, and each of
// those is then probed again (device_attach: the first driver whose match
// and probe take it, which need not be the one it had), in interface
// order. The device keeps its devnum and sends no event of its own; its
// descriptors are the same (a device whose descriptors changed is
// re-enumerated instead, as a new plug).
func (k *Kernel) Reset(busid string) error {
	unlock, err := k.lock()
	if err != nil {
		return err
	}
	defer unlock()
	dir, err := filepath.EvalSymlinks(filepath.Join(k.root, "bus/usb/devices", busid))
	if err != nil {
		return err
	}
	if _, err := os.Stat(dir); err != nil {
		return err
	}
	var again []string
	for _, in := range interfaceNames(busid, dir) {
		idir := filepath.Join(dir, in)
		if drv := currentDriver(idir); drv != "" && !keepsAcrossReset(drv) {
			k.detach(in, idir)
			again = append(again, in)
		}
	}
	for _, in := range again {
		idir := filepath.Join(dir, in)
		if currentDriver(idir) == "" {
			k.probe(in, idir)
		}
	}
	return nil
}
