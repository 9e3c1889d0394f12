package main

import (
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/usbhotplugd/usbhotplugd/internal/agent"
	"github.com/usbhotplugd/usbhotplugd/internal/daemon"
)

// idleWindow is how long the idle agent is watched.
const idleWindow = 30 * time.Second

// proc is what /proc says of a process, summed over its threads.
type proc struct {
	cpu       time.Duration // on a CPU (schedstat)
	voluntary int64         // voluntary context switches: its wake-ups
	rssKiB    int64
}

func readProc(tb testing.TB, pid int) proc {
	tb.Helper()
	var p proc
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		tb.Fatal(err)
	}
	for l := range strings.SplitSeq(string(b), "\n") {
		if v, ok := strings.CutPrefix(l, "VmRSS:"); ok {
			p.rssKiB, _ = strconv.ParseInt(strings.Fields(v)[0], 10, 64)
		}
	}
	tasks, err := filepath.Glob(fmt.Sprintf("/proc/%d/task/*", pid))
	if err != nil || len(tasks) == 0 {
		tb.Fatalf("threads of %d: %v", pid, err)
	}
	for _, t := range tasks {
		if b, err := os.ReadFile(filepath.Join(t, "schedstat")); err == nil {
			if f := strings.Fields(string(b)); len(f) > 0 {
				ns, _ := strconv.ParseInt(f[0], 10, 64)
				p.cpu += time.Duration(ns)
			}
		}
		b, _ := os.ReadFile(filepath.Join(t, "status"))
		for l := range strings.SplitSeq(string(b), "\n") {
			if v, ok := strings.CutPrefix(l, "voluntary_ctxt_switches:"); ok {
				n, _ := strconv.ParseInt(strings.TrimSpace(v), 10, 64)
				p.voluntary += n
			}
		}
	}
	return p
}

// attachedCount is how many devices the agent's status has attached.
func (h *fleetHost) attachedCount() int {
	h.tb.Helper()
	c, err := daemon.Dial(h.ctx, h.stateDir)
	if err != nil {
		h.tb.Fatal(err)
	}
	defer c.Close()
	r, err := c.Call(daemon.Request{Request: daemon.ReqStatus})
	if err != nil {
		h.tb.Fatal(err)
	}
	n := 0
	for _, d := range r.Status.Devices {
		if d.Action == agent.ActAttached || d.Action == agent.ActKept {
			n++
		}
	}
	return n
}

// BenchmarkFleet: 200 devices sent to 1 or to 50 running guests (8 ports
// each) on the real C xenstored, the agent its own process. Reported: the
// idle agent over idleWindow (CPU, wake-ups, RSS); a scrape through the
// exporter (ns/op, the agent's CPU per scrape, the exposition's size); the
// agent's restart until every device is reconciled again.
func BenchmarkFleet(b *testing.B) {
	for _, doms := range []int{1, 50} {
		b.Run(fmt.Sprintf("domains=%d", doms), func(b *testing.B) {
			const devices = 200
			h := newFleetHost(b, doms, devices)
			t0 := time.Now()
			cmd := h.startAgent()
			first := time.Since(t0)
			if n := h.attachedCount(); n != devices {
				b.Fatalf("%d of %d attached when ready", n, devices)
			}
			pid := cmd.Process.Pid
			i0, w0 := readProc(b, pid), time.Now()
			time.Sleep(idleWindow) // the measuring window, not a wait for an event
			i1, idle := readProc(b, pid), time.Since(w0)

			url := exporterServer(b, h.stateDir).URL + "/metrics"
			size := len(scrape(b, url))
			s0 := readProc(b, pid)
			scrapes := 0
			for b.Loop() {
				scrape(b, url)
				scrapes++
			}
			s1 := readProc(b, pid)

			cmd.Process.Signal(syscall.SIGTERM)
			cmd.Wait()
			t1 := time.Now()
			h.startAgent()
			restart := time.Since(t1)
			if n := h.attachedCount(); n != devices {
				b.Fatalf("%d of %d attached after the restart", n, devices)
			}
			b.ReportMetric(float64((i1.cpu-i0.cpu).Microseconds())/idle.Seconds(), "idle-cpu-us/s")
			b.ReportMetric(float64(i1.voluntary-i0.voluntary)/idle.Seconds(), "idle-wakeups/s")
			b.ReportMetric(float64(i1.rssKiB), "idle-rss-KiB")
			b.ReportMetric(float64((s1.cpu-s0.cpu).Microseconds())/float64(scrapes), "agent-cpu-us/scrape")
			b.ReportMetric(float64(size), "scrape-bytes")
			b.ReportMetric(float64(first.Milliseconds()), "first-ready-ms")
			b.ReportMetric(float64(restart.Milliseconds()), "restart-ready-ms")
		})
	}
}
