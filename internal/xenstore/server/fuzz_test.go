package server_test

import (
	"testing"

	xs "github.com/usbhotplugd/usbhotplugd/internal/xenstore"
	"github.com/usbhotplugd/usbhotplugd/internal/xenstore/server"
)

// FuzzServerRequest sends arbitrary requests as dom0 and as a guest: the
// server never panics and never replies with more than the protocol allows.
func FuzzServerRequest(f *testing.F) {
	seeds := []struct {
		typ uint32
		tx  uint32
		p   string
	}{
		{uint32(xs.TypeWrite), 0, "/a/b\x00value"},
		{uint32(xs.TypeRead), 0, "/tool/xenstored\x00"},
		{uint32(xs.TypeDirectory), 0, "/\x00"},
		{uint32(xs.TypeDirectoryPart), 0, "/\x000\x00"},
		{uint32(xs.TypeSetPerms), 0, "/tool\x00n0\x00r5\x00"},
		{uint32(xs.TypeWatch), 0, "/a\x00tok\x00"},
		{uint32(xs.TypeTransactionStart), 0, "\x00"},
		{uint32(xs.TypeTransactionEnd), 1, "T\x00"},
		{uint32(xs.TypeIntroduce), 0, "5\x001\x001\x00"},
		{uint32(xs.TypeRelease), 0, "5\x00"},
		{uint32(xs.TypeRm), 0, "/tool\x00"},
		{99, 0, ""},
	}
	for _, s := range seeds {
		f.Add(s.typ, s.tx, []byte(s.p), uint32(0))
		f.Add(s.typ, s.tx, []byte(s.p), uint32(5))
	}
	f.Fuzz(func(t *testing.T, typ, tx uint32, payload []byte, domid uint32) {
		if len(payload) > xs.PayloadMax {
			return // the reader drops such a client before handling
		}
		srv := server.New()
		defer srv.Close()
		srv.Handle(0, xs.Header{Type: xs.TypeWrite}, []byte("/local/domain/5/x\x00v"))
		srv.Handle(0, xs.Header{Type: xs.TypeTransactionStart}, []byte("\x00"))
		for _, d := range []uint32{0, domid % 8} {
			rt, r := srv.Handle(d, xs.Header{Type: xs.MsgType(typ), TxID: tx, Len: uint32(len(payload))}, payload)
			if len(r) > xs.PayloadMax {
				t.Fatalf("reply of %d bytes", len(r))
			}
			if rt != xs.TypeError && rt != xs.MsgType(typ) {
				t.Fatalf("reply type %v to %v", rt, xs.MsgType(typ))
			}
		}
	})
}
