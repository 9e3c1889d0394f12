package main

import (
	"context"
	"fmt"
	"io"

	"github.com/usbhotplugd/usbhotplugd/internal/build"
	"github.com/usbhotplugd/usbhotplugd/internal/xenstore/server"
)

func runXenstored(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlags("xenstored", "--socket PATH", stderr)
	sock := fs.String("socket", "/run/xenstored/socket", "unix socket to serve the store on")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if fs.NArg() != 0 {
		return &usageError{fmt.Sprintf("unexpected argument %q", fs.Arg(0))}
	}
	srv := server.New()
	l, err := srv.Listen(*sock)
	if err != nil {
		return err
	}
	fmt.Fprintf(stdout, "serving xenstore on %s (export XENSTORED_PATH=%s)\n", *sock, *sock)
	<-ctx.Done()
	l.Close()
	return srv.Close()
}

func runVersion(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlags("version", "", stderr)
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	fmt.Fprintf(stdout, "usbhotplugd %s (commit %s, %s)\n", build.Version, build.Commit, build.GoVersion())
	return nil
}
