package main

import (
	"fmt"
	"path/filepath"

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
		if hostStoreDir(*sock) {
			return &usageError{fmt.Sprintf("--socket %s: that is where the host's xenstored serves dom0's toolstack; give a path of its own", *sock)}
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

// hostStoreDir says whether path is in the host xenstored's run directory
// (/run/xenstored, also as /var/run/xenstored or through a symlink): no
// socket of ours belongs there, even one the host's daemon does not use.
func hostStoreDir(path string) bool {
	abs, err := filepath.Abs(path)
	if err != nil {
		return false
	}
	dir := filepath.Dir(abs)
	if real, err := filepath.EvalSymlinks(dir); err == nil {
		dir = real
	}
	for _, host := range []string{"/run/xenstored", "/var/run/xenstored"} {
		if dir == host {
			return true
		}
		if real, err := filepath.EvalSymlinks(host); err == nil && dir == real {
			return true
		}
	}
	return false
}
