package daemon

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	"github.com/usbhotplugd/usbhotplugd/internal/agent"
	"github.com/usbhotplugd/usbhotplugd/internal/metrics"
	"github.com/usbhotplugd/usbhotplugd/internal/metrics/metricstest"
)

// The agent with --metrics-textfile: the file reads as the exposition
// format and follows the agent's decisions.
func TestMetricsTextfileFollowsTheAgent(t *testing.T) {
	h := newHost(t)
	h.cfg.MetricsFile = filepath.Join(h.dir, "usbhotplugd.prom")
	attached := h.log.await(`"action":"attached"`)
	h.start()
	h.await(attached, "attached")
	want := `usbhotplugd_devices{state="attached"} 1`
	var last string
	tick := time.NewTicker(10 * time.Millisecond)
	defer tick.Stop()
	for !strings.Contains(last, want) {
		select {
		case <-tick.C:
		case <-h.ctx.Done():
			t.Fatalf("the metrics file never said %q:\n%s", want, last)
		}
		b, _ := os.ReadFile(h.cfg.MetricsFile)
		last = string(b)
	}
	parser := expfmt.NewTextParser(model.UTF8Validation)
	mfs, err := parser.TextToMetricFamilies(bytes.NewReader([]byte(last)))
	if err != nil {
		t.Fatalf("not the exposition format: %v\n%s", err, last)
	}
	for _, n := range []string{"usbhotplugd_decisions_total", "usbhotplugd_attach_duration_seconds", "usbhotplugd_xenstore_connected",
		"usbhotplugd_policy_last_reload_success", "usbhotplugd_heartbeat_timestamp_seconds", "usbhotplugd_build_info"} {
		if _, ok := mfs[n]; !ok {
			t.Errorf("%s missing:\n%s", n, last)
		}
	}
	if n := mfs["usbhotplugd_attach_duration_seconds"].GetMetric()[0].GetHistogram().GetSampleCount(); n != 1 {
		t.Errorf("attach latency samples: %d, want 1", n)
	}
}

func TestSnapshotCountsDevicesByState(t *testing.T) {
	st := Status{Devices: []agent.Audit{{Action: agent.ActAttached}, {Action: agent.ActKept}, {Action: agent.ActPending},
		{Action: agent.ActUnmatched}, {Action: agent.ActReleased}, {Action: agent.ActFailed}, {Action: agent.ActBlocked}}}
	st.Xenstore.Connected = true
	s := snapshot(st)
	for state, n := range map[string]int{"attached": 2, "pending": 1, "with_dom0": 2, "failed": 1, "blocked": 1} {
		if s.Devices[state] != n {
			t.Errorf("%s: %d, want %d (%v)", state, s.Devices[state], n, s.Devices)
		}
	}
	if !s.Connected {
		t.Error("connected lost")
	}
}

// The metrics request, without a textfile: the families the exporter
// serves, the same as the textfile's, following the agent's decisions.
func TestMetricsRequest(t *testing.T) {
	h := newHost(t)
	h.startReady()
	var resp Response
	if err := json.Unmarshal([]byte(h.dialRaw().ask(`{"request":"metrics"}`)), &resp); err != nil {
		t.Fatal(err)
	}
	if !resp.OK || len(resp.Metrics) == 0 {
		t.Fatalf("metrics: %+v", resp)
	}
	mfs := metricstest.Parse(t, metrics.Text(resp.Metrics))
	metricstest.CheckNames(t, mfs)
	for _, c := range []struct {
		name   string
		labels map[string]string
		want   float64
	}{
		{"usbhotplugd_devices", map[string]string{"state": "attached"}, 1},
		{"usbhotplugd_decisions_total", map[string]string{"action": "attached", "rule": "audio"}, 1},
		{"usbhotplugd_attach_duration_seconds", nil, 1},
		{"usbhotplugd_xenstore_connected", nil, 1},
	} {
		if got := metricstest.Value(t, mfs, c.name, c.labels); got != c.want {
			t.Errorf("%s%v = %v, want %v", c.name, c.labels, got, c.want)
		}
	}
}
