package agent_test

import (
	"fmt"
	"testing"
	"time"

	"github.com/usbhotplugd/usbhotplugd/internal/agent"
	"github.com/usbhotplugd/usbhotplugd/internal/fakekernel"
	"github.com/usbhotplugd/usbhotplugd/internal/sim"
	"github.com/usbhotplugd/usbhotplugd/internal/xenstore/xenstoretest"
)

// BenchmarkScaleRestart: 200 devices present, sent to 1 or to 50 running
// guests (8 ports each); the agent converges, is stopped, and a new one
// starts on the same host. Reported: the first convergence, and the time
// from the restart until every device is confirmed where it is.
func BenchmarkScaleRestart(b *testing.B) {
	for _, doms := range []int{1, 50} {
		b.Run(fmt.Sprintf("domains=%d", doms), func(b *testing.B) {
			for range b.N {
				b.StopTimer()
				e := newEnv(b, xenstoretest.Real(b))
				for d := range doms {
					e.start(fmt.Sprintf("g%02d", d))
				}
				bld := &fakekernel.Builder{Root: e.root}
				for i := range 200 {
					bld.Add(benchDev(fmt.Sprintf("1-6.%d.%d", 1+i/10, 1+i%10), i))
				}
				if err := bld.Err(); err != nil {
					b.Fatal(err)
				}
				pol := sim.FleetPolicy(doms, 200)
				t0 := time.Now()
				e.run(pol, false)
				first := time.Since(t0)
				st := e.status.Load()
				if st == nil {
					b.Fatal("no status")
				}
				attached := 0
				for _, r := range st.Devices {
					if r.Action == agent.ActAttached || r.Action == agent.ActKept {
						attached++
					}
				}
				if attached != 200 {
					b.Fatalf("%d of 200 attached", attached)
				}
				e.stop()
				b.StartTimer()
				t1 := time.Now()
				e.run(pol, false)
				restart := time.Since(t1)
				b.StopTimer()
				rtt := roundTrip(b, e)
				b.ReportMetric(float64(first.Milliseconds()), "first-converge-ms")
				b.ReportMetric(float64(restart.Milliseconds()), "restart-converge-ms")
				b.ReportMetric(float64(restart.Nanoseconds())/float64(rtt.Nanoseconds()), "restart/rtt")
				e.stop()
			}
		})
	}
}
