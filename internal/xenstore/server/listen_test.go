package server_test

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	xs "github.com/usbhotplugd/usbhotplugd/internal/xenstore"
	"github.com/usbhotplugd/usbhotplugd/internal/xenstore/server"
	"github.com/usbhotplugd/usbhotplugd/internal/xenstore/xenstoretest"
)

// serves checks that a store answers at path.
func serves(t *testing.T, path string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c, err := xs.DialPath(ctx, path)
	if err != nil {
		t.Fatalf("dialling %s: %v", path, err)
	}
	defer c.Close()
	if _, err := c.Read(ctx, "/tool/xenstored"); err != nil {
		t.Fatalf("reading through %s: %v", path, err)
	}
}

// staleSocket leaves a socket file at path that nobody listens on, as a
// killed server leaves it.
func staleSocket(t *testing.T, path string) {
	t.Helper()
	l, err := net.Listen("unix", path)
	if err != nil {
		t.Fatal(err)
	}
	l.(*net.UnixListener).SetUnlinkOnClose(false)
	l.Close()
	if _, err := net.Dial("unix", path); !errors.Is(err, syscall.ECONNREFUSED) {
		t.Fatalf("stale socket answers: %v", err)
	}
}

// A socket that answers is refused, its holder named, and left serving.
func TestListenRefusesLiveSocket(t *testing.T) {
	path := filepath.Join(t.TempDir(), "socket")
	first := server.New()
	defer first.Close()
	if _, err := first.Listen(path); err != nil {
		t.Fatal(err)
	}
	second := server.New()
	defer second.Close()
	_, err := second.Listen(path)
	if !errors.Is(err, server.ErrSocketInUse) {
		t.Fatalf("second Listen: %v, want ErrSocketInUse", err)
	}
	comm, _ := os.ReadFile("/proc/self/comm")
	holder := fmt.Sprintf("pid %d (%s)", os.Getpid(), strings.TrimSpace(string(comm)))
	if !strings.Contains(err.Error(), path) || !strings.Contains(err.Error(), holder) {
		t.Fatalf("error %q names neither %s nor %s", err, path, holder)
	}
	serves(t, path)
}

// A socket nobody listens on is replaced, and the new server answers.
func TestListenReplacesStaleSocket(t *testing.T) {
	path := filepath.Join(t.TempDir(), "socket")
	staleSocket(t, path)
	srv := server.New()
	defer srv.Close()
	if _, err := srv.Listen(path); err != nil {
		t.Fatal(err)
	}
	serves(t, path)
}

// Closing removes the socket Listen made, and only that one: a socket
// another server put at the path meanwhile stays.
func TestListenRemovesOnlyItsOwnSocket(t *testing.T) {
	path := filepath.Join(t.TempDir(), "socket")
	l, err := server.Listen(path)
	if err != nil {
		t.Fatal(err)
	}
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Lstat(path); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("own socket left at %s after Close: %v", path, err)
	}

	l, err = server.Listen(path)
	if err != nil {
		t.Fatal(err)
	}
	os.Remove(path)
	staleSocket(t, path) // another's, made after ours
	before, _ := os.Lstat(path)
	l.Close()
	after, err := os.Lstat(path)
	if err != nil || !os.SameFile(before, after) {
		t.Fatalf("Close removed a socket it did not make: %v", err)
	}
}

// Anything but a socket at the path is refused and left as it was.
func TestListenRefusesNonSocket(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "file")
	if err := os.WriteFile(file, []byte("keep me"), 0o600); err != nil {
		t.Fatal(err)
	}
	fifo := filepath.Join(dir, "fifo")
	if err := syscall.Mkfifo(fifo, 0o600); err != nil {
		t.Fatal(err)
	}
	for path, kind := range map[string]string{file: "a regular file", fifo: "a FIFO", dir: "a directory"} {
		_, err := server.Listen(path)
		if !errors.Is(err, server.ErrNotSocket) || !strings.Contains(err.Error(), path) || !strings.Contains(err.Error(), kind) {
			t.Errorf("Listen(%s): %v, want ErrNotSocket naming %s", path, err, kind)
		}
	}
	if b, err := os.ReadFile(file); err != nil || string(b) != "keep me" {
		t.Fatalf("refused file changed: %q, %v", b, err)
	}
	if fi, err := os.Lstat(fifo); err != nil || fi.Mode()&os.ModeNamedPipe == 0 {
		t.Fatalf("refused FIFO changed: %v", err)
	}
}

// The socket of a real C xenstored, as dom0's own would be, is refused with
// the daemon named, and it keeps serving.
func TestListenRefusesRealXenstored(t *testing.T) {
	real := xenstoretest.Real(t)
	_, err := server.Listen(real.SocketPath())
	if !errors.Is(err, server.ErrSocketInUse) || !strings.Contains(err.Error(), "(xenstored)") {
		t.Fatalf("Listen on the C xenstored's socket: %v, want ErrSocketInUse naming xenstored", err)
	}
	serves(t, real.SocketPath())
}
