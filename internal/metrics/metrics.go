package metrics

import (
	"fmt"
	"maps"
	"sync"
	"sync/atomic"
	"time"

	"github.com/usbhotplugd/usbhotplugd/internal/atomicfile"
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
	Refused        uint64
	Passes         uint64
	HooksRun       uint64
	HooksDropped   uint64
	Reconnects     int
	Connected      bool
	PolicyLoadedAt time.Time
	ReloadFailedAt time.Time // zero: the last load or reload was taken
}

// Metrics is one agent's set. Its methods are safe for concurrent use.
//
// The set writes the text exposition format itself (expo.go) rather than
// through the official client library: that library's package start-up
// (its default registry's Go and process collectors, protobuf, net/http)
// cost every usbhotplugd command about 0.9 ms before main, though only
// `run` writes metrics; usbhotplugd-exporter, a binary of its own, links
// that library and serves these Families. The tests read the output with
// Prometheus' own parser.
type Metrics struct {
	version, goVersion string

	mu        sync.Mutex
	snap      Snapshot
	devices   map[string]float64    // by state
	decisions map[[2]string]float64 // by action, rule
	failures  map[string]float64    // by step
	attach    histogram

	dirty atomic.Bool
}

// attachBuckets are the attach latency histogram's upper bounds, seconds.
var attachBuckets = []float64{0.0005, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5}

// New makes the set, with build labels for usbhotplugd_build_info.
func New(version, goVersion string) *Metrics {
	m := &Metrics{version: version, goVersion: goVersion, devices: map[string]float64{},
		decisions: map[[2]string]float64{}, failures: map[string]float64{}, attach: histogram{bounds: attachBuckets}}
	for _, s := range States {
		m.devices[s] = 0
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

// Update takes the agent's state; a change makes the next Flush write.
func (m *Metrics) Update(s Snapshot) {
	m.mu.Lock()
	defer m.mu.Unlock()
	for _, st := range States {
		m.devices[st] = float64(s.Devices[st])
	}
	for st, n := range s.Devices {
		m.devices[st] = float64(n)
	}
	old := m.snap
	m.snap = s
	if !sameSnapshot(old, s) {
		m.dirty.Store(true)
	}
}

// sameSnapshot ignores the counters that move with every event (uevents,
// passes): a change worth a write shows elsewhere too.
func sameSnapshot(a, b Snapshot) bool {
	return maps.Equal(a.Devices, b.Devices) && a.Overruns == b.Overruns && a.Refused == b.Refused && a.HooksRun == b.HooksRun && a.HooksDropped == b.HooksDropped &&
		a.Reconnects == b.Reconnects && a.Connected == b.Connected && a.PolicyLoadedAt.Equal(b.PolicyLoadedAt) && a.ReloadFailedAt.Equal(b.ReloadFailedAt)
}

// Decision counts one decision.
func (m *Metrics) Decision(action, rule string) {
	m.mu.Lock()
	m.decisions[[2]string{action, rule}]++
	m.mu.Unlock()
	m.dirty.Store(true)
}

// Attached observes one attach's latency.
func (m *Metrics) Attached(d time.Duration) {
	m.mu.Lock()
	m.attach.observe(d.Seconds())
	m.mu.Unlock()
	m.dirty.Store(true)
}

// Failure counts a failed step, labelled by a short, bounded name (the
// step), never by a message that holds a busid.
func (m *Metrics) Failure(step string) {
	m.mu.Lock()
	m.failures[step]++
	m.mu.Unlock()
	m.dirty.Store(true)
}

// Families is every metric at now (the heartbeat's value): the families
// sorted by name and each family's series by their labels.
func (m *Metrics) Families(now time.Time) []Family {
	m.mu.Lock()
	defer m.mu.Unlock()
	s := m.snap
	var fams []Family
	add := func(name, typ, help string, labels []string, ss ...Series) {
		fams = append(fams, Family{Name: Namespace + "_" + name, Type: typ, Help: help, Labels: labels, Series: ss})
	}
	one := func(v float64) Series { return Series{Value: v} }
	add("build_info", TypeGauge, "Always 1; the labels say which build runs.", []string{"goversion", "version"},
		Series{Values: []string{m.goVersion, m.version}, Value: 1})
	add("devices", TypeGauge, "USB devices on the host by the state the agent last put them in.", []string{"state"}, labelled1(m.devices)...)
	dec := make([]Series, 0, len(m.decisions))
	for k, v := range m.decisions {
		dec = append(dec, Series{Values: []string{k[0], k[1]}, Value: v})
	}
	add("decisions_total", TypeCounter, "Decisions the agent made, by action and by the rule that decided (empty: none matched).", []string{"action", "rule"}, dec...)
	add("failures_total", TypeCounter, "Steps that failed and will be retried, by the step that failed.", []string{"step"}, labelled1(m.failures)...)
	add("heartbeat_timestamp_seconds", TypeGauge, "When the agent last wrote or reported its metrics, Unix time; stale means the agent is down or stuck.", nil, one(unix(now)))
	add("uevents_received_total", TypeCounter, "Kernel uevents received.", nil, one(float64(s.Uevents)))
	add("uevent_overruns_total", TypeCounter, "Times the kernel dropped uevents (ENOBUFS) and everything was looked at again.", nil, one(float64(s.Overruns)))
	add("uevents_refused_total", TypeCounter, "Kernel uevents that failed validation; everything was looked at again.", nil, one(float64(s.Refused)))
	add("passes_total", TypeCounter, "Passes over one device (each reads its state and acts on it).", nil, one(float64(s.Passes)))
	add("hooks_run_total", TypeCounter, "Rule exec commands started.", nil, one(float64(s.HooksRun)))
	add("hooks_dropped_total", TypeCounter, "Rule exec commands skipped because the queue was full.", nil, one(float64(s.HooksDropped)))
	add("xenstore_reconnects_total", TypeCounter, "Times the connection to xenstore was made again after it was lost.", nil, one(float64(s.Reconnects)))
	add("xenstore_connected", TypeGauge, "1 while the agent is connected to xenstore.", nil, one(b2f(s.Connected)))
	add("policy_loaded_timestamp_seconds", TypeGauge, "When the policy in force was loaded, Unix time.", nil, one(unix(s.PolicyLoadedAt)))
	add("policy_last_reload_success", TypeGauge, "1 if the last policy load or reload was taken, 0 if it was refused (the previous policy stays).", nil,
		one(b2f(s.ReloadFailedAt.IsZero() || s.ReloadFailedAt.Before(s.PolicyLoadedAt))))
	fams = append(fams, m.attach.family(Namespace+"_attach_duration_seconds",
		"Time from the event that asked for a pass to the device attached (port written, interfaces in usbback)."))
	sortFamilies(fams)
	return fams
}

// Gather renders every metric at now in the text exposition format.
func (m *Metrics) Gather(now time.Time) []byte { return Text(m.Families(now)) }

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
	if err := writeAtomic(t.Path, m.Gather(now)); err != nil {
		m.dirty.Store(true) // try again at the next flush
		return err
	}
	t.last = now
	return nil
}

// writeAtomic replaces path so that the collector never reads half a file.
// The temporary name starts with a dot and does not end in .prom, so the
// collector skips it.
func writeAtomic(path string, b []byte) error {
	if err := atomicfile.Write(path, b, 0o644, true); err != nil {
		return fmt.Errorf("metrics textfile %s: %w", path, err)
	}
	return nil
}

// The exporter's own metrics, beside the agent's: whether the agent
// answered the scrape's request, and how long it took.
const (
	UpName           = Namespace + "_up"
	UpHelp           = "1 if the agent answered the exporter's request over the control socket at this scrape, 0 if it is down or did not answer."
	AgentRequestName = Namespace + "_agent_request_duration_seconds"
	AgentRequestHelp = "Time the agent took to answer the exporter's request at this scrape."
)
