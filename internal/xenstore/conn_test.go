package xenstore_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"sync"
	"testing"
	"time"

	"github.com/usbhotplugd/usbhotplugd/internal/xenstore"
	"github.com/usbhotplugd/usbhotplugd/internal/xenstore/server"
)

func pipeConn(t *testing.T) (*xenstore.Conn, *server.Server) {
	srv := server.New()
	c := xenstore.NewConn(srv.Pipe(0))
	t.Cleanup(func() { c.Close(); srv.Close() })
	return c, srv
}

// silentPeer reads requests and never answers.
func silentPeer(t *testing.T) (*xenstore.Conn, net.Conn) {
	a, b := net.Pipe()
	go io.Copy(io.Discard, b)
	c := xenstore.NewConn(a)
	t.Cleanup(func() { c.Close(); b.Close() })
	return c, b
}

func TestConcurrentCalls(t *testing.T) {
	c, _ := pipeConn(t)
	ctx := context.Background()
	var wg sync.WaitGroup
	errs := make(chan error, 64)
	for g := range 16 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range 50 {
				p := fmt.Sprintf("/conc/%d/%d", g, i)
				if err := c.Write(ctx, p, []byte(p)); err != nil {
					errs <- err
					return
				}
				v, err := c.Read(ctx, p)
				if err != nil || string(v) != p {
					errs <- fmt.Errorf("read %s = %q, %v", p, v, err)
					return
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
}

func TestCancelReturnsAtOnce(t *testing.T) {
	c, _ := silentPeer(t)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { _, err := c.Read(ctx, "/x"); done <- err }()
	cancel()
	select {
	case err := <-done:
		if !errors.Is(err, context.Canceled) {
			t.Fatalf("got %v, want context.Canceled", err)
		}
	case <-time.After(time.Second):
		t.Fatal("canceled call did not return")
	}
}

func TestCloseFailsPendingWithErrClosed(t *testing.T) {
	c, _ := silentPeer(t)
	done := make(chan error, 1)
	go func() { _, err := c.Read(context.Background(), "/x"); done <- err }()
	if err := c.Close(); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-done:
		if !errors.Is(err, net.ErrClosed) {
			t.Fatalf("pending call got %v, want net.ErrClosed", err)
		}
	case <-time.After(time.Second):
		t.Fatal("Close did not unblock the pending call")
	}
	if err := c.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
	if _, err := c.Read(context.Background(), "/x"); !errors.Is(err, net.ErrClosed) {
		t.Fatalf("call after Close: %v", err)
	}
	if !errors.Is(c.Err(), net.ErrClosed) {
		t.Fatalf("Err() = %v", c.Err())
	}
}

func TestLostConnectionIsReported(t *testing.T) {
	c, peer := silentPeer(t)
	w := make(chan error, 1)
	go func() { _, err := c.Read(context.Background(), "/x"); w <- err }()
	peer.Close()
	select {
	case <-c.Done():
	case <-time.After(time.Second):
		t.Fatal("Done not closed after the peer went away")
	}
	if err := <-w; !errors.Is(err, xenstore.ErrDisconnected) {
		t.Fatalf("pending call got %v, want ErrDisconnected", err)
	}
	if !errors.Is(c.Err(), xenstore.ErrDisconnected) {
		t.Fatalf("Err() = %v", c.Err())
	}
}

func TestWatchChannelClosedOnLoss(t *testing.T) {
	srv := server.New()
	c := xenstore.NewConn(srv.Pipe(0))
	defer c.Close()
	ch, err := c.Watch(context.Background(), "/w", "t")
	must(t, err)
	nextEvent(t, ch)
	srv.Close()
	select {
	case _, ok := <-ch:
		if ok {
			t.Fatal("event after the store went away")
		}
	case <-time.After(2 * time.Second):
		t.Fatal("watch channel not closed after the store went away")
	}
}

func TestOversizedReplyIsProtocolError(t *testing.T) {
	a, b := net.Pipe()
	c := xenstore.NewConn(a)
	defer c.Close()
	go func() {
		hdr := make([]byte, 16)
		io.ReadFull(b, hdr) // the request header
		buf := make([]byte, 64)
		b.Read(buf)
		bad := xenstore.AppendHeader(nil, xenstore.Header{Type: xenstore.TypeRead, ReqID: 1, Len: 1 << 30})
		b.Write(bad)
	}()
	_, err := c.Read(context.Background(), "/x")
	var pe *xenstore.ProtocolError
	if !errors.As(err, &pe) {
		t.Fatalf("got %v, want a ProtocolError", err)
	}
}

func TestRequestChecks(t *testing.T) {
	c, _ := pipeConn(t)
	ctx := context.Background()
	for _, p := range []string{"", "/a//b", "/a/", "/a b", "@x", "/" + string(make([]byte, 3100))} {
		if err := c.Write(ctx, p, nil); !errors.Is(err, xenstore.ErrInvalidPath) {
			t.Errorf("Write(%q): %v, want ErrInvalidPath", p, err)
		}
	}
	if _, err := c.Watch(ctx, "/a", ""); err == nil {
		t.Error("empty token accepted")
	}
	_, err := c.Watch(ctx, "/a", "same")
	must(t, err)
	if _, err := c.Watch(ctx, "/b", "same"); err == nil {
		t.Error("token reused on one Conn")
	}
}

func TestPermsParse(t *testing.T) {
	for _, tc := range []struct {
		in, want string
		ok       bool
	}{
		{"n0", "n0", true}, {"n0 r5", "n0 r5", true}, {"b3  w1", "b3 w1", true},
		{"", "", false}, {"x1", "", false}, {"r", "", false}, {"r-1", "", false},
		{"r65536", "", false}, {"r1a", "", false}, {"R1", "", false},
	} {
		ps, err := xenstore.ParsePerms(tc.in)
		if (err == nil) != tc.ok {
			t.Errorf("ParsePerms(%q) error %v, want ok=%v", tc.in, err, tc.ok)
			continue
		}
		if tc.ok && ps.String() != tc.want {
			t.Errorf("ParsePerms(%q) = %q, want %q", tc.in, ps, tc.want)
		}
		if !tc.ok && !errors.Is(err, xenstore.ErrInvalidPerm) {
			t.Errorf("ParsePerms(%q) error %v is not ErrInvalidPerm", tc.in, err)
		}
	}
}

// A consumer that does not keep up gets at most a bounded number of a
// storm's events, and then the watched path itself, standing for those
// dropped: the memory of a watch is bounded, and nothing is lost that a
// read of the path would not find.
func TestWatchStormIsBounded(t *testing.T) {
	a, peer := net.Pipe()
	c := xenstore.NewConn(a)
	t.Cleanup(func() { c.Close(); peer.Close() })
	const storm = 8192
	answer := func() error { // reads one request, answers it with payload
		var hdr [xenstore.HeaderSize]byte
		if _, err := io.ReadFull(peer, hdr[:]); err != nil {
			return err
		}
		h, err := xenstore.ParseHeader(hdr[:])
		if err != nil {
			return err
		}
		if _, err := io.CopyN(io.Discard, peer, int64(h.Len)); err != nil {
			return err
		}
		payload := "OK\x00"
		if h.Type == xenstore.TypeRead {
			payload = "v"
		}
		_, err = peer.Write(reply(h.Type, h.ReqID, payload))
		return err
	}
	peerDone := make(chan error, 1)
	go func() {
		if err := answer(); err != nil { // the watch
			peerDone <- err
			return
		}
		for i := range storm {
			if _, err := peer.Write(reply(xenstore.TypeWatchEvent, 0, fmt.Sprintf("/a/%d\x00t\x00", i))); err != nil {
				peerDone <- err
				return
			}
		}
		peerDone <- answer() // the read that follows the storm
	}()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	ch, err := c.Watch(ctx, "/a", "t")
	if err != nil {
		t.Fatal(err)
	}
	// Its reply comes after every event of the storm: when it is back,
	// the reader has queued (or dropped) them all.
	if _, err := c.Read(ctx, "/b"); err != nil {
		t.Fatal(err)
	}
	if err := <-peerDone; err != nil {
		t.Fatal(err)
	}
	var got []string
	for {
		select {
		case ev := <-ch:
			got = append(got, ev.Path)
		case <-ctx.Done():
			t.Fatalf("no event of the watched path after %d events", len(got))
		}
		if got[len(got)-1] == "/a" {
			break
		}
	}
	if len(got) > storm/4 {
		t.Errorf("%d of %d events were held for the consumer", len(got), storm)
	}
	for i, p := range got[:len(got)-1] {
		if want := fmt.Sprintf("/a/%d", i); p != want {
			t.Fatalf("event %d is %s, not %s: the events kept are the first, in order", i, p, want)
		}
	}
}
