package agent_test

import (
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/usbhotplugd/usbhotplugd/internal/fakekernel"
	"github.com/usbhotplugd/usbhotplugd/internal/uevent"
	"github.com/usbhotplugd/usbhotplugd/internal/xenstore/xenstoretest"
)

// addEvent is the device's add uevent, as the kernel sends it.
func addEvent(tb testing.TB, busid string) uevent.Message {
	path := "/devices/pci0000:00/0000:00:14.0/usb1/" + busid
	if i := strings.LastIndexByte(busid, '.'); i > 0 {
		path = "/devices/pci0000:00/0000:00:14.0/usb1/" + parentPath(busid)
	}
	e, err := uevent.Parse(fmt.Appendf(nil, "bind@%s\x00ACTION=bind\x00DEVPATH=%s\x00SUBSYSTEM=usb\x00DEVTYPE=usb_device\x00SEQNUM=1\x00DRIVER=usb\x00", path, path))
	if err != nil {
		tb.Fatal(err)
	}
	return uevent.Message{Event: e}
}

func parentPath(busid string) string {
	// 1-6.2.3 → 1-6/1-6.2/1-6.2.3
	head, rest, _ := strings.Cut(busid, ".")
	p, cur := head, head
	for _, x := range strings.Split(rest, ".") {
		cur += "." + x
		p += "/" + cur
	}
	return p
}

func benchPolicy(ports int) string {
	ctrls := make([]string, 0, (ports+30)/31)
	for n := ports; n > 0; n -= 31 {
		ctrls = append(ctrls, fmt.Sprintf("%q", fmt.Sprintf("version=2, ports=%d", min(n, 31))))
	}
	return "[domain.kiosk]\nusbctrl = [" + strings.Join(ctrls, ", ") + "]\n" +
		"[[rule]]\nname = \"bench\"\naction = \"attach\"\nmatch = { id = \"1234:5678\" }\ntarget = { domain = \"kiosk\" }\nduplicates = \"all\"\n"
}

func benchDev(busid string, n int) fakekernel.Dev {
	return fakekernel.Dev{BusID: busid, DevNum: 10 + n%100, Vendor: "1234", Product: "5678", Class: "00", Serial: fmt.Sprintf("B%04d", n),
		Interfaces: []fakekernel.Intf{{Class: "03", SubClass: "00", Protocol: "00", Driver: "usbhid"}}}
}

// BenchmarkUeventToAttached: one device's uevent handed to the agent →
// its port written and its interfaces bound to usbback, on the real
// xenstored. p50 and p99 are reported.
func BenchmarkUeventToAttached(b *testing.B) { benchUeventToAttached(b, "") }

// BenchmarkUeventToAttachedAuthorized: the same with authorization before
// probe: the device comes inert, so no dom0 driver is unbound first.
func BenchmarkUeventToAttachedAuthorized(b *testing.B) {
	benchUeventToAttached(b, "[agent]\nauthorize = \"before-probe\"\n")
}

func benchUeventToAttached(b *testing.B, prefix string) {
	s := xenstoretest.Real(b)
	e := newEnv(b, s)
	e.count = true
	e.run(prefix+benchPolicy(8), false)
	lat := make([]time.Duration, 0, b.N)
	var durs, kern []time.Duration
	var reqs, trips int
	for i := 0; b.Loop(); i++ {
		b.StopTimer()
		busid := "1-6"
		if err := (&fakekernel.Builder{Root: e.root}).Add(benchDev(busid, i)).Err(); err != nil {
			b.Fatal(err)
		}
		m := addEvent(b, busid)
		e.counter.Take()
		e.kernelTime.Store(0)
		b.StartTimer()
		t0 := time.Now()
		e.a.Handle(e.ctx, m)
		rr := e.await(busid, "attached")
		lat = append(lat, time.Since(t0))
		durs = append(durs, time.Duration(rr.Duration))
		b.StopTimer()
		kern = append(kern, time.Duration(e.kernelTime.Load()))
		r, t := e.counter.Take()
		reqs, trips = reqs+r, trips+t
		if err := fakekernel.NewKernel(e.root).Unplug(busid); err != nil {
			b.Fatal(err)
		}
		e.a.Handle(e.ctx, m) // any event: the pass finds it gone
		e.await(busid, "cleared")
		e.settle()
		for len(e.audits) > 0 {
			<-e.audits
		}
		b.StartTimer()
	}
	slices.Sort(lat)
	slices.Sort(durs)
	slices.Sort(kern)
	if len(durs) > 0 {
		b.ReportMetric(float64(durs[len(durs)/2].Microseconds()), "pass-p50-µs")
		// The fake kernel's part: its unbind and bind stand in for the
		// real kernel's, inside the pass.
		b.ReportMetric(float64(kern[len(kern)/2].Microseconds()), "kernel-p50-µs")
	}
	if len(lat) > 0 {
		rtt := roundTrip(b, e)
		perPass := float64(trips) / float64(len(lat))
		floor := perPass * float64(rtt.Nanoseconds())
		p50, p99 := lat[len(lat)/2], lat[len(lat)*99/100]
		b.ReportMetric(float64(p50.Microseconds()), "p50-µs")
		b.ReportMetric(float64(p99.Microseconds()), "p99-µs")
		b.ReportMetric(float64(reqs)/float64(len(lat)), "requests")
		b.ReportMetric(perPass, "roundtrips")
		b.ReportMetric(float64(rtt.Nanoseconds())/1e3, "rtt-µs")
		// The ratios travel between machines: the latency over the
		// round trips it needs at this machine's round trip.
		b.ReportMetric(float64(p50.Nanoseconds())/floor, "p50/floor")
		b.ReportMetric(float64(p99.Nanoseconds())/floor, "p99/floor")
	}
}

// roundTrip is the median of reads of one node on the agent's store: the
// unit the latencies are measured in.
func roundTrip(b *testing.B, e *env) time.Duration {
	b.Helper()
	xs := e.s.Dial(b)
	rt := make([]time.Duration, 0, 500)
	for range cap(rt) {
		t0 := time.Now()
		if _, err := xs.Read(e.ctx, "/local/domain/0/name"); err != nil {
			b.Fatal(err)
		}
		rt = append(rt, time.Since(t0))
	}
	slices.Sort(rt)
	return rt[len(rt)/2]
}

// BenchmarkBurst200: 200 devices behind a hub of hubs appear at once;
// the time until every one is attached.
func BenchmarkBurst200(b *testing.B) {
	for range b.N {
		b.StopTimer()
		s := xenstoretest.Real(b)
		e := newEnv(b, s)
		e.run(benchPolicy(200), false)
		bld := &fakekernel.Builder{Root: e.root}
		var msgs []uevent.Message
		busids := map[string]bool{}
		for i := range 200 {
			busid := fmt.Sprintf("1-6.%d.%d", 1+i/10, 1+i%10)
			bld.Add(benchDev(busid, i))
			msgs = append(msgs, addEvent(b, busid))
			busids[busid] = true
		}
		if err := bld.Err(); err != nil {
			b.Fatal(err)
		}
		b.StartTimer()
		t0 := time.Now()
		for _, m := range msgs {
			e.a.Handle(e.ctx, m)
		}
		for len(busids) > 0 {
			select {
			case r := <-e.audits:
				if r.Action == "attached" {
					delete(busids, r.BusID)
				} else if r.Action == "failed" {
					b.Fatalf("%s failed: %s", r.BusID, r.Reason)
				}
			case <-e.ctx.Done():
				b.Fatalf("%d devices not attached", len(busids))
			}
		}
		b.StopTimer()
		b.ReportMetric(float64(time.Since(t0).Microseconds())/1e3, "all-attached-ms")
		b.ReportMetric(float64(time.Since(t0).Nanoseconds())/float64(roundTrip(b, e).Nanoseconds()), "all-attached/rtt")
		// Stopped now, not at the benchmark's end: many runs' agents
		// would outlive their environment's deadline.
		e.stop()
	}
}
