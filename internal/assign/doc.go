// Package assign does what libxl does for PVUSB: it adds and removes USB
// controllers of a guest and attaches and detaches host USB devices, with
// exactly libxl's xenstore layout (keys, order, permissions, transaction
// boundaries) and sysfs writes, so that `xl usb-list` shows what it did
// and it can undo what xl did.
//
// Where libxl is fragile this package is not, and says so: a port that
// still names a device that has left the host does not make every later
// attach fail (Repair clears such ports), and every busid or path read
// from xenstore is validated before it reaches sysfs.
package assign
