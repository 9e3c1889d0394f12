// Package fakekernel builds sysfs fixture trees laid out as the Linux
// kernel lays them out, and runs a fake kernel over them: writes to bind,
// unbind and drivers_probe move the driver links at once and fail with the
// errnos a real kernel returns (the captures of a real kernel are in
// testdata/errno-table.md).
//
// It is an ordinary package, not a test one: `usbhotplugd replay` runs
// the agent on it, and it imports no testing, so the daemon links none.
package fakekernel
