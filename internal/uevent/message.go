package uevent

import "context"

// A Message is what a Source delivers: an event, or Overrun when the kernel
// dropped datagrams because the receive buffer was full, or Refused when
// the kernel sent one that failed validation. After either the caller
// must rescan sysfs, since it cannot know which device it missed.
type Message struct {
	Event   Event
	Overrun bool
	Refused error // why; it wraps ErrMalformed
	// RefusedSubsystem is the subsystem a refused datagram names, when
	// SubsystemOf can tell it: a caller that wants none of that
	// subsystem's events has lost none it wants.
	RefusedSubsystem string
	Coldplug         bool // made from sysfs by a coldplug scan, not sent by the kernel
}

// A Source delivers messages; a *Listener is one.
type Source interface {
	Receive(ctx context.Context) (Message, error)
}
