// Package qmp is a small client for QEMU's machine protocol (QMP), enough
// for what libxl does with a guest's device model for USB: connect to the
// socket, negotiate capabilities, run a command with a deadline, and
// return QEMU's error class and description as they came. Events are
// skipped. A Client runs one command at a time.
package qmp
