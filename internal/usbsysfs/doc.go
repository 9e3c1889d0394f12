// Package usbsysfs reads USB devices and interfaces from sysfs under an
// injectable root ("/sys" in production, a fixture tree in tests) and binds
// and unbinds interfaces to drivers.
//
// Every busid or interface name is validated before it is joined into a
// path, so a name read from xenstore (which guests can influence) can never
// escape /sys/bus/usb. Required attributes fail with the path in the error;
// optional ones (serial, strings) are empty when missing; a device that
// vanishes while it is read gives an error wrapping fs.ErrNotExist. A
// scan of the bus leaves out a device it cannot read and names it in an
// *UnreadableError beside the rest: one faulty device never hides the
// others.
//
// Authorization (authorize.go) is read with each device and interface and
// set through the kernel's authorized and interface_authorized_default
// attributes.
//
// Writes to sysfs attributes go through a Writer, which a fake kernel
// replaces in tests to move driver links as the real kernel does.
package usbsysfs
