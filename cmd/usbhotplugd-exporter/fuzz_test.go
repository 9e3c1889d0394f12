package main

import (
	"encoding/json"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/usbhotplugd/usbhotplugd/internal/metrics"
)

// families is a collector of fixed families, as an agent's answer gives
// them.
type families []metrics.Family

func (families) Describe(chan<- *prometheus.Desc) {}

func (fs families) Collect(ch chan<- prometheus.Metric) {
	for _, f := range fs {
		collectFamily(ch, f)
	}
}

// FuzzFamilies: whatever families an answer holds (bad names, labels
// that do not match, unknown types, histograms without buckets), a scrape
// never panics: the library refuses what is wrong, and serves the rest.
func FuzzFamilies(f *testing.F) {
	m := metrics.New("1.0", "go1.26")
	m.Decision("attached", "r")
	m.Attached(time.Millisecond)
	good, _ := json.Marshal(m.Families(time.Unix(1, 0)))
	f.Add(good)
	for _, s := range []string{`[]`, `null`, `[{"name":"x y","type":"gauge","help":"h","series":[{"value":1}]}]`,
		`[{"name":"usbhotplugd_a","type":"counter","help":"h","labels":["l"],"series":[{"values":["a","b"],"value":1}]}]`,
		`[{"name":"usbhotplugd_a","type":"summary","help":"h","series":[{"value":1}]}]`,
		`[{"name":"usbhotplugd_h","type":"histogram","help":"h"}]`,
		`[{"name":"usbhotplugd_h","type":"histogram","help":"h","histogram":{"bounds":[1,1],"cumulative":[2,1],"sum":1,"count":0}}]`,
		`[{"name":"usbhotplugd_a","type":"gauge","help":"h","series":[{"value":1}]},{"name":"usbhotplugd_a","type":"counter","help":"other","series":[{"value":2}]}]`,
		`[{"name":"usbhotplugd_a","type":"gauge","help":"h","labels":["__name__"],"series":[{"values":["\xff"],"value":1}]}]`} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		var fs []metrics.Family
		if json.Unmarshal(b, &fs) != nil {
			return
		}
		reg := prometheus.NewPedanticRegistry()
		if err := reg.Register(families(fs)); err != nil {
			return
		}
		reg.Gather() // an error is the library refusing bad input: fine
	})
}
