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

type series struct {
	labels []string // name, value, name, value…
	value  float64
}

type family struct {
	name, typ, help string
	series          []series
	hist            *histogram // a histogram's buckets, sum and count
}

// labelled1 is one series per key of a one-label map.
func labelled1(label string, vals map[string]float64) []series {
	out := make([]series, 0, len(vals))
	for k, v := range vals {
		out = append(out, series{labels: []string{label, k}, value: v})
	}
	return out
}

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

// family is the histogram as a family; writeFamilies writes its
// cumulative buckets up to +Inf, its sum and its count.
func (h *histogram) family(name, help string) family {
	return family{name: name, typ: "histogram", help: help, hist: h}
}

func writeFamilies(fams []family) []byte {
	slices.SortFunc(fams, func(a, b family) int { return strings.Compare(a.name, b.name) })
	var b strings.Builder
	for _, f := range fams {
		b.WriteString("# HELP " + f.name + " " + escape(f.help, false) + "\n")
		b.WriteString("# TYPE " + f.name + " " + f.typ + "\n")
		if h := f.hist; h != nil {
			var cum uint64
			for i, bound := range h.bounds {
				if h.counts != nil {
					cum += h.counts[i]
				}
				writeSeries(&b, f.name+"_bucket", series{labels: []string{"le", formatFloat(bound)}, value: float64(cum)})
			}
			writeSeries(&b, f.name+"_bucket", series{labels: []string{"le", "+Inf"}, value: float64(h.count)})
			writeSeries(&b, f.name+"_sum", series{value: h.sum})
			writeSeries(&b, f.name+"_count", series{value: float64(h.count)})
			continue
		}
		slices.SortFunc(f.series, func(x, y series) int { return slices.Compare(x.labels, y.labels) })
		for _, s := range f.series {
			writeSeries(&b, f.name, s)
		}
	}
	return []byte(b.String())
}

func writeSeries(b *strings.Builder, name string, s series) {
	b.WriteString(name)
	if len(s.labels) > 0 {
		b.WriteByte('{')
		for i := 0; i+1 < len(s.labels); i += 2 {
			if i > 0 {
				b.WriteByte(',')
			}
			b.WriteString(s.labels[i] + `="` + escape(s.labels[i+1], true) + `"`)
		}
		b.WriteByte('}')
	}
	b.WriteString(" " + formatFloat(s.value) + "\n")
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
