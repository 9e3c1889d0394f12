package vmtest

import (
	"fmt"
	"io"
	"slices"
	"time"
)

// Summary prints the plug latencies measured, then "N passed, N failed"
// as the last line; it returns the exit code.
func Summary(w io.Writer, results []Result) int {
	var port, bound, pass []time.Duration
	passed, failed := 0, 0
	for _, r := range results {
		port = append(port, r.PortWritten...)
		bound = append(bound, r.Bound...)
		pass = append(pass, r.AgentPass...)
		if r.Err != nil {
			failed++
		} else {
			passed++
		}
	}
	if len(port) > 0 {
		fmt.Fprintf(w, "plug (QMP device_add answered) → port written: p50 %v p90 %v; → interfaces bound to usbback: p50 %v p90 %v (%d plugs)\n",
			pct(port, 50), pct(port, 90), pct(bound, 50), pct(bound, 90), len(port))
	}
	if len(pass) > 0 {
		fmt.Fprintf(w, "the agent's own pass for those attaches (its audit duration): p50 %v p90 %v\n", pct(pass, 50), pct(pass, 90))
	}
	fmt.Fprintf(w, "%d passed, %d failed\n", passed, failed)
	if failed > 0 {
		return 1
	}
	return 0
}

func pct(d []time.Duration, p int) time.Duration {
	s := slices.Clone(d)
	slices.Sort(s)
	i := (len(s)*p+99)/100 - 1
	return s[max(i, 0)].Round(time.Millisecond)
}
