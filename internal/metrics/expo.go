package metrics

import (
	"math"
	"slices"
	"strconv"
	"strings"
)

// The text exposition format (version 0.0.4), as Prometheus documents it:
// "# HELP" and "# TYPE" lines, then one line per series, label values
// quoted with \, " and newline escaped.

type histogram struct {
	bounds []float64
	counts []uint64 // per bound, not cumulative
	sum    float64
	count  uint64
}

func (h *histogram) observe(v float64) {
	if h.counts == nil {
		h.counts = make([]uint64, len(h.bounds))
	}
	if i, _ := slices.BinarySearch(h.bounds, v); i < len(h.bounds) {
		h.counts[i]++
	}
	h.sum += v
	h.count++
}

// family is the histogram as a family with cumulative buckets.
func (h *histogram) family(name, help string) Family {
	out := &Histogram{Bounds: slices.Clone(h.bounds), Cumulative: make([]uint64, len(h.bounds)), Sum: h.sum, Count: h.count}
	var cum uint64
	for i := range h.bounds {
		if h.counts != nil {
			cum += h.counts[i]
		}
		out.Cumulative[i] = cum
	}
	return Family{Name: name, Type: TypeHistogram, Help: help, Histogram: out}
}

// Text renders families in the text exposition format, in their order.
func Text(fams []Family) []byte {
	var b strings.Builder
	for _, f := range fams {
		b.WriteString("# HELP " + f.Name + " " + escape(f.Help, false) + "\n")
		b.WriteString("# TYPE " + f.Name + " " + f.Type + "\n")
		if h := f.Histogram; h != nil {
			for i, bound := range h.Bounds {
				var cum uint64
				if i < len(h.Cumulative) {
					cum = h.Cumulative[i]
				}
				writeSeries(&b, f.Name+"_bucket", []string{"le"}, Series{Values: []string{formatFloat(bound)}, Value: float64(cum)})
			}
			writeSeries(&b, f.Name+"_bucket", []string{"le"}, Series{Values: []string{"+Inf"}, Value: float64(h.Count)})
			writeSeries(&b, f.Name+"_sum", nil, Series{Value: h.Sum})
			writeSeries(&b, f.Name+"_count", nil, Series{Value: float64(h.Count)})
			continue
		}
		for _, s := range f.Series {
			writeSeries(&b, f.Name, f.Labels, s)
		}
	}
	return []byte(b.String())
}

func writeSeries(b *strings.Builder, name string, labels []string, s Series) {
	b.WriteString(name)
	if n := min(len(labels), len(s.Values)); n > 0 {
		b.WriteByte('{')
		for i := range n {
			if i > 0 {
				b.WriteByte(',')
			}
			b.WriteString(labels[i] + `="` + escape(s.Values[i], true) + `"`)
		}
		b.WriteByte('}')
	}
	b.WriteString(" " + formatFloat(s.Value) + "\n")
}

func formatFloat(v float64) string {
	switch {
	case math.IsInf(v, 1):
		return "+Inf"
	case math.IsInf(v, -1):
		return "-Inf"
	case math.IsNaN(v):
		return "NaN"
	}
	return strconv.FormatFloat(v, 'g', -1, 64)
}

// escape escapes a help text (\ and newline) or a label value (also ").
func escape(s string, label bool) string {
	if !strings.ContainsAny(s, "\\\n\"") {
		return s
	}
	var b strings.Builder
	for _, r := range s {
		switch {
		case r == '\\':
			b.WriteString(`\\`)
		case r == '\n':
			b.WriteString(`\n`)
		case r == '"' && label:
			b.WriteString(`\"`)
		default:
			b.WriteRune(r)
		}
	}
	return b.String()
}
