package agent_test

import (
	"bytes"
	"context"
	"errors"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"github.com/rs/zerolog"
	"github.com/usbhotplugd/usbhotplugd/internal/agent"
	"github.com/usbhotplugd/usbhotplugd/internal/assign"
	"github.com/usbhotplugd/usbhotplugd/internal/fakekernel"
	"github.com/usbhotplugd/usbhotplugd/internal/usbsysfs"
	xs "github.com/usbhotplugd/usbhotplugd/internal/xenstore"
	"github.com/usbhotplugd/usbhotplugd/internal/xenstore/xenstoretest"
	"github.com/usbhotplugd/usbhotplugd/policy"
)

// A watch the store refuses, its connection staying up, ends Serve with
// the reason: the watches set before it end too, rather than keep Serve
// waiting for a disconnection that never comes.
func TestServeEndsWhenAWatchIsRefused(t *testing.T) {
	xenstoretest.ForEach(t, func(t *testing.T, s xenstoretest.Store) {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		conn, err := xs.DialPath(ctx, refusingWatch(t, s.SocketPath(), "/local/domain/0/backend"))
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		root := t.TempDir()
		if err := fakekernel.XL(root); err != nil {
			t.Fatal(err)
		}
		p, err := policy.Parse("test.toml", nil, nil)
		if err != nil {
			t.Fatal(err)
		}
		a := agent.New(agent.Config{Host: &assign.Host{XS: conn, Sys: usbsysfs.NewFS(root).WithWriter(fakekernel.NewKernel(root))}, Policy: p, Log: zerolog.Nop(),
			Mountinfo: filepath.Join(t.TempDir(), "none")})
		err = a.Serve(ctx, nil)
		if !errors.Is(err, syscall.EACCES) || ctx.Err() != nil {
			t.Fatalf("Serve: %v (context: %v)", err, ctx.Err())
		}
	})
}

// refusingWatch is a proxy to the store at target that answers a WATCH of
// path with EACCES itself, and passes everything else.
func refusingWatch(t *testing.T, target, path string) string {
	return xenstoretest.Proxy(t, target, func(h xs.Header, payload []byte) string {
		if h.Type == xs.TypeWatch && bytes.HasPrefix(payload, []byte(path+"\x00")) {
			return "EACCES"
		}
		return ""
	})
}
