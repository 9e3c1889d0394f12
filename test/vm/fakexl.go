package vmtest

import (
	"context"
	"fmt"
	"strconv"
	"strings"

	"github.com/usbhotplugd/usbhotplugd/internal/assign"
	"github.com/usbhotplugd/usbhotplugd/internal/inventory"
	"github.com/usbhotplugd/usbhotplugd/internal/mounts"
	"github.com/usbhotplugd/usbhotplugd/policy"
)

// XL runs an xl-like command as the binary's usbctrl-attach,
// usbdev-attach and usbdev-detach do: the same argument parsers and the
// same assign.Host calls, on the fake's store connection and its sysfs,
// with the fake kernel taking the writes. --force is not taken: no
// scenario attaches a disk dom0 uses.
func (f *fakeMachine) XL(ctx context.Context, args []string) error {
	if len(args) < 2 {
		return fmt.Errorf("xl %s: SUBCOMMAND DOMAIN ARGS", strings.Join(args, " "))
	}
	h := &assign.Host{XS: f.xs, Sys: f.sys}
	if err := f.xl(ctx, h, args[0], args[1], args[2:]); err != nil {
		return fmt.Errorf("xl %s: %w", strings.Join(args, " "), err)
	}
	return nil
}

func (f *fakeMachine) xl(ctx context.Context, h *assign.Host, cmd, dom string, rest []string) error {
	switch cmd {
	case "usbctrl-attach":
		spec, err := policy.ParseCtrlArgs(rest)
		if err != nil {
			return err
		}
		d, err := h.Domain(ctx, dom)
		if err != nil {
			return err
		}
		_, err = h.AddController(ctx, d.ID, spec, true)
		return err
	case "usbdev-attach":
		spec, err := policy.ParseDevArgs(rest)
		if err != nil {
			return err
		}
		d, err := h.DomainAhead(ctx, dom)
		if err != nil {
			return err
		}
		spec, opts := h.ReadDevice(spec)
		if opts.Device != nil {
			if why := inventory.InUse(h.Sys, *opts.Device, mounts.Default); why != "" {
				return fmt.Errorf("%s is in use by dom0: %s", opts.Device.BusID, why)
			}
		}
		_, err = h.AttachWith(ctx, d.ID, spec, opts)
		return err
	case "usbdev-detach":
		if len(rest) != 2 {
			return fmt.Errorf("usbdev-detach DOMAIN CONTROLLER PORT")
		}
		ctrl, err1 := strconv.Atoi(rest[0])
		port, err2 := strconv.Atoi(rest[1])
		if err1 != nil || err2 != nil || ctrl < 0 || port < 1 {
			return fmt.Errorf("%s %s: CONTROLLER and PORT are numbers (ports count from 1)", rest[0], rest[1])
		}
		d, err := h.Domain(ctx, dom)
		if err != nil {
			return err
		}
		return h.Detach(ctx, d.ID, ctrl, port)
	}
	return fmt.Errorf("%q: the fake machine runs usbctrl-attach, usbdev-attach and usbdev-detach", cmd)
}
