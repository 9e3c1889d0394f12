package metrics

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/common/expfmt"
)

// Namespace prefixes every metric name.
const Namespace = "usbhotplugd"

// DefaultTextfile is where node_exporter's Debian package looks for
// textfile metrics (its --collector.textfile.directory).
const DefaultTextfile = "/var/lib/prometheus/node-exporter/usbhotplugd.prom"

// States are the device states the devices gauge reports, always all of
// them, so a state that empties reads 0 rather than vanishing.
var States = []string{"with_dom0", "denied", "refused", "blocked", "pending", "attached", "held", "foreign", "failed", "settling"}

// A Snapshot is the agent's state at one moment: what the gauges and the
// counters the agent keeps itself report.
type Snapshot struct {
	Devices        map[string]int // by state
	Uevents        uint64
	Overruns       uint64
	Passes         uint64
	HooksRun       uint64
	HooksDropped   uint64
	Reconnects     int
	Connected      bool
	PolicyLoadedAt time.Time
	ReloadFailedAt time.Time // zero: the last load or reload was taken
}

// Metrics is one agent's set. Its methods are safe for concurrent use.
type Metrics struct {
	reg *prometheus.Registry

	devices   *prometheus.GaugeVec
	decisions *prometheus.CounterVec
	attach    prometheus.Histogram
	failures  *prometheus.CounterVec
	heartbeat prometheus.Gauge

	mu   sync.Mutex
	snap Snapshot

	dirty atomic.Bool
}

// New makes the set, with build labels for usbhotplugd_build_info.
func New(version, goVersion string) *Metrics {
	m := &Metrics{reg: prometheus.NewRegistry()}
	f := func(name, help string) prometheus.Opts {
		return prometheus.Opts{Namespace: Namespace, Name: name, Help: help}
	}
	counter := func(name, help string, v func(Snapshot) float64) prometheus.Collector {
		return prometheus.NewCounterFunc(prometheus.CounterOpts(f(name, help)), func() float64 { return v(m.snapshot()) })
	}
	gauge := func(name, help string, v func(Snapshot) float64) prometheus.Collector {
		return prometheus.NewGaugeFunc(prometheus.GaugeOpts(f(name, help)), func() float64 { return v(m.snapshot()) })
	}
	m.devices = prometheus.NewGaugeVec(prometheus.GaugeOpts(f("devices", "USB devices on the host by the state the agent last put them in.")), []string{"state"})
	m.decisions = prometheus.NewCounterVec(prometheus.CounterOpts(f("decisions_total", "Decisions the agent made, by action and by the rule that decided (empty: none matched).")), []string{"action", "rule"})
	m.attach = prometheus.NewHistogram(prometheus.HistogramOpts{Namespace: Namespace, Name: "attach_duration_seconds",
		Help:    "Time from the event that asked for a pass to the device attached (port written, interfaces in usbback).",
		Buckets: []float64{0.0005, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5}})
	m.failures = prometheus.NewCounterVec(prometheus.CounterOpts(f("failures_total", "Steps that failed and will be retried, by the step that failed.")), []string{"step"})
	m.heartbeat = prometheus.NewGauge(prometheus.GaugeOpts(f("heartbeat_timestamp_seconds", "When the agent last wrote its metrics, Unix time; stale means the agent is down or stuck.")))
	info := prometheus.NewGauge(prometheus.GaugeOpts{Namespace: Namespace, Name: "build_info", Help: "Always 1; the labels say which build runs.",
		ConstLabels: prometheus.Labels{"version": version, "goversion": goVersion}})
	info.Set(1)
	m.reg.MustRegister(m.devices, m.decisions, m.attach, m.failures, m.heartbeat, info,
		counter("uevents_received_total", "Kernel uevents received.", func(s Snapshot) float64 { return float64(s.Uevents) }),
		counter("uevent_overruns_total", "Times the kernel dropped uevents (ENOBUFS) and everything was looked at again.", func(s Snapshot) float64 { return float64(s.Overruns) }),
		counter("passes_total", "Passes over one device (each reads its state and acts on it).", func(s Snapshot) float64 { return float64(s.Passes) }),
		counter("hooks_run_total", "Rule exec commands started.", func(s Snapshot) float64 { return float64(s.HooksRun) }),
		counter("hooks_dropped_total", "Rule exec commands skipped because the queue was full.", func(s Snapshot) float64 { return float64(s.HooksDropped) }),
		counter("xenstore_reconnects_total", "Times the connection to xenstore was made again after it was lost.", func(s Snapshot) float64 { return float64(s.Reconnects) }),
		gauge("xenstore_connected", "1 while the agent is connected to xenstore.", func(s Snapshot) float64 { return b2f(s.Connected) }),
		gauge("policy_loaded_timestamp_seconds", "When the policy in force was loaded, Unix time.", func(s Snapshot) float64 { return unix(s.PolicyLoadedAt) }),
		gauge("policy_last_reload_success", "1 if the last policy load or reload was taken, 0 if it was refused (the previous policy stays).", func(s Snapshot) float64 {
			return b2f(s.ReloadFailedAt.IsZero() || s.ReloadFailedAt.Before(s.PolicyLoadedAt))
		}),
	)
	for _, s := range States {
		m.devices.WithLabelValues(s)
	}
	return m
}

func b2f(b bool) float64 {
	if b {
		return 1
	}
	return 0
}

func unix(t time.Time) float64 {
	if t.IsZero() {
		return 0
	}
	return float64(t.UnixNano()) / 1e9
}

func (m *Metrics) snapshot() Snapshot {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.snap
}

// Update takes the agent's state; a change makes the next Flush write.
func (m *Metrics) Update(s Snapshot) {
	for _, st := range States {
		m.devices.WithLabelValues(st).Set(float64(s.Devices[st]))
	}
	for st, n := range s.Devices {
		m.devices.WithLabelValues(st).Set(float64(n))
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	old := m.snap
	m.snap = s
	if !sameSnapshot(old, s) {
		m.dirty.Store(true)
	}
}

// sameSnapshot ignores the counters that move with every event (uevents,
// passes): a change worth a write shows elsewhere too.
func sameSnapshot(a, b Snapshot) bool {
	if len(a.Devices) != len(b.Devices) {
		return false
	}
	for k, v := range a.Devices {
		if b.Devices[k] != v {
			return false
		}
	}
	return a.Overruns == b.Overruns && a.HooksRun == b.HooksRun && a.HooksDropped == b.HooksDropped &&
		a.Reconnects == b.Reconnects && a.Connected == b.Connected && a.PolicyLoadedAt.Equal(b.PolicyLoadedAt) && a.ReloadFailedAt.Equal(b.ReloadFailedAt)
}

// Decision counts one decision.
func (m *Metrics) Decision(action, rule string) {
	m.decisions.WithLabelValues(action, rule).Inc()
	m.dirty.Store(true)
}

// Attached observes one attach's latency.
func (m *Metrics) Attached(d time.Duration) {
	m.attach.Observe(d.Seconds())
	m.dirty.Store(true)
}

// Failure counts a failed step, labelled by a short, bounded name (the
// step), never by a message that holds a busid.
func (m *Metrics) Failure(step string) {
	m.failures.WithLabelValues(step).Inc()
	m.dirty.Store(true)
}

// Gather renders every metric in the text exposition format.
func (m *Metrics) Gather() ([]byte, error) {
	mfs, err := m.reg.Gather()
	if err != nil {
		return nil, fmt.Errorf("metrics: %w", err)
	}
	var buf bytes.Buffer
	enc := expfmt.NewEncoder(&buf, expfmt.NewFormat(expfmt.TypeTextPlain))
	for _, mf := range mfs {
		if err := enc.Encode(mf); err != nil {
			return nil, fmt.Errorf("metrics: %w", err)
		}
	}
	return buf.Bytes(), nil
}

// A Textfile writes the metrics where node_exporter's textfile collector
// reads them.
type Textfile struct {
	Path      string
	Heartbeat time.Duration // rewrite at least this often; 0: only on change

	mu   sync.Mutex
	last time.Time
}

// Flush writes the file if a metric changed since the last write or the
// heartbeat is due. The caller owns the schedule (the daemon calls it from
// its status/watchdog tick), so the package starts no goroutine.
func (t *Textfile) Flush(m *Metrics, now time.Time) error {
	t.mu.Lock()
	defer t.mu.Unlock()
	due := t.Heartbeat > 0 && now.Sub(t.last) >= t.Heartbeat
	if !m.dirty.Swap(false) && !due && !t.last.IsZero() {
		return nil
	}
	m.heartbeat.Set(float64(now.UnixNano()) / 1e9)
	b, err := m.Gather()
	if err != nil {
		return err
	}
	if err := writeAtomic(t.Path, b); err != nil {
		m.dirty.Store(true) // try again at the next flush
		return err
	}
	t.last = now
	return nil
}

// writeAtomic replaces path so that the collector never reads half a file:
// a temporary file in the same directory, synced, renamed over it. The
// temporary name starts with a dot and does not end in .prom, so the
// collector skips it.
func writeAtomic(path string, b []byte) error {
	dir := filepath.Dir(path)
	f, err := os.CreateTemp(dir, "."+filepath.Base(path)+".*")
	if err != nil {
		return fmt.Errorf("metrics textfile: %w", err)
	}
	_, werr := f.Write(b)
	serr := f.Sync()
	cerr := f.Close()
	if err := errors.Join(werr, serr, cerr); err != nil {
		os.Remove(f.Name())
		return fmt.Errorf("metrics textfile %s: %w", path, err)
	}
	if err := os.Chmod(f.Name(), 0o644); err != nil {
		os.Remove(f.Name())
		return fmt.Errorf("metrics textfile %s: %w", path, err)
	}
	if err := os.Rename(f.Name(), path); err != nil {
		os.Remove(f.Name())
		return fmt.Errorf("metrics textfile %s: %w", path, err)
	}
	return nil
}
