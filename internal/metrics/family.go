package metrics

import (
	"slices"
	"strings"
)

// The metric types, as a Family names them (the exposition format's words).
const (
	TypeCounter   = "counter"
	TypeGauge     = "gauge"
	TypeHistogram = "histogram"
)

// A Family is one metric family at one moment: its name, type, help and
// series. It is what the textfile is written from and what the control
// socket's metrics request returns, so the textfile and the exporter
// expose the same names, labels and help from this one definition.
type Family struct {
	Name string `json:"name"`
	Type string `json:"type"`
	Help string `json:"help"`
	// Labels are the label names every series has values for, in order.
	Labels []string `json:"labels,omitempty"`
	Series []Series `json:"series,omitempty"`
	// Histogram is set instead of Series for a histogram.
	Histogram *Histogram `json:"histogram,omitempty"`
}

// Series is one series: its label values (in the family's Labels order)
// and its value.
type Series struct {
	Values []string `json:"values,omitempty"`
	Value  float64  `json:"value"`
}

// Histogram is a histogram without labels: its buckets' upper bounds
// (+Inf implied), the observations at or below each, cumulative, and the
// sum and count of all of them.
type Histogram struct {
	Bounds     []float64 `json:"bounds"`
	Cumulative []uint64  `json:"cumulative"`
	Sum        float64   `json:"sum"`
	Count      uint64    `json:"count"`
}

// labelled1 is one series per key of a one-label map.
func labelled1(vals map[string]float64) []Series {
	out := make([]Series, 0, len(vals))
	for k, v := range vals {
		out = append(out, Series{Values: []string{k}, Value: v})
	}
	return out
}

// sortFamilies orders the families by name and each one's series by their
// label values, so that two renderings of the same state are the same
// bytes.
func sortFamilies(fams []Family) {
	slices.SortFunc(fams, func(a, b Family) int { return strings.Compare(a.Name, b.Name) })
	for _, f := range fams {
		slices.SortFunc(f.Series, func(x, y Series) int { return slices.Compare(x.Values, y.Values) })
	}
}
