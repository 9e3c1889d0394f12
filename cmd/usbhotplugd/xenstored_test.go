package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/usbhotplugd/usbhotplugd/internal/xenstore"
	"github.com/usbhotplugd/usbhotplugd/internal/xenstore/xenstoretest"
)

// `xenstored` has no default socket: without --socket it is a usage error.
func TestXenstoredNeedsSocket(t *testing.T) {
	code, _, errs := runCmd(t, "xenstored")
	if code != exitUsage || !strings.Contains(errs, "--socket PATH is required") {
		t.Fatalf("exit %d, %q", code, errs)
	}
}

// The host xenstored's run directory is refused by name, whatever is
// there now and however it is spelled.
func TestXenstoredRefusesTheHostsRunDirectory(t *testing.T) {
	for _, p := range []string{"/run/xenstored/socket", "/var/run/xenstored/socket", "/run/xenstored/../xenstored/socket_ro", "/run/xenstored/mine"} {
		code, _, errs := runCmd(t, "xenstored", "--socket", p)
		if code != exitUsage || !strings.Contains(errs, "where the host's xenstored serves") {
			t.Errorf("--socket %s: exit %d, %q", p, code, errs)
		}
	}
}

// A socket another server answers on is refused, its holder named, and
// it keeps serving.
func TestXenstoredRefusesLiveSocket(t *testing.T) {
	other := xenstoretest.Embedded(t)
	code, _, errs := runCmd(t, "xenstored", "--socket", other.SocketPath())
	if want := fmt.Sprintf("pid %d", os.Getpid()); code != exitFailure || !strings.Contains(errs, want) || !strings.Contains(errs, other.SocketPath()) {
		t.Fatalf("exit %d, %q, want a failure naming %s and the path", code, errs, want)
	}
	if _, err := other.Dial(t).Read(context.Background(), "/tool/xenstored"); err != nil {
		t.Fatalf("the other server no longer answers: %v", err)
	}
}

// A regular file at the path is refused and left alone. Its own socket,
// which replaced a stale one, answers while it runs and is
// gone when it stops.
func TestXenstoredRemovesItsSocket(t *testing.T) {
	path := filepath.Join(t.TempDir(), "socket")
	if err := os.WriteFile(path, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	if code, _, errs := runCmd(t, "xenstored", "--socket", path); code != exitFailure || !strings.Contains(errs, "is a regular file, refusing") {
		t.Fatalf("regular file at the path: exit %d, %q", code, errs)
	}
	if b, err := os.ReadFile(path); err != nil || len(b) != 0 {
		t.Fatalf("the refused file changed: %q, %v", b, err)
	}
	os.Remove(path)
	l, err := net.Listen("unix", path) // a stale socket, as a killed server leaves it
	if err != nil {
		t.Fatal(err)
	}
	l.(*net.UnixListener).SetUnlinkOnClose(false)
	l.Close()

	ctx, stop := context.WithCancel(context.Background())
	defer stop()
	pr, pw := io.Pipe()
	done := make(chan int, 1)
	go func() {
		code := run(ctx, []string{"xenstored", "--socket", path}, pw, io.Discard)
		pw.Close()
		done <- code
	}()
	line := make([]byte, 256)
	var n int
	n, err = pr.Read(line) // the announcement: serving from here on
	if err != nil || !strings.Contains(string(line[:n]), path) {
		t.Fatalf("announcement %q, %v", line[:n], err)
	}
	dctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	c, err := xenstore.DialPath(dctx, path)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.Read(dctx, "/tool/xenstored"); err != nil {
		t.Fatal(err)
	}
	c.Close()
	go io.Copy(io.Discard, pr)
	stop()
	if code := <-done; code != 0 {
		t.Fatalf("exit %d", code)
	}
	if _, err := os.Lstat(path); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("socket left behind: %v", err)
	}
}
