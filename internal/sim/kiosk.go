package sim

import (
	"context"
	"fmt"

	"github.com/usbhotplugd/usbhotplugd/internal/xenstore"
)

// StartKiosk makes the host most tests start from: dom0 and the PV guest
// kiosk seeded over xs, kiosk introduced as a running guest, and the
// backends simulated over their own connection, backXS. Stop the Running
// when done.
func StartKiosk(ctx context.Context, xs, backXS *xenstore.Conn) (*Backends, *Running, error) {
	if err := SeedDom0(ctx, xs); err != nil {
		return nil, nil, fmt.Errorf("sim: dom0: %w", err)
	}
	if err := SeedDomain(ctx, xs, KioskDomain); err != nil {
		return nil, nil, fmt.Errorf("sim: %s: %w", KioskDomain.Name, err)
	}
	if err := xs.Introduce(ctx, KioskDomain.ID, 1, 1); err != nil {
		return nil, nil, fmt.Errorf("sim: introducing %s: %w", KioskDomain.Name, err)
	}
	b := &Backends{XS: backXS}
	r, err := b.Start(ctx)
	if err != nil {
		return nil, nil, fmt.Errorf("sim: backends: %w", err)
	}
	return b, r, nil
}
