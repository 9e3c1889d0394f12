package main

import (
	"context"
	"fmt"
	"io"

	"github.com/usbhotplugd/usbhotplugd/internal/sim"
	"github.com/usbhotplugd/usbhotplugd/internal/xenstore"
	"github.com/usbhotplugd/usbhotplugd/internal/xenstore/server"
)

func runDemo(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlags("demo", "", stderr)
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if fs.NArg() != 0 {
		return &usageError{fmt.Sprintf("unexpected argument %q", fs.Arg(0))}
	}
	srv := server.New()
	defer srv.Close()
	c := xenstore.NewConn(srv.Pipe(0))
	defer c.Close()
	if err := sim.SeedDom0(ctx, c); err != nil {
		return err
	}
	if err := sim.SeedDomain(ctx, c, sim.KioskDomain); err != nil {
		return err
	}
	if err := c.Introduce(ctx, sim.KioskDomain.ID, 1, 1); err != nil {
		return err
	}
	fmt.Fprintln(stdout, "# embedded xenstore, seeded as a dom0 with one PV guest \"kiosk\" (domid 1)")
	return c.Dump(ctx, stdout, "/")
}
