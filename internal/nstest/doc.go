// Package nstest runs part of a test in a fresh user namespace, with a
// network or mount namespace of its own, where it may do as root what it
// must not do to the host: receive and send uevents, mount and unmount.
// The test binary re-executes itself there; its TestMain runs the part
// when Child says so.
package nstest
