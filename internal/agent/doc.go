// Package agent is usbhotplugd's daemon: a reconciler that keeps the host's
// USB devices where the policy sends them.
//
// Kernel uevents and xenstore watches are only hints: each names a device
// (by busid) or says "everything", and the device's entry in a coalescing
// queue is reconciled by reading the truth again — sysfs for the device,
// xenstore for the ports, the driver records and the agent's own ownership
// records under /tool/usbhotplugd. One pass over a device converges it:
// stale ports are cleared, half-done attaches are finished, half-done
// detaches are rolled back, and the device is attached to the domain the
// policy names if that domain runs. Every decision is one audit record.
package agent
