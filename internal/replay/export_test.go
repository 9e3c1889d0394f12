package replay

import (
	"context"

	"github.com/usbhotplugd/usbhotplugd/internal/uevent"
)

// Live runs the agent as the daemon runs it, on a host whose sysfs is
// already at o.Root and whose domains are running: the agent reads the
// coldplug scan of the tree, as it does at its start.
func Live(ctx context.Context, o Options, domains []uevent.DomainChange) (*Result, error) {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	w, err := newWorld(ctx, o, domains...)
	if err != nil {
		return nil, err
	}
	defer w.close()
	defer cancel()
	evs, err := uevent.Scan(w.h.Sys)
	if err != nil {
		return nil, err
	}
	for _, e := range evs {
		w.a.Handle(ctx, uevent.Message{Event: e, Coldplug: true})
	}
	if err := w.settle(ctx); err != nil {
		return nil, err
	}
	return w.result(ctx)
}
