// Package replay drives the agent with a recorded trace on a simulated
// dom0: the trace's devices appear in a sysfs tree as the kernel made
// them, its guests start and stop in a xenstore with simulated backends,
// and the agent's decisions come out as a timeline, followed by the final
// usb-list of every domain.
//
// The simulated host behaves as the real kernel did when the trace was
// made. Synthetic events (SYNTH_UUID: written to a uevent file) change
// nothing, except that a synthetic add of what the tree lacks shows a
// device that was there before the trace began. Devices a coldplug scan
// recorded were bound already: their add events name the driver, and the
// replay binds them to it; the scan's events reach the agent together, as
// the scan does at its start. The fake kernel's usbback takes only devices
// in its backends' ports, as the real one does.
package replay
