package xenstore_test

import (
	"context"
	"path/filepath"
	"testing"
	"time"

	"github.com/usbhotplugd/usbhotplugd/internal/xenstore"
	"github.com/usbhotplugd/usbhotplugd/internal/xenstore/server"
)

func nextSessionEvent(t *testing.T, s *xenstore.Session) xenstore.SessionEvent {
	t.Helper()
	select {
	case ev := <-s.Events():
		return ev
	case <-time.After(5 * time.Second):
		t.Fatal("no session event within 5s")
	}
	return xenstore.SessionEvent{}
}

func TestSessionRedialsAndRewatches(t *testing.T) {
	sock := filepath.Join(t.TempDir(), "s")
	srv := server.New()
	if _, err := srv.Listen(sock); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	s := xenstore.NewSession(func(ctx context.Context) (*xenstore.Conn, error) {
		return xenstore.DialPath(ctx, sock)
	})
	s.MinBackoff = time.Millisecond
	done := make(chan error, 1)
	go func() { done <- s.Run(ctx) }()
	defer func() {
		cancel()
		<-done
		srv.Close()
	}()

	must(t, s.Watch(ctx, "/sess", "tok"))
	c, err := s.Conn(ctx)
	must(t, err)
	if ev := nextSessionEvent(t, s); ev.Path != "/sess" || ev.Reconnected {
		t.Fatalf("first event %+v", ev)
	}
	must(t, c.Write(ctx, "/sess/a", nil))
	if ev := nextSessionEvent(t, s); ev.Path != "/sess/a" {
		t.Fatalf("event %+v", ev)
	}

	// The store restarts: the session notices, redials, re-registers.
	srv.Close()
	srv = server.New()
	if _, err := srv.Listen(sock); err != nil {
		t.Fatal(err)
	}
	got := map[string]bool{}
	for len(got) < 2 {
		ev := nextSessionEvent(t, s)
		if ev.Reconnected {
			got["reconnected"] = true
		} else if ev.Path == "/sess" {
			got["initial"] = true
		}
	}
	c2, err := s.Conn(ctx)
	must(t, err)
	if c2 == c {
		t.Fatal("Conn returned the dead connection")
	}
	must(t, c2.Write(ctx, "/sess/b", nil))
	if ev := nextSessionEvent(t, s); ev.Path != "/sess/b" {
		t.Fatalf("event after redial %+v", ev)
	}
}
