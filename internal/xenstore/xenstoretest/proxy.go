package xenstoretest

import (
	"net"
	"path/filepath"
	"sync"
	"testing"

	"github.com/usbhotplugd/usbhotplugd/internal/xenstore"
)

// Proxy stands between clients and the store at target, on a socket of
// its own, whose path it returns: each request goes to the store unless
// refuse names an errno for it ("EACCES"), which the proxy answers itself
// as the store would. Replies and watch events pass. It stops at the end
// of the test.
func Proxy(t testing.TB, target string, refuse func(h xenstore.Header, payload []byte) string) string {
	t.Helper()
	sock := filepath.Join(t.TempDir(), "proxy.sock")
	ln, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	t.Cleanup(func() { ln.Close(); wg.Wait() })
	wg.Go(func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			s, err := net.Dial("unix", target)
			if err != nil {
				c.Close()
				continue
			}
			var mu sync.Mutex // one writer of whole messages to the client
			wg.Go(func() {
				defer c.Close()
				for {
					h, payload, err := ReadMessage(s)
					if err != nil {
						return
					}
					mu.Lock()
					writeMessage(c, h, payload)
					mu.Unlock()
				}
			})
			wg.Go(func() {
				defer s.Close()
				for {
					h, payload, err := ReadMessage(c)
					if err != nil {
						return
					}
					errno := refuse(h, payload)
					if errno == "" {
						writeMessage(s, h, payload)
						continue
					}
					e := []byte(errno + "\x00")
					mu.Lock()
					writeMessage(c, xenstore.Header{Type: xenstore.TypeError, ReqID: h.ReqID, TxID: h.TxID, Len: uint32(len(e))}, e)
					mu.Unlock()
				}
			})
		}
	})
	return sock
}

// writeMessage writes one whole message, header and payload, in one write.
func writeMessage(w net.Conn, h xenstore.Header, payload []byte) {
	w.Write(append(xenstore.AppendHeader(nil, h), payload...))
}
