// Package fakekernel builds sysfs fixture trees laid out as the Linux
// kernel lays them out, and runs a fake kernel over them: writes to bind,
// unbind, drivers_probe and the authorization attributes change the tree
// at once as a real kernel changes it, fail with the errnos a real kernel
// returns (testdata/errno-table.md, captured from one), and send the usb
// events a real kernel sends, in its order and with its keys (checked
// against the uevent package's captures).
//
// It is an ordinary package, not a test one: `usbhotplugd replay` runs
// the agent on it, and it imports no testing, so the daemon links none.
package fakekernel
