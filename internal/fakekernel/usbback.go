package fakekernel

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"path/filepath"
	"strconv"
	"syscall"

	"github.com/usbhotplugd/usbhotplugd/internal/xenstore"
)

// A UsbbackPort is one port rule of usbback: a busid in port/N of one of
// its backends, and that backend's USB version (usb-ver: 1 or 2).
type UsbbackPort struct {
	BusID   string
	Version int
}

// usbbackProbe is usbback's probe for an interface of the device at dir:
// it refuses (ENODEV) hubs, SuperSpeed devices, devices in no port of a
// backend, and high-speed devices in a port of a USB 1.1 backend.
func (k *Kernel) usbbackProbe(intf, dir string) syscall.Errno {
	if readAttr(dir, "bDeviceClass") == "09" {
		return syscall.ENODEV
	}
	speed := readAttr(dir, "speed")
	if n, err := strconv.ParseFloat(speed, 64); err == nil && n >= 5000 {
		return syscall.ENODEV
	}
	if k.UsbbackPorts == nil {
		return 0
	}
	ports, err := k.UsbbackPorts()
	if err != nil {
		return syscall.ENODEV
	}
	busid := filepath.Base(dir)
	for _, p := range ports {
		if p.BusID != busid {
			continue
		}
		if p.Version == 1 && speed == "480" {
			return syscall.ENODEV
		}
		return 0
	}
	return syscall.ENODEV
}

// StorePorts reads usbback's port rules from a store, as usbback builds
// them from its backends: every busid in /local/domain/0/backend/vusb/
// DOMID/DEVID/port/N, with that backend's usb-ver.
func StorePorts(ctx context.Context, xs *xenstore.Conn) func() ([]UsbbackPort, error) {
	return func() ([]UsbbackPort, error) {
		const base = "/local/domain/0/backend/vusb"
		domids, err := xs.Directory(ctx, base)
		if errors.Is(err, fs.ErrNotExist) {
			return nil, nil
		}
		if err != nil {
			return nil, err
		}
		var out []UsbbackPort
		for _, d := range domids {
			devids, err := xs.Directory(ctx, base+"/"+d)
			if err != nil {
				continue // the domain's backends went meanwhile
			}
			for _, c := range devids {
				out = append(out, backendPorts(ctx, xs, fmt.Sprintf("%s/%s/%s", base, d, c))...)
			}
		}
		return out, nil
	}
}

func backendPorts(ctx context.Context, xs *xenstore.Conn, back string) []UsbbackPort {
	ver, _ := xs.Read(ctx, back+"/usb-ver")
	v, _ := strconv.Atoi(string(ver))
	ports, err := xs.Directory(ctx, back+"/port")
	if err != nil {
		return nil
	}
	var out []UsbbackPort
	for _, p := range ports {
		b, err := xs.Read(ctx, back+"/port/"+p)
		if err == nil && len(b) > 0 {
			out = append(out, UsbbackPort{BusID: string(b), Version: v})
		}
	}
	return out
}
