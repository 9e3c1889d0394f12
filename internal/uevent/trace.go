package uevent

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"strconv"
	"strings"
	"time"
)

// A Record is one line of a trace: an event, or an overrun, with the time
// it was received and, for an added USB device or interface, its sysfs
// attributes (usbsysfs.TraceAttrs, IntfTraceAttrs) as they were at that
// moment. Serials, names and
// speeds are in no uevent, and sysfs is gone by the time of the remove, so
// a replay needs them from here.
type Record struct {
	Time     time.Time         `json:"time,omitzero"`
	Overrun  bool              `json:"overrun,omitempty"`
	Coldplug bool              `json:"coldplug,omitempty"` // made by a coldplug scan
	Event    *Event            `json:"event,omitempty"`
	Sysfs    map[string]string `json:"sysfs,omitempty"`
	// Domain is a replay directive, not a kernel event: a guest starts or
	// is destroyed at this point of the trace.
	Domain *DomainChange `json:"domain,omitempty"`
}

// A DomainChange is a guest starting or being destroyed, for replay.
type DomainChange struct {
	Action string `json:"action"` // "start" or "destroy"
	Name   string `json:"name"`
	Domid  uint32 `json:"domid,omitempty"` // for start
	Type   string `json:"type,omitempty"`  // pv (default), pvh or hvm
}

// traceEvent is the JSON form of an Event. The environment is the truth;
// the other fields are repeated for people reading the file, and must
// agree with it.
type traceEvent struct {
	Action    string            `json:"action"`
	DevPath   string            `json:"devpath"`
	Subsystem string            `json:"subsystem"`
	DevType   string            `json:"devtype,omitempty"`
	Seqnum    uint64            `json:"seqnum"`
	Env       map[string]string `json:"env"`
}

// MarshalJSON writes an event as a trace line carries it.
func (e Event) MarshalJSON() ([]byte, error) {
	return json.Marshal(traceEvent(e))
}

// UnmarshalJSON reads an event from a trace line and checks it as a
// datagram from the kernel would be checked.
func (e *Event) UnmarshalJSON(b []byte) error {
	var t traceEvent
	if err := json.Unmarshal(b, &t); err != nil {
		return err
	}
	ev, err := checkEvent(Event(t))
	if err != nil {
		return err
	}
	*e = ev
	return nil
}

// checkEvent validates an event that did not come as a datagram (from a
// trace or from udevadm text) by encoding it as the kernel would and
// parsing that: one set of rules for every way an event gets in.
func checkEvent(e Event) (Event, error) {
	if e.Env == nil {
		return Event{}, refuse("no environment")
	}
	for k, want := range map[string]string{"ACTION": e.Action, "DEVPATH": e.DevPath, "SUBSYSTEM": e.Subsystem, "DEVTYPE": e.DevType, "SEQNUM": strconv.FormatUint(e.Seqnum, 10)} {
		if got, ok := e.Env[k]; (ok || want != "") && got != want {
			return Event{}, refuse("%s is %q in the environment but %q in the event", k, got, want)
		}
	}
	b := Marshal(e)
	ev, err := Parse(b)
	if err != nil {
		return Event{}, err
	}
	if !maps.Equal(ev.Env, e.Env) {
		return Event{}, refuse("the environment has keys that do not survive encoding (an '=' in a key, a key given twice)")
	}
	return ev, nil
}

// A TraceWriter writes records as JSON lines.
type TraceWriter struct {
	w   *bufio.Writer
	enc *json.Encoder
}

// NewTraceWriter returns a TraceWriter on w. Call Flush when done.
func NewTraceWriter(w io.Writer) *TraceWriter {
	bw := bufio.NewWriter(w)
	return &TraceWriter{w: bw, enc: json.NewEncoder(bw)}
}

// Write appends one record.
func (t *TraceWriter) Write(r Record) error {
	if err := t.enc.Encode(r); err != nil {
		return fmt.Errorf("uevent: trace: %w", err)
	}
	return nil
}

// Flush writes what is buffered.
func (t *TraceWriter) Flush() error { return t.w.Flush() }

// MaxTraceLine is the longest trace line accepted.
const MaxTraceLine = 64 << 10

// ErrTrace is wrapped by every error for a trace that is refused.
var ErrTrace = errors.New("bad trace")

// A TraceError names the line of a trace that was refused.
type TraceError struct {
	Name string // file name, or ""
	Line int
	Err  error
}

func (e *TraceError) Error() string {
	name := e.Name
	if name == "" {
		name = "trace"
	}
	return fmt.Sprintf("%s:%d: %v", name, e.Line, e.Err)
}

func (e *TraceError) Unwrap() []error { return []error{ErrTrace, e.Err} }

// ReadTrace reads every record of a trace; name is used in errors. Blank
// lines are skipped. A record must hold an event or be an overrun, and
// the sysfs attributes only go with an event.
func ReadTrace(r io.Reader, name string) ([]Record, error) {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 0, 4096), MaxTraceLine)
	var out []Record
	line := 0
	for sc.Scan() {
		line++
		b := sc.Bytes()
		if len(bytes.TrimSpace(b)) == 0 {
			continue
		}
		var rec Record
		dec := json.NewDecoder(bytes.NewReader(b))
		dec.DisallowUnknownFields()
		if err := dec.Decode(&rec); err != nil {
			return nil, &TraceError{name, line, err}
		}
		if dec.More() {
			return nil, &TraceError{name, line, errors.New("more than one JSON value on the line")}
		}
		kinds := 0
		for _, k := range []bool{rec.Event != nil, rec.Overrun, rec.Domain != nil} {
			if k {
				kinds++
			}
		}
		switch {
		case kinds == 0:
			return nil, &TraceError{name, line, errors.New("neither an event nor an overrun")}
		case kinds > 1:
			return nil, &TraceError{name, line, errors.New("both an event and an overrun (or a domain change)")}
		case rec.Event == nil && rec.Sysfs != nil:
			return nil, &TraceError{name, line, errors.New("sysfs attributes without an event")}
		}
		if d := rec.Domain; d != nil {
			if d.Action != "start" && d.Action != "destroy" || d.Name == "" || len(d.Name) > 64 || strings.ContainsAny(d.Name, "/ \x00") ||
				d.Action == "start" && (d.Domid == 0 || d.Domid > 0x7fef) || d.Type != "" && d.Type != "pv" && d.Type != "pvh" && d.Type != "hvm" {
				return nil, &TraceError{name, line, fmt.Errorf("domain change %+v: start NAME with a domid 1..32751, or destroy NAME", *d)}
			}
		}
		for k, v := range rec.Sysfs {
			if err := checkAttr(k, v); err != nil {
				return nil, &TraceError{name, line, err}
			}
		}
		out = append(out, rec)
	}
	if err := sc.Err(); err != nil {
		return nil, &TraceError{name, line + 1, err}
	}
	return out, nil
}

// checkAttr refuses attribute names outside usbsysfs.TraceAttrs' form and
// values no kernel writes, since a replay writes them into files. A NUL
// is the one byte a kernel's string attribute cannot hold; control
// characters it can (a device's strings are its maker's choice), and a
// trace of such a device replays.
func checkAttr(k, v string) error {
	if k == "" || len(k) > 32 {
		return fmt.Errorf("sysfs attribute name %q", k)
	}
	for _, c := range k {
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '_') {
			return fmt.Errorf("sysfs attribute name %q", k)
		}
	}
	if len(v) > 4096 {
		return fmt.Errorf("sysfs attribute %s: %d bytes", k, len(v))
	}
	if i := strings.IndexByte(v, 0); i >= 0 {
		return fmt.Errorf("sysfs attribute %s has a NUL byte at %d", k, i)
	}
	return nil
}

// Events returns the events of records, in order, leaving out overruns.
func Events(recs []Record) []Event {
	out := make([]Event, 0, len(recs))
	for _, r := range recs {
		if r.Event != nil {
			e := *r.Event
			e.Env = maps.Clone(e.Env)
			out = append(out, e)
		}
	}
	return out
}
