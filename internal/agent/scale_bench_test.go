package agent_test

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/usbhotplugd/usbhotplugd/internal/agent"
	"github.com/usbhotplugd/usbhotplugd/internal/fakekernel"
	"github.com/usbhotplugd/usbhotplugd/internal/xenstore/xenstoretest"
)

// scalePolicy sends 200 devices, by serial, to doms guests (g00, g01, …),
// each with controllers of 8 ports enough for its share.
func scalePolicy(doms, devices int) string {
	var b strings.Builder
	per := (devices + doms - 1) / doms
	for d := range doms {
		ctrls := make([]string, 0, (per+7)/8)
		for n := per; n > 0; n -= 8 {
			ctrls = append(ctrls, `"version=2, ports=8"`)
		}
		fmt.Fprintf(&b, "[domain.g%02d]\nusbctrl = [%s]\n", d, strings.Join(ctrls, ", "))
	}
	for i := range devices {
		fmt.Fprintf(&b, "[[rule]]\nname = \"dev%d\"\naction = \"attach\"\nmatch = { serial = \"B%04d\" }\ntarget = { domain = \"g%02d\" }\n", i, i, i%doms)
	}
	return b.String()
}

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
				pol := scalePolicy(doms, 200)
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
