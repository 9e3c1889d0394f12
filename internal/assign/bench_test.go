package assign_test

import (
	"context"
	"testing"
	"time"

	"github.com/usbhotplugd/usbhotplugd/internal/assign"
	"github.com/usbhotplugd/usbhotplugd/internal/fakekernel"
	"github.com/usbhotplugd/usbhotplugd/internal/sim"
	"github.com/usbhotplugd/usbhotplugd/internal/usbsysfs"
	"github.com/usbhotplugd/usbhotplugd/internal/xenstore/xenstoretest"
	"github.com/usbhotplugd/usbhotplugd/policy"
)

// Attach and detach of one device at an existing controller, on the real
// C xenstored with the simulated backend: latency, requests and round
// trips of each.
func BenchmarkAttachDetach(b *testing.B) {
	s := xenstoretest.Real(b)
	ctx := context.Background()
	setup := s.Dial(b)
	sim.SeedDom0(ctx, setup)
	sim.SeedDomain(ctx, setup, sim.KioskDomain)
	root := fakekernel.TempDir(b)
	if err := fakekernel.XL(root); err != nil {
		b.Fatal(err)
	}
	k := fakekernel.NewKernel(root)
	backends := &sim.Backends{XS: s.Dial(b)}
	run, err := backends.Start(ctx)
	if err != nil {
		b.Fatal(err)
	}
	defer run.Stop()
	xs, cc := xenstoretest.DialCounting(b, s)
	h := &assign.Host{XS: xs, Sys: usbsysfs.NewFS(root).WithWriter(k)}
	if _, err := h.AddController(ctx, 1, policy.CtrlSpec{Version: 2, Ports: 8}, true); err != nil {
		b.Fatal(err)
	}
	var attach, detach time.Duration
	var aReqs, aTrips, dReqs, dTrips int
	cc.Take()
	for b.Loop() {
		t0 := time.Now()
		if _, err := h.Attach(ctx, 1, policy.DevSpec{HostBus: 1, HostAddr: 6, Controller: -1}); err != nil {
			b.Fatal(err)
		}
		t1 := time.Now()
		r, t := cc.Take()
		aReqs, aTrips = aReqs+r, aTrips+t
		if err := h.Detach(ctx, 1, 0, 1); err != nil {
			b.Fatal(err)
		}
		detach += time.Since(t1)
		attach += t1.Sub(t0)
		r, t = cc.Take()
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
