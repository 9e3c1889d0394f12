//go:build !linux

package xenstore

import (
	"context"
	"io"
	"net"
)

func dialUnix(ctx context.Context, path string) (io.ReadWriteCloser, error) {
	var d net.Dialer
	return retryDial(ctx, func() (io.ReadWriteCloser, error) { return d.DialContext(ctx, "unix", path) })
}
