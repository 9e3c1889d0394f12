package inventory

import (
	"github.com/usbhotplugd/usbhotplugd/internal/usbsysfs"
	"github.com/usbhotplugd/usbhotplugd/policy"
)

// PolicyDevice is d as the policy sees it; plugged orders arrivals.
func PolicyDevice(d usbsysfs.Device, plugged uint64) policy.Device {
	p := policy.Device{
		BusID: d.BusID, BusNum: d.BusNum, DevNum: d.DevNum, Vendor: d.Vendor, Product: d.Product,
		Class: d.Class, SubClass: d.SubClass, Protocol: d.Protocol, Serial: d.Serial,
		Manufacturer: d.Manufacturer, ProductName: d.ProductName, Plugged: plugged,
		PortPath: d.PortPath, PortPathRev: d.PortPathRev, Hash: d.Hash, ParentHash: d.ParentHash,
	}
	p.Interfaces = make([]policy.Interface, len(d.Interfaces))
	for i, in := range d.Interfaces {
		p.Interfaces[i] = policy.Interface{Class: in.Class, SubClass: in.SubClass, Protocol: in.Protocol}
	}
	return p
}

// FromScan converts a sysfs scan. Without a record of arrivals, a bus's
// device numbers stand for the order (the kernel hands them out in
// increasing order as devices arrive, until they wrap at 127).
func FromScan(devs []usbsysfs.Device) []policy.Device {
	out := make([]policy.Device, len(devs))
	for i, d := range devs {
		out[i] = PolicyDevice(d, uint64(d.DevNum))
	}
	return out
}
