package agent_test

import (
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/usbhotplugd/usbhotplugd/internal/agent"
)

// An audit record names its controller whenever it names a port, the
// first controller (0) too, and reads back as it was written.
func TestAuditJSON(t *testing.T) {
	at := time.Date(2026, 11, 24, 8, 0, 0, 0, time.UTC)
	for _, tc := range []struct {
		r        agent.Audit
		want     []string
		wantNone []string
	}{
		{agent.Audit{Time: at, BusID: "1-2", Action: agent.ActAttached, Domain: "kiosk", Domid: 1, Ctrl: 0, Port: 1, Duration: agent.Millis(1500 * time.Microsecond)},
			[]string{`"decided_at":"2026-11-24T08:00:00Z"`, `"port":1`, `"controller":0`, `"duration_ms":1.5`}, nil},
		{agent.Audit{Time: at, BusID: "1-2", Action: agent.ActAttached, Ctrl: 2, Port: 3},
			[]string{`"controller":2`, `"port":3`}, nil},
		{agent.Audit{Time: at, BusID: "1-3", Action: agent.ActPending, Domain: "kiosk"},
			[]string{`"domain":"kiosk"`}, []string{`"controller"`, `"port"`, `"domid"`}},
	} {
		b, err := json.Marshal(tc.r)
		if err != nil {
			t.Fatal(err)
		}
		for _, w := range tc.want {
			if !strings.Contains(string(b), w) {
				t.Errorf("%s lacks %s", b, w)
			}
		}
		for _, w := range tc.wantNone {
			if strings.Contains(string(b), w) {
				t.Errorf("%s has %s", b, w)
			}
		}
		var back agent.Audit
		if err := json.Unmarshal(b, &back); err != nil || back.Ctrl != tc.r.Ctrl || back.Port != tc.r.Port || !back.Time.Equal(tc.r.Time) || back.Duration != tc.r.Duration {
			t.Errorf("%s read back as %+v (%v)", b, back, err)
		}
	}
}
