package daemon

import (
	"context"
	"encoding/json"
	"path/filepath"
	"sync"
	"time"

	"github.com/rs/zerolog"

	"github.com/usbhotplugd/usbhotplugd/internal/agent"
	"github.com/usbhotplugd/usbhotplugd/internal/assign"
	"github.com/usbhotplugd/usbhotplugd/internal/atomicfile"
)

// The agent's states, as Status.State names them.
const (
	StateStarting = "starting"
	StateWaiting  = "waiting_for_xenstored"
	StateSyncing  = "reconciling"
	StateReady    = "ready"
	StateStopped  = "stopped" // status.json's last word: the agent ended (its pid is the one that ran)
)

// Status is the agent's whole status: the reply to a status request, and
// status.json.
type Status struct {
	PID       int         `json:"pid"`
	Version   string      `json:"version"`
	StartedAt time.Time   `json:"started_at"`
	UptimeMS  int64       `json:"uptime_ms"`
	State     string      `json:"state"`
	DryRun    bool        `json:"dry_run"`
	Xenstore  StoreStatus `json:"xenstore"`
	Policy    PolicyState `json:"policy"`
	Stats     agent.Stats `json:"stats"`
	// DevicesUpdatedAt is when the last decision changed Devices.
	DevicesUpdatedAt time.Time     `json:"devices_updated_at,omitzero"`
	Devices          []agent.Audit `json:"devices"`
	// SkippedControllers are guests' controllers the agent cannot use,
	// and why.
	SkippedControllers []assign.Skipped `json:"skipped_controllers,omitempty"`
}

// StoreStatus is the agent's connection to xenstored.
type StoreStatus struct {
	Connected bool `json:"connected"`
	// LastError is why the last dial failed or the connection was lost;
	// RetryInMS when the next dial is (while waiting).
	LastError  string `json:"last_error,omitempty"`
	RetryInMS  int64  `json:"retry_in_ms,omitempty"`
	Reconnects int    `json:"reconnects"`
}

// PolicyState is the policy in force. A refused reload sets ReloadError
// and ReloadRefusedAt, and leaves the rest as it was.
type PolicyState struct {
	File            string    `json:"file"`
	Rules           int       `json:"rules"`
	LoadedAt        time.Time `json:"loaded_at"`
	ReloadError     string    `json:"reload_error,omitempty"`
	ReloadRefusedAt time.Time `json:"reload_refused_at,omitzero"`
}

// state is the status the tasks share; the status writer saves it.
type state struct {
	mu      sync.Mutex
	st      Status
	changed chan struct{} // one slot: the writer has something to write
	// metricsChanged: the same, for the metrics writer.
	metricsChanged chan struct{}
	stats          func() agent.Stats
}

func newState(st Status, stats func() agent.Stats) *state {
	return &state{st: st, changed: make(chan struct{}, 1), metricsChanged: make(chan struct{}, 1), stats: stats}
}

// update changes the status under the lock and wakes the writer.
func (s *state) update(f func(*Status)) {
	s.mu.Lock()
	f(&s.st)
	s.mu.Unlock()
	for _, c := range []chan struct{}{s.changed, s.metricsChanged} {
		select {
		case c <- struct{}{}:
		default:
		}
	}
}

// get is a copy of the status, with the counters as they are now.
func (s *state) get() Status {
	s.mu.Lock()
	st := s.st
	st.Devices = append([]agent.Audit(nil), s.st.Devices...)
	st.SkippedControllers = append([]assign.Skipped(nil), s.st.SkippedControllers...)
	s.mu.Unlock()
	st.Stats = s.stats()
	st.UptimeMS = time.Since(st.StartedAt).Milliseconds()
	return st
}

// StatusFile is the status as last saved, under the state directory.
const StatusFile = "status.json"

// writeStatus is the status writer: status.json follows the status,
// written whole (renamed into place) so a reader never sees half of it.
// A failing write is said once per run of failures, and is no reason to
// stop: the socket still answers.
func writeStatus(ctx context.Context, s *state, dir string, log zerolog.Logger) error {
	path := filepath.Join(dir, StatusFile)
	failing := false
	for {
		select {
		case <-ctx.Done():
			// A reader of the file after the end is not told "ready".
			st := s.get()
			st.State = StateStopped
			saveJSON(path, st)
			return ctx.Err()
		case <-s.changed:
		}
		err := saveJSON(path, s.get())
		switch {
		case err != nil && !failing:
			log.Warn().Err(err).Str("path", path).Msg("status: cannot write the status file (the control socket still answers)")
		case err == nil && failing:
			log.Info().Str("path", path).Msg("status: the status file is written again")
		}
		failing = err != nil
	}
}

func saveJSON(path string, v any) error {
	b, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		return err
	}
	return atomicfile.Write(path, append(b, '\n'), 0o600, true) // serials, domains: root's (the adm group asks the control socket)
}
