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

// Metrics is one agent's set. Its methods are safe for concurrent use.
type Metrics struct {
	reg *prometheus.Registry

	devices    *prometheus.GaugeVec
	decisions  *prometheus.CounterVec
	attach     prometheus.Histogram
	failures   *prometheus.CounterVec
	roundTrips prometheus.Counter
	reconnects prometheus.Counter
	uevents    prometheus.Counter
	overruns   prometheus.Counter
	rescans    prometheus.Counter
	hooks      *prometheus.CounterVec
	reloadAt   prometheus.Gauge
	reloadOK   prometheus.Gauge
	heartbeat  prometheus.Gauge
	xenstoreUp prometheus.Gauge
	up         atomic.Uint64
	seenUp     atomic.Bool

	dirty atomic.Bool
}

// New makes the set, with build labels for usbhotplugd_build_info.
func New(version, goVersion string) *Metrics {
	m := &Metrics{reg: prometheus.NewRegistry()}
	f := func(name, help string) prometheus.Opts {
		return prometheus.Opts{Namespace: Namespace, Name: name, Help: help}
	}
	m.devices = prometheus.NewGaugeVec(prometheus.GaugeOpts(f("devices", "USB devices on the host by the state the agent last put them in.")), []string{"state"})
	m.decisions = prometheus.NewCounterVec(prometheus.CounterOpts(f("decisions_total", "Decisions the agent made, by action and by the rule that decided (empty: none matched).")), []string{"action", "rule"})
	m.attach = prometheus.NewHistogram(prometheus.HistogramOpts{Namespace: Namespace, Name: "attach_duration_seconds",
		Help:    "Time from the event that asked for a pass to the device attached (port written, interfaces in usbback).",
		Buckets: []float64{0.0005, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5}})
	m.failures = prometheus.NewCounterVec(prometheus.CounterOpts(f("failures_total", "Steps that failed and will be retried, by reason.")), []string{"reason"})
	m.roundTrips = prometheus.NewCounter(prometheus.CounterOpts(f("xenstore_round_trips_total", "Round trips to xenstore.")))
	m.reconnects = prometheus.NewCounter(prometheus.CounterOpts(f("xenstore_reconnects_total", "Times the connection to xenstore was made again after it was lost.")))
	m.xenstoreUp = prometheus.NewGauge(prometheus.GaugeOpts(f("xenstore_connected", "1 while the agent is connected to xenstore.")))
	m.uevents = prometheus.NewCounter(prometheus.CounterOpts(f("uevents_received_total", "Kernel uevents received.")))
	m.overruns = prometheus.NewCounter(prometheus.CounterOpts(f("uevent_overruns_total", "Times the kernel dropped uevents (ENOBUFS) and a rescan followed.")))
	m.rescans = prometheus.NewCounter(prometheus.CounterOpts(f("rescans_total", "Passes over every device (start, overrun, reload).")))
	m.hooks = prometheus.NewCounterVec(prometheus.CounterOpts(f("hooks_total", "Rule exec commands, by outcome: run, failed, timed_out, dropped (queue full).")), []string{"outcome"})
	m.reloadAt = prometheus.NewGauge(prometheus.GaugeOpts(f("policy_last_reload_timestamp_seconds", "When the policy was last loaded or a reload tried, Unix time.")))
	m.reloadOK = prometheus.NewGauge(prometheus.GaugeOpts(f("policy_last_reload_success", "1 if the last policy load or reload succeeded, 0 if it was refused.")))
	m.heartbeat = prometheus.NewGauge(prometheus.GaugeOpts(f("heartbeat_timestamp_seconds", "When the agent last wrote its metrics, Unix time; stale means the agent is down or stuck.")))
	info := prometheus.NewGauge(prometheus.GaugeOpts{Namespace: Namespace, Name: "build_info", Help: "Always 1; the labels say which build runs.",
		ConstLabels: prometheus.Labels{"version": version, "goversion": goVersion}})
	info.Set(1)
	m.reg.MustRegister(m.devices, m.decisions, m.attach, m.failures, m.roundTrips, m.reconnects, m.xenstoreUp,
		m.uevents, m.overruns, m.rescans, m.hooks, m.reloadAt, m.reloadOK, m.heartbeat, info)
	for _, s := range States {
		m.devices.WithLabelValues(s)
	}
	for _, o := range []string{"run", "failed", "timed_out", "dropped"} {
		m.hooks.WithLabelValues(o)
	}
	return m
}

func (m *Metrics) touch() { m.dirty.Store(true) }

// Devices sets the devices gauge from a count by state; states not in n
// read 0.
func (m *Metrics) Devices(n map[string]int) {
	for _, s := range States {
		m.devices.WithLabelValues(s).Set(float64(n[s]))
	}
	for s, c := range n {
		m.devices.WithLabelValues(s).Set(float64(c))
	}
	m.touch()
}

// Decision counts one decision.
func (m *Metrics) Decision(action, rule string) {
	m.decisions.WithLabelValues(action, rule).Inc()
	m.touch()
}

// Attached observes one attach's latency.
func (m *Metrics) Attached(d time.Duration) {
	m.attach.Observe(d.Seconds())
	m.touch()
}

// Failure counts a failed step by a short, bounded reason (an errno name,
// "backend", "bind"...), never by a message that holds a busid.
func (m *Metrics) Failure(reason string) {
	m.failures.WithLabelValues(reason).Inc()
	m.touch()
}

// RoundTrips adds n xenstore round trips. Not a change worth a write alone.
func (m *Metrics) RoundTrips(n int) { m.roundTrips.Add(float64(n)) }

// Connected says whether xenstore is reached; a reconnect counts when it
// comes back after a loss.
func (m *Metrics) Connected(up bool) {
	was := m.up.Swap(b2u(up))
	if up && was == 0 && m.seenUp.Load() {
		m.reconnects.Inc()
	}
	if up {
		m.seenUp.Store(true)
	}
	m.xenstoreUp.Set(float64(b2u(up)))
	m.touch()
}

func b2u(b bool) uint64 {
	if b {
		return 1
	}
	return 0
}

// Uevent counts one kernel event received.
func (m *Metrics) Uevent() { m.uevents.Inc() }

// Overrun counts one ENOBUFS from the uevent socket.
func (m *Metrics) Overrun() { m.overruns.Inc(); m.touch() }

// Rescan counts one pass over every device.
func (m *Metrics) Rescan() { m.rescans.Inc(); m.touch() }

// Hook counts one hook outcome: run, failed, timed_out or dropped.
func (m *Metrics) Hook(outcome string) { m.hooks.WithLabelValues(outcome).Inc(); m.touch() }

// Reload records a policy load or reload and whether it was taken.
func (m *Metrics) Reload(at time.Time, ok bool) {
	m.reloadAt.Set(float64(at.UnixNano()) / 1e9)
	m.reloadOK.Set(float64(b2u(ok)))
	m.touch()
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
		m.touch() // try again at the next flush
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
