package uevent

import "context"

// A Message is what a Source delivers: an event, or Overrun when the kernel
// dropped datagrams because the receive buffer was full (the caller must
// rescan sysfs, since it cannot know what it missed).
type Message struct {
	Event    Event
	Overrun  bool
	Coldplug bool // made from sysfs by a coldplug scan, not sent by the kernel
}

// A Source delivers messages; a *Listener is one.
type Source interface {
	Receive(ctx context.Context) (Message, error)
}
