package daemon

import (
	"context"
	"time"

	"github.com/usbhotplugd/usbhotplugd/internal/agent"
	"github.com/usbhotplugd/usbhotplugd/internal/metrics"
)

// metricsHeartbeat is how often the metrics file is rewritten with nothing
// changed, so that a stale heartbeat means the agent is down.
const metricsHeartbeat = time.Minute

// deviceState is the devices gauge's state of a device whose last record
// has action act.
func deviceState(act agent.Action) string {
	switch act {
	case agent.ActAttached, agent.ActKept:
		return "attached"
	case agent.ActPending:
		return "pending"
	case agent.ActDenied:
		return "denied"
	case agent.ActRefused:
		return "refused"
	case agent.ActHeld:
		return "held"
	case agent.ActLeft:
		return "foreign"
	case agent.ActFailed:
		return "failed"
	case agent.ActBlocked:
		return "blocked"
	default: // unmatched, released, cleared, detached
		return "with_dom0"
	}
}

// countMetric counts one decision.
func countMetric(m *metrics.Metrics, r agent.Audit) {
	m.Decision(string(r.Action), r.Rule)
	switch r.Action {
	case agent.ActAttached:
		if !r.DryRun {
			m.Attached(time.Duration(r.Duration))
		}
	case agent.ActFailed:
		m.Failure(r.FailedStep)
	}
}

// snapshot is what the metrics report of a status.
func snapshot(st Status) metrics.Snapshot {
	s := metrics.Snapshot{Devices: map[string]int{}, Uevents: st.Stats.Events, Overruns: st.Stats.Overruns, Refused: st.Stats.Refused, Passes: st.Stats.Passes,
		HooksRun: st.Stats.HooksRun, HooksDropped: st.Stats.HooksDropped, Reconnects: st.Xenstore.Reconnects,
		Connected: st.Xenstore.Connected, PolicyLoadedAt: st.Policy.LoadedAt, ReloadFailedAt: st.Policy.ReloadRefusedAt}
	for _, r := range st.Devices {
		s.Devices[deviceState(r.Action)]++
	}
	return s
}

// writeMetrics is the metrics task: the textfile follows the status (at
// most once a second) and is rewritten every heartbeat. A failing write is
// said once per run of failures.
func writeMetrics(ctx context.Context, s *state, m *metrics.Metrics, tf *metrics.Textfile, d *daemon) error {
	beat := time.NewTicker(metricsHeartbeat)
	defer beat.Stop()
	failing := false
	for {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-s.metricsChanged:
		case <-beat.C:
		}
		m.Update(snapshot(s.get()))
		err := tf.Flush(m, time.Now())
		switch {
		case err != nil && !failing:
			d.log.Warn().Err(err).Str("path", tf.Path).Msg("metrics: cannot write the textfile")
		case err == nil && failing:
			d.log.Info().Str("path", tf.Path).Msg("metrics: the textfile is written again")
		}
		failing = err != nil
		// At most one write a second, however busy the agent is.
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(time.Second):
		}
	}
}
