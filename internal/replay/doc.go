// Package replay drives the agent with a recorded trace on a simulated
// dom0: the trace's devices appear in a sysfs tree as the kernel made
// them, its guests start and stop in a xenstore with simulated backends,
// and the agent's decisions come out as a timeline, followed by the final
// usb-list of every domain.
package replay
