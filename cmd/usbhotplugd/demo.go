package main

import (
	"fmt"

	"github.com/spf13/cobra"

	"github.com/usbhotplugd/usbhotplugd/internal/sim"
	"github.com/usbhotplugd/usbhotplugd/internal/xenstore"
	"github.com/usbhotplugd/usbhotplugd/internal/xenstore/server"
)

func init() {
	register(command{name: "demo", group: groupTool, examples: []string{"usbhotplugd demo"}, new: newDemoCmd})
}

func newDemoCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "demo",
		Short: "start an embedded xenstore, seed it like a dom0 with one guest, and print its tree",
		RunE: func(c *cobra.Command, args []string) error {
			ctx, stdout := c.Context(), c.OutOrStdout()
			srv := server.New()
			defer srv.Close()
			xs := xenstore.NewConn(srv.Pipe(0))
			defer xs.Close()
			if err := sim.SeedDom0(ctx, xs); err != nil {
				return err
			}
			if err := sim.SeedDomain(ctx, xs, sim.KioskDomain); err != nil {
				return err
			}
			if err := xs.Introduce(ctx, sim.KioskDomain.ID, 1, 1); err != nil {
				return err
			}
			fmt.Fprintln(stdout, "# embedded xenstore, seeded as a dom0 with one PV guest \"kiosk\" (domid 1)")
			return xs.Dump(ctx, stdout, "/")
		},
	}
}
