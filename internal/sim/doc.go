// Package sim is a simulated dom0 for replay, tests and benchmarks: it
// seeds xenstore the way a booted dom0 and `xl create` leave it, and runs
// the state machines of the PVUSB backend (usbback or QEMU's qusb) and of
// the guests' xen-hcd frontends over xenstore, with options to make a
// backend slow, absent or failing.
package sim
