package metricstest

import (
	"bytes"
	"regexp"
	"strings"
	"testing"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
)

// Parse reads a text exposition as Prometheus does, failing t if it does
// not parse.
func Parse(t testing.TB, b []byte) map[string]*dto.MetricFamily {
	t.Helper()
	p := expfmt.NewTextParser(model.UTF8Validation)
	mfs, err := p.TextToMetricFamilies(bytes.NewReader(b))
	if err != nil {
		t.Fatalf("exposition does not parse: %v\n%s", err, b)
	}
	return mfs
}

// Standard are the prefixes of the families the official client library
// adds of itself (its Go runtime, process and handler collectors), which
// are not usbhotplugd's to name.
var Standard = []string{"go_", "process_", "promhttp_"}

var (
	nameRE  = regexp.MustCompile(`^usbhotplugd_[a-z][a-z0-9_]*[a-z0-9]$`)
	labelRE = regexp.MustCompile(`^[a-z][a-z0-9_]*$`)
)

// CheckNames checks the conventions: every family not in Standard is in
// the usbhotplugd_ namespace, snake case, with help; counters and only
// counters end in _total; units are base units named in the suffix; label
// names are snake case.
func CheckNames(t testing.TB, mfs map[string]*dto.MetricFamily) {
	t.Helper()
	if len(mfs) == 0 {
		t.Error("no metric families")
	}
	for n, mf := range mfs {
		if standard(n) {
			continue
		}
		if !nameRE.MatchString(n) {
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
		for _, bad := range []string{"_ms", "_milliseconds", "_us", "_microseconds", "_ns", "_nanoseconds", "_minutes", "_hours", "_kb", "_kib", "_mb", "_bytes_total_"} {
			if strings.Contains(n+"_", bad+"_") {
				t.Errorf("%s: not a base unit (%s)", n, bad)
			}
		}
		for _, mm := range mf.GetMetric() {
			for _, l := range mm.GetLabel() {
				if !labelRE.MatchString(l.GetName()) {
					t.Errorf("%s: label %q not snake case", n, l.GetName())
				}
			}
		}
	}
}

func standard(name string) bool {
	for _, p := range Standard {
		if strings.HasPrefix(name, p) {
			return true
		}
	}
	return false
}

// Value is the value of the first series of family name whose labels
// include labels (a histogram's: its count), failing t if there is none.
func Value(t testing.TB, mfs map[string]*dto.MetricFamily, name string, labels map[string]string) float64 {
	t.Helper()
	mf, ok := mfs[name]
	if !ok {
		t.Fatalf("%s missing", name)
	}
next:
	for _, m := range mf.GetMetric() {
		for k, v := range labels {
			if !hasLabel(m, k, v) {
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
		case m.Untyped != nil:
			return m.Untyped.GetValue()
		}
	}
	t.Fatalf("%s%v missing", name, labels)
	return 0
}

func hasLabel(m *dto.Metric, name, value string) bool {
	for _, l := range m.GetLabel() {
		if l.GetName() == name {
			return l.GetValue() == value
		}
	}
	return value == ""
}
