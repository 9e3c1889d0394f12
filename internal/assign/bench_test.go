package assign_test

import (
	"context"
	"encoding/binary"
	"net"
	"sync"
	"testing"
	"time"

	"github.com/usbhotplugd/usbhotplugd/internal/assign"
	"github.com/usbhotplugd/usbhotplugd/internal/sim"
	"github.com/usbhotplugd/usbhotplugd/internal/usbsysfs"
	"github.com/usbhotplugd/usbhotplugd/internal/usbsysfs/usbsysfstest"
	"github.com/usbhotplugd/usbhotplugd/internal/xenstore"
	"github.com/usbhotplugd/usbhotplugd/internal/xenstore/xenstoretest"
	"github.com/usbhotplugd/usbhotplugd/policy"
)

// counting wraps a xenstore socket and counts requests, and round trips:
// the times the client sent while no reply was awaited, so requests
// pipelined behind one another count once.
type counting struct {
	net.Conn
	mu                       sync.Mutex
	wbuf, rbuf               []byte
	outstanding, reqs, trips int
}

func (c *counting) Write(b []byte) (int, error) {
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

func (c *counting) Read(b []byte) (int, error) {
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

func (c *counting) take() (reqs, trips int) {
	c.mu.Lock()
	defer c.mu.Unlock()
	r, t := c.reqs, c.trips
	c.reqs, c.trips = 0, 0
	return r, t
}

// Attach and detach of one device at an existing controller, on the real
// C xenstored with the simulated backend: latency, requests and round
// trips of each.
func BenchmarkAttachDetach(b *testing.B) {
	s := xenstoretest.Real(b)
	ctx := context.Background()
	setup := s.Dial(b)
	sim.SeedDom0(ctx, setup)
	sim.SeedDomain(ctx, setup, sim.KioskDomain)
	root := usbsysfstest.TempDir(b)
	if err := usbsysfstest.XL(root); err != nil {
		b.Fatal(err)
	}
	k := usbsysfstest.NewKernel(root)
	backends := &sim.Backends{XS: s.Dial(b)}
	run, err := backends.Start(ctx)
	if err != nil {
		b.Fatal(err)
	}
	defer run.Stop()
	raw, err := net.Dial("unix", s.SocketPath())
	if err != nil {
		b.Fatal(err)
	}
	cc := &counting{Conn: raw}
	xs := xenstore.NewConn(cc)
	defer xs.Close()
	h := &assign.Host{XS: xs, Sys: usbsysfs.NewFS(root).WithWriter(k)}
	if _, err := h.AddController(ctx, 1, policy.CtrlSpec{Version: 2, Ports: 8}, true); err != nil {
		b.Fatal(err)
	}
	var attach, detach time.Duration
	var aReqs, aTrips, dReqs, dTrips int
	cc.take()
	for b.Loop() {
		t0 := time.Now()
		if _, err := h.Attach(ctx, 1, policy.DevSpec{HostBus: 1, HostAddr: 6, Controller: -1}); err != nil {
			b.Fatal(err)
		}
		t1 := time.Now()
		r, t := cc.take()
		aReqs, aTrips = aReqs+r, aTrips+t
		if err := h.Detach(ctx, 1, 0, 1); err != nil {
			b.Fatal(err)
		}
		detach += time.Since(t1)
		attach += t1.Sub(t0)
		r, t = cc.take()
		dReqs, dTrips = dReqs+r, dTrips+t
	}
	n := float64(b.N)
	b.ReportMetric(float64(attach.Microseconds())/n, "attach-µs")
	b.ReportMetric(float64(detach.Microseconds())/n, "detach-µs")
	b.ReportMetric(float64(aReqs)/n, "attach-requests")
	b.ReportMetric(float64(aTrips)/n, "attach-roundtrips")
	b.ReportMetric(float64(dReqs)/n, "detach-requests")
	b.ReportMetric(float64(dTrips)/n, "detach-roundtrips")
}
