package main

import (
	"fmt"

	"github.com/spf13/cobra"

	"github.com/usbhotplugd/usbhotplugd/internal/xenstore/server"
)

func init() {
	register(command{name: "xenstored", group: groupTool, examples: []string{"usbhotplugd xenstored --socket /tmp/xs.sock"}, new: newXenstoredCmd})
}

func newXenstoredCmd() *cobra.Command {
	c := &cobra.Command{
		Use:   "xenstored --socket PATH",
		Short: "serve an embedded, in-memory xenstored on a unix socket",
	}
	sock := c.Flags().String("socket", "", "unix socket to serve the store on (required; never the host's /run/xenstored/socket)")
	c.RunE = func(c *cobra.Command, args []string) error {
		if *sock == "" {
			return &usageError{"--socket PATH is required: a path of its own, not the host xenstored's"}
		}
		srv := server.New()
		l, err := srv.Listen(*sock)
		if err != nil {
			return err
		}
		fmt.Fprintf(c.OutOrStdout(), "serving xenstore on %s (export XENSTORED_PATH=%s)\n", *sock, *sock)
		<-c.Context().Done()
		l.Close()
		return srv.Close()
	}
	return c
}
