package xenstore_test

import (
	"bytes"
	"context"
	"io"
	"testing"
	"time"

	"github.com/usbhotplugd/usbhotplugd/internal/xenstore"
)

// scripted is a peer that answers with fixed bytes, then EOF.
type scripted struct{ r *bytes.Reader }

func (s *scripted) Read(b []byte) (int, error)  { return s.r.Read(b) }
func (s *scripted) Write(b []byte) (int, error) { return len(b), nil }
func (s *scripted) Close() error                { return nil }

func reply(typ xenstore.MsgType, id uint32, payload string) []byte {
	b := xenstore.AppendHeader(nil, xenstore.Header{Type: typ, ReqID: id, Len: uint32(len(payload))})
	return append(b, payload...)
}

// FuzzReplyDecoder feeds arbitrary bytes to a Conn as the store's output
// while calls are in flight: never a panic, never a hang.
func FuzzReplyDecoder(f *testing.F) {
	f.Add(reply(xenstore.TypeRead, 1, "value"))
	f.Add(reply(xenstore.TypeError, 1, "ENOENT\x00"))
	f.Add(append(reply(xenstore.TypeWatchEvent, 0, "/a\x00t\x00"), reply(xenstore.TypeDirectory, 1, "a\x00b\x00")...))
	f.Add(reply(xenstore.TypeGetPerms, 1, "n0\x00r5\x00"))
	f.Add(reply(xenstore.TypeDirectory, 1, ""))
	f.Add([]byte{1, 2, 3})
	f.Add(xenstore.AppendHeader(nil, xenstore.Header{Type: xenstore.TypeRead, ReqID: 1, Len: 0xffffffff}))
	// A listing past PayloadMax, as oxenstored sends it, cut short.
	f.Add(append(xenstore.AppendHeader(nil, xenstore.Header{Type: xenstore.TypeDirectory, ReqID: 2, Len: 1 << 20}), "a\x00b\x00"...))
	f.Fuzz(func(t *testing.T, data []byte) {
		c := xenstore.NewConn(&scripted{bytes.NewReader(data)})
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		c.Read(ctx, "/a")
		c.Directory(ctx, "/a")
		c.GetPerms(ctx, "/a")
		c.Begin(ctx)
		c.IsDomainIntroduced(ctx, 1)
		c.Close()
	})
}

func FuzzParseHeader(f *testing.F) {
	f.Add(reply(xenstore.TypeRead, 7, "x"))
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, b []byte) {
		h, err := xenstore.ParseHeader(b)
		if err == nil {
			if h.Len > xenstore.PayloadMax {
				t.Fatalf("accepted length %d", h.Len)
			}
			if !bytes.Equal(xenstore.AppendHeader(nil, h), b[:16]) {
				t.Fatal("header does not round-trip")
			}
		}
	})
}

var _ io.ReadWriteCloser = (*scripted)(nil)
