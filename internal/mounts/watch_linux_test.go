package mounts_test

import (
	"context"
	"fmt"
	"os"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/usbhotplugd/usbhotplugd/internal/mounts"
	"github.com/usbhotplugd/usbhotplugd/internal/nstest"
)

// The watch is tested in a fresh user+mount namespace, where a tmpfs can
// be mounted and unmounted without touching the host: TestWatchInNamespace
// re-executes the test binary there, and TestMain runs the body.
const nsEnv = "USBHOTPLUGD_MOUNTS_NS_CHILD"

func TestMain(m *testing.M) {
	if nstest.Child(nsEnv) {
		if err := watchBody(); err != nil {
			fmt.Println("FAIL:", err)
			os.Exit(1)
		}
		fmt.Println("namespace checks passed")
		os.Exit(0)
	}
	os.Exit(m.Run())
}

func TestWatchInNamespace(t *testing.T) {
	out, err := nstest.Run(t, nsEnv, syscall.CLONE_NEWNS, nil)
	if err != nil {
		t.Fatalf("namespace run failed: %v\n%s", err, out)
	}
	t.Logf("%s", out)
}

// watchBody: a mount and an unmount each wake the watch, and the
// mountinfo read after the wake shows the change; the end of the context
// ends the watch.
func watchBody() error {
	dir, err := os.MkdirTemp("", "mounts-watch")
	if err != nil {
		return err
	}
	defer os.Remove(dir)
	w, err := mounts.OpenWatch(mounts.Default)
	if err != nil {
		return err
	}
	defer w.Close()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	changes := make(chan struct{}, 16)
	done := make(chan error, 1)
	go func() { done <- w.Run(ctx, func() { changes <- struct{}{} }) }()
	mounted := func() (bool, error) {
		tab, err := mounts.Read(mounts.Default)
		if err != nil {
			return false, err
		}
		for _, m := range tab {
			if m.Point == dir {
				return true, nil
			}
		}
		return false, nil
	}
	await := func(what string, want bool, act func() error) error {
		if err := act(); err != nil {
			return fmt.Errorf("%s: %w", what, err)
		}
		select {
		case <-changes:
			got, err := mounted()
			if err != nil {
				return err
			}
			if got != want {
				return fmt.Errorf("%s: woken, but mountinfo shows mounted=%v", what, got)
			}
			return nil
		case err := <-done:
			return fmt.Errorf("%s: the watch ended: %v", what, err)
		case <-time.After(20 * time.Second):
			return fmt.Errorf("%s: no wake in 20 s", what)
		}
	}
	if err := await("mount", true, func() error { return unix.Mount("none", dir, "tmpfs", 0, "size=1m") }); err != nil {
		return err
	}
	for len(changes) > 0 {
		<-changes
	}
	if err := await("unmount", false, func() error { return unix.Unmount(dir, 0) }); err != nil {
		return err
	}
	cancel()
	select {
	case err := <-done:
		if err != nil {
			return fmt.Errorf("the watch ended with %v, not nil", err)
		}
	case <-time.After(20 * time.Second):
		return fmt.Errorf("the watch did not end with its context")
	}
	return nil
}

// A path that cannot be opened is an error that names it.
func TestWatchMissingFile(t *testing.T) {
	_, err := mounts.OpenWatch("/nonexistent/mountinfo")
	if err == nil || !strings.Contains(err.Error(), "/nonexistent/mountinfo") {
		t.Fatalf("err = %v", err)
	}
}
