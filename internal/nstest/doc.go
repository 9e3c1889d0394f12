// Package nstest gives tests real kernel objects that do not touch the
// host: part of a test run in fresh user and network or mount namespaces
// (where it may do as root what it must not do to the host: receive and
// send uevents, mount and unmount; the test binary re-executes itself
// there and its TestMain runs the part when Child says so), and loop
// devices, real block devices to open, hold and let go.
package nstest
