package main

import (
	"context"
	"fmt"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/rs/zerolog"

	"github.com/usbhotplugd/usbhotplugd/internal/daemon"
	"github.com/usbhotplugd/usbhotplugd/internal/metrics"
)

// collector asks the agent at each scrape. It describes nothing up front
// (an unchecked collector, in the library's words): the families are the
// agent's, known only when it answers.
type collector struct {
	stateDir string
	timeout  time.Duration
	log      zerolog.Logger

	up, took *prometheus.Desc

	mu   sync.Mutex
	down bool // the last scrape found no agent: said once, until it answers
}

func newCollector(stateDir string, timeout time.Duration, log zerolog.Logger) *collector {
	return &collector{stateDir: stateDir, timeout: timeout, log: log,
		up:   prometheus.NewDesc(metrics.UpName, metrics.UpHelp, nil, nil),
		took: prometheus.NewDesc(metrics.AgentRequestName, metrics.AgentRequestHelp, nil, nil)}
}

func (c *collector) Describe(chan<- *prometheus.Desc) {}

func (c *collector) Collect(ch chan<- prometheus.Metric) {
	ctx, cancel := context.WithTimeout(context.Background(), c.timeout)
	defer cancel()
	t0 := time.Now()
	fams, err := c.ask(ctx)
	took := time.Since(t0)
	c.note(err)
	if err != nil {
		ch <- prometheus.MustNewConstMetric(c.up, prometheus.GaugeValue, 0)
		return
	}
	ch <- prometheus.MustNewConstMetric(c.up, prometheus.GaugeValue, 1)
	ch <- prometheus.MustNewConstMetric(c.took, prometheus.GaugeValue, took.Seconds())
	for _, f := range fams {
		collectFamily(ch, f)
	}
}

// ask makes the metrics request on a connection of its own.
func (c *collector) ask(ctx context.Context) ([]metrics.Family, error) {
	cl, err := daemon.Dial(ctx, c.stateDir)
	if err != nil {
		return nil, err
	}
	defer cl.Close()
	resp, err := cl.Call(daemon.Request{Request: daemon.ReqMetrics})
	if err != nil {
		if ctx.Err() != nil {
			return nil, fmt.Errorf("the agent did not answer within %v: %w", c.timeout, ctx.Err())
		}
		return nil, err
	}
	return resp.Metrics, nil
}

// note logs the agent going away and coming back, once each.
func (c *collector) note(err error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	switch {
	case err != nil && !c.down:
		c.log.Warn().Err(err).Str("state_dir", c.stateDir).Msg("the agent does not answer: usbhotplugd_up is 0")
	case err == nil && c.down:
		c.log.Info().Str("state_dir", c.stateDir).Msg("the agent answers again")
	}
	c.down = err != nil
}

// collectFamily sends one of the agent's families as constant metrics. A
// family the library refuses (a bad name, values that do not match the
// labels) is sent as an invalid metric: the handler logs it and serves
// the rest.
func collectFamily(ch chan<- prometheus.Metric, f metrics.Family) {
	desc := prometheus.NewDesc(f.Name, f.Help, f.Labels, nil)
	if f.Type == metrics.TypeHistogram {
		h := f.Histogram
		if h == nil || len(h.Cumulative) != len(h.Bounds) {
			ch <- prometheus.NewInvalidMetric(desc, fmt.Errorf("%s: a histogram without matching buckets", f.Name))
			return
		}
		buckets := make(map[float64]uint64, len(h.Bounds))
		for i, b := range h.Bounds {
			buckets[b] = h.Cumulative[i]
		}
		m, err := prometheus.NewConstHistogram(desc, h.Count, h.Sum, buckets)
		if err != nil {
			m = prometheus.NewInvalidMetric(desc, err)
		}
		ch <- m
		return
	}
	var vt prometheus.ValueType
	switch f.Type {
	case metrics.TypeCounter:
		vt = prometheus.CounterValue
	case metrics.TypeGauge:
		vt = prometheus.GaugeValue
	default:
		ch <- prometheus.NewInvalidMetric(desc, fmt.Errorf("%s: unknown type %q", f.Name, f.Type))
		return
	}
	for _, s := range f.Series {
		m, err := prometheus.NewConstMetric(desc, vt, s.Value, s.Values...)
		if err != nil {
			m = prometheus.NewInvalidMetric(desc, err)
		}
		ch <- m
	}
}
