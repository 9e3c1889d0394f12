// Package usbname names USB devices and interfaces exactly as the Linux
// kernel names them in /sys/bus/usb/devices, and refuses every other
// string. It is the one validator for names read from sysfs, uevents,
// xenstore (which guests can influence), policies and command lines, so
// that a name accepted anywhere is one the kernel can make and can never
// escape a sysfs directory when joined into a path.
//
// The kernel's forms and limits (drivers/usb/core):
//
//   - a root hub is "usbB", B the bus number, 1..63 (bus numbers are
//     allocated from 1 below USB_MAXBUS, 64);
//   - any other device is "B-P[.P...]": the bus, then the port on the root
//     hub and on each hub below it, each 1..31 (USB_MAXCHILDREN), at most
//     6 ports deep (a hub at MAX_TOPO_LEVEL, 6, is refused, so devices end
//     at tier 6);
//   - an interface is "DEV:C.I", DEV a device's port path ("B-0" for a
//     root hub, whose devpath is "0"), C its configuration value and I its
//     interface number, each 0..255 (one byte in the descriptors).
//
// Numbers are decimal without leading zeros, as the kernel prints them.
package usbname
