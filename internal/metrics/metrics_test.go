package metrics

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"

	"github.com/usbhotplugd/usbhotplugd/internal/metrics/metricstest"
)

func parse(t *testing.T, b []byte) map[string]*dto.MetricFamily { return metricstest.Parse(t, b) }

// The names follow Prometheus' conventions: the namespace, snake case,
// counters end in _total, units are base units named in the suffix.
func TestNamingConventions(t *testing.T) {
	m := New("1.0", "go1.26")
	m.Decision("attached", "kiosk badge")
	m.Attached(3 * time.Millisecond)
	m.Failure("attach")
	metricstest.CheckNames(t, parse(t, m.Gather(time.Now())))
}

func value(t *testing.T, mfs map[string]*dto.MetricFamily, name string, labels map[string]string) float64 {
	t.Helper()
	return metricstest.Value(t, mfs, name, labels)
}

func TestValues(t *testing.T) {
	m := New("1.0", "go1.26")
	m.Update(Snapshot{Devices: map[string]int{"attached": 3, "pending": 1}})
	m.Update(Snapshot{Devices: map[string]int{"attached": 2}, Uevents: 7, HooksDropped: 1, Reconnects: 1, Connected: true,
		PolicyLoadedAt: time.Unix(1700000000, 0), ReloadFailedAt: time.Unix(1700000100, 0)})
	m.Decision("attached", "r1")
	m.Decision("attached", "r1")
	m.Decision("denied", "")
	m.Attached(time.Millisecond)
	b := m.Gather(time.Now())
	mfs := parse(t, b)
	for _, c := range []struct {
		name   string
		labels map[string]string
		want   float64
	}{
		{"usbhotplugd_devices", map[string]string{"state": "attached"}, 2},
		{"usbhotplugd_devices", map[string]string{"state": "pending"}, 0},
		{"usbhotplugd_decisions_total", map[string]string{"action": "attached", "rule": "r1"}, 2},
		{"usbhotplugd_decisions_total", map[string]string{"action": "denied", "rule": ""}, 1},
		{"usbhotplugd_attach_duration_seconds", nil, 1},
		{"usbhotplugd_uevents_received_total", nil, 7},
		{"usbhotplugd_xenstore_reconnects_total", nil, 1},
		{"usbhotplugd_xenstore_connected", nil, 1},
		{"usbhotplugd_policy_last_reload_success", nil, 0},
		{"usbhotplugd_policy_loaded_timestamp_seconds", nil, 1700000000},
		{"usbhotplugd_hooks_dropped_total", nil, 1},
		{"usbhotplugd_build_info", map[string]string{"version": "1.0"}, 1},
	} {
		if got := value(t, mfs, c.name, c.labels); got != c.want {
			t.Errorf("%s%v = %v, want %v", c.name, c.labels, got, c.want)
		}
	}
	// A reload taken after the refusal: success again.
	m.Update(Snapshot{PolicyLoadedAt: time.Unix(1700000200, 0), ReloadFailedAt: time.Unix(1700000100, 0)})
	b = m.Gather(time.Now())
	if got := value(t, parse(t, b), "usbhotplugd_policy_last_reload_success", nil); got != 1 {
		t.Errorf("after a taken reload: %v", got)
	}
}

// The file is written on a change or a due heartbeat only, and always whole.
func TestTextfile(t *testing.T) {
	dir := t.TempDir()
	tf := &Textfile{Path: filepath.Join(dir, "usbhotplugd.prom"), Heartbeat: time.Minute}
	m := New("1.0", "go1.26")
	t0 := time.Unix(1000, 0)
	if err := tf.Flush(m, t0); err != nil {
		t.Fatal(err)
	}
	st1, err := os.Stat(tf.Path)
	if err != nil {
		t.Fatal(err)
	}
	if st1.Mode().Perm() != 0o644 {
		t.Errorf("mode %v, want 0644 (node_exporter reads it)", st1.Mode().Perm())
	}
	// Nothing changed, heartbeat not due: no write.
	os.Remove(tf.Path)
	if err := tf.Flush(m, t0.Add(time.Second)); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(tf.Path); !os.IsNotExist(err) {
		t.Fatalf("rewritten with nothing changed: %v", err)
	}
	m.Decision("attached", "r")
	if err := tf.Flush(m, t0.Add(2*time.Second)); err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(tf.Path)
	if err != nil {
		t.Fatal(err)
	}
	mfs := parse(t, b)
	if got := value(t, mfs, "usbhotplugd_heartbeat_timestamp_seconds", nil); got != 1002 {
		t.Errorf("heartbeat %v", got)
	}
	os.Remove(tf.Path)
	if err := tf.Flush(m, t0.Add(2*time.Second+time.Minute)); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(tf.Path); err != nil {
		t.Fatalf("heartbeat due, not written: %v", err)
	}
	ents, _ := os.ReadDir(dir)
	if len(ents) != 1 {
		t.Errorf("temporary files left: %v", ents)
	}
}

func TestTextfileError(t *testing.T) {
	tf := &Textfile{Path: filepath.Join(t.TempDir(), "missing", "x.prom")}
	m := New("1.0", "go1.26")
	err := tf.Flush(m, time.Unix(1, 0))
	if err == nil || !strings.Contains(err.Error(), "missing") {
		t.Fatalf("error %v, want one naming the path", err)
	}
	if !m.dirty.Load() {
		t.Error("a failed write must be retried at the next flush")
	}
}

// The families survive the control socket's JSON whole: the exporter gets
// what the textfile holds.
func TestFamiliesJSON(t *testing.T) {
	m := New("1.0", "go1.26")
	m.Decision("attached", `a "quoted" rule`)
	m.Attached(3 * time.Millisecond)
	m.Attached(30 * time.Second)
	m.Failure("attach")
	m.Update(Snapshot{Devices: map[string]int{"attached": 1}, Uevents: 3, Connected: true, PolicyLoadedAt: time.Unix(1700000000, 5e8)})
	now := time.Unix(1700000001, 0)
	fams := m.Families(now)
	b, err := json.Marshal(fams)
	if err != nil {
		t.Fatal(err)
	}
	var back []Family
	if err := json.Unmarshal(b, &back); err != nil {
		t.Fatal(err)
	}
	if got, want := string(Text(back)), string(m.Gather(now)); got != want {
		t.Errorf("after JSON:\n%s\nwant:\n%s", got, want)
	}
	mfs := parse(t, Text(back))
	h := mfs["usbhotplugd_attach_duration_seconds"].GetMetric()[0].GetHistogram()
	if h.GetSampleCount() != 2 || h.GetBucket()[len(h.GetBucket())-2].GetCumulativeCount() != 1 {
		t.Errorf("histogram: %v", h)
	}
}

// BenchmarkTextfileFlush: one textfile write (render, write, fsync,
// rename) with a decision series for each of 200 rules.
func BenchmarkTextfileFlush(b *testing.B) {
	m := New("1.0", "go1.26")
	for i := range 200 {
		m.Decision("attached", fmt.Sprintf("dev%d", i))
		m.Attached(time.Duration(i) * 100 * time.Microsecond)
	}
	m.Update(Snapshot{Devices: map[string]int{"attached": 200}})
	tf := &Textfile{Path: filepath.Join(b.TempDir(), "usbhotplugd.prom")}
	b.ReportAllocs()
	for b.Loop() {
		m.dirty.Store(true)
		if err := tf.Flush(m, time.Unix(1, 0)); err != nil {
			b.Fatal(err)
		}
	}
	st, err := os.Stat(tf.Path)
	if err != nil {
		b.Fatal(err)
	}
	b.ReportMetric(float64(st.Size()), "file-bytes")
}

func BenchmarkGather(b *testing.B) {
	m := New("1.0", "go1.26")
	for i := 0; i < 50; i++ {
		m.Decision("attached", "rule"+string(rune('a'+i%26)))
	}
	m.Update(Snapshot{Devices: map[string]int{"attached": 200}})
	b.ReportAllocs()
	for b.Loop() {
		m.Gather(time.Unix(1, 0))
	}
}

// Every metric the shipped alert rules use exists.
func TestAlertRulesNameRealMetrics(t *testing.T) {
	b, err := os.ReadFile("../../packaging/prometheus/usbhotplugd-alerts.yml")
	if err != nil {
		t.Fatal(err)
	}
	m := New("1.0", "go1.26")
	m.Attached(time.Millisecond)
	m.Failure("x")
	out := m.Gather(time.Now())
	mfs := parse(t, out)
	used := regexp.MustCompile(`usbhotplugd_[a-z_]+`).FindAllString(string(b), -1)
	if len(used) == 0 {
		t.Fatal("no metric in the alert rules")
	}
	for _, n := range used {
		if n == UpName || n == AgentRequestName {
			continue // the exporter's own
		}
		if _, ok := mfs[n]; !ok {
			t.Errorf("alert rules use %s, which the agent does not export", n)
		}
	}
}
