package metrics

import (
	"bytes"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
)

func parse(t *testing.T, b []byte) map[string]*dto.MetricFamily {
	t.Helper()
	p := expfmt.NewTextParser(model.UTF8Validation)
	mfs, err := p.TextToMetricFamilies(bytes.NewReader(b))
	if err != nil {
		t.Fatalf("exposition does not parse: %v\n%s", err, b)
	}
	return mfs
}

// The names follow Prometheus' conventions: the namespace, snake case,
// counters end in _total, units are base units named in the suffix.
func TestNamingConventions(t *testing.T) {
	m := New("1.0", "go1.26")
	m.Decision("attached", "kiosk badge")
	m.Attached(3 * time.Millisecond)
	m.Failure("attach")
	b, err := m.Gather()
	if err != nil {
		t.Fatal(err)
	}
	name := regexp.MustCompile(`^usbhotplugd_[a-z][a-z0-9_]*[a-z0-9]$`)
	label := regexp.MustCompile(`^[a-z][a-z0-9_]*$`)
	for n, mf := range parse(t, b) {
		if !name.MatchString(n) {
			t.Errorf("%s: not a usbhotplugd_ snake_case name", n)
		}
		if mf.GetHelp() == "" {
			t.Errorf("%s: no help", n)
		}
		switch mf.GetType() {
		case dto.MetricType_COUNTER:
			if !strings.HasSuffix(n, "_total") {
				t.Errorf("counter %s does not end in _total", n)
			}
		default:
			if strings.HasSuffix(n, "_total") {
				t.Errorf("%s %s ends in _total", mf.GetType(), n)
			}
		}
		for _, bad := range []string{"_ms", "_milliseconds", "_us", "_ns", "_minutes", "_bytes_total_"} {
			if strings.Contains(n+"_", bad+"_") {
				t.Errorf("%s: not a base unit (%s)", n, bad)
			}
		}
		for _, mm := range mf.GetMetric() {
			for _, l := range mm.GetLabel() {
				if !label.MatchString(l.GetName()) {
					t.Errorf("%s: label %q not snake case", n, l.GetName())
				}
			}
		}
	}
}

func value(t *testing.T, mfs map[string]*dto.MetricFamily, name string, labels map[string]string) float64 {
	t.Helper()
	mf, ok := mfs[name]
	if !ok {
		t.Fatalf("%s missing", name)
	}
next:
	for _, m := range mf.GetMetric() {
		for _, l := range m.GetLabel() {
			if v, ok := labels[l.GetName()]; ok && v != l.GetValue() {
				continue next
			}
		}
		switch {
		case m.Counter != nil:
			return m.Counter.GetValue()
		case m.Gauge != nil:
			return m.Gauge.GetValue()
		case m.Histogram != nil:
			return float64(m.Histogram.GetSampleCount())
		}
	}
	t.Fatalf("%s%v missing", name, labels)
	return 0
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
	b, _ := m.Gather()
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
	b, _ = m.Gather()
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

func BenchmarkGather(b *testing.B) {
	m := New("1.0", "go1.26")
	for i := 0; i < 50; i++ {
		m.Decision("attached", "rule"+string(rune('a'+i%26)))
	}
	m.Update(Snapshot{Devices: map[string]int{"attached": 200}})
	b.ReportAllocs()
	for b.Loop() {
		if _, err := m.Gather(); err != nil {
			b.Fatal(err)
		}
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
	out, _ := m.Gather()
	mfs := parse(t, out)
	used := regexp.MustCompile(`usbhotplugd_[a-z_]+`).FindAllString(string(b), -1)
	if len(used) == 0 {
		t.Fatal("no metric in the alert rules")
	}
	for _, n := range used {
		if _, ok := mfs[n]; !ok {
			t.Errorf("alert rules use %s, which the agent does not export", n)
		}
	}
}
