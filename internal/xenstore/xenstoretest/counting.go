package xenstoretest

import (
	"encoding/binary"
	"io"
	"net"
	"sync"
	"testing"

	"github.com/usbhotplugd/usbhotplugd/internal/xenstore"
)

// Counting wraps a xenstore socket and counts requests, and round trips:
// the times the client sent while no reply was awaited, so requests
// pipelined behind one another count once.
type Counting struct {
	net.Conn
	mu                       sync.Mutex
	wbuf, rbuf               []byte
	outstanding, reqs, trips int
}

func (c *Counting) Write(b []byte) (int, error) {
	c.mu.Lock()
	c.wbuf = append(c.wbuf, b...)
	for len(c.wbuf) >= 16 {
		n := 16 + int(binary.LittleEndian.Uint32(c.wbuf[12:]))
		if len(c.wbuf) < n {
			break
		}
		c.reqs++
		if c.outstanding == 0 {
			c.trips++
		}
		c.outstanding++
		c.wbuf = c.wbuf[n:]
	}
	c.mu.Unlock()
	return c.Conn.Write(b)
}

func (c *Counting) Read(b []byte) (int, error) {
	n, err := c.Conn.Read(b)
	c.mu.Lock()
	c.rbuf = append(c.rbuf, b[:n]...)
	for len(c.rbuf) >= 16 {
		m := 16 + int(binary.LittleEndian.Uint32(c.rbuf[12:]))
		if len(c.rbuf) < m {
			break
		}
		if binary.LittleEndian.Uint32(c.rbuf) != uint32(xenstore.TypeWatchEvent) {
			c.outstanding--
		}
		c.rbuf = c.rbuf[m:]
	}
	c.mu.Unlock()
	return n, err
}

// Take returns the counts since the last Take and starts them again.
func (c *Counting) Take() (reqs, trips int) {
	c.mu.Lock()
	defer c.mu.Unlock()
	r, t := c.reqs, c.trips
	c.reqs, c.trips = 0, 0
	return r, t
}

// DialCounting connects to s through a Counting, closed when the test
// ends: a client whose requests and round trips the test reads.
func DialCounting(tb testing.TB, s Store) (*xenstore.Conn, *Counting) {
	tb.Helper()
	raw, err := net.Dial("unix", s.SocketPath())
	if err != nil {
		tb.Fatal(err)
	}
	cc := &Counting{Conn: raw}
	xs := xenstore.NewConn(cc)
	tb.Cleanup(func() { xs.Close() })
	return xs, cc
}

// ReadMessage reads one whole message of the wire protocol from r: what a
// test's proxy between a client and a store passes on or answers itself.
func ReadMessage(r io.Reader) (xenstore.Header, []byte, error) {
	b := make([]byte, xenstore.HeaderSize)
	if _, err := io.ReadFull(r, b); err != nil {
		return xenstore.Header{}, nil, err
	}
	h, err := xenstore.ParseHeader(b)
	if err != nil {
		return h, nil, err
	}
	payload := make([]byte, h.Len)
	_, err = io.ReadFull(r, payload)
	return h, payload, err
}
