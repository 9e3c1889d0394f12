package uevent

import (
	"context"
	"time"
)

// A Recorder writes what a Source delivers to a trace, with the sysfs
// attributes of each added USB device and interface read the moment its
// event arrives.
type Recorder struct {
	Src   Source
	Attrs func(name string) (map[string]string, error) // usbsysfs.FS.Attrs
	W     *TraceWriter
	Now   func() time.Time // time.Now if nil
	// OnAttrError is told when a device's attributes could not be read
	// (it left already); the event is recorded without them.
	OnAttrError func(busid string, err error)
}

// RecordStats counts what a Recorder wrote.
type RecordStats struct {
	Events, Overruns int
	// Refused are the kernel's datagrams that failed validation; each is
	// in the trace as an overrun, which a replay answers the same way.
	Refused int
}

// Run records until ctx ends or the Source fails, flushing the trace
// after every record; an ended ctx is not an error.
func (r *Recorder) Run(ctx context.Context) (RecordStats, error) {
	var st RecordStats
	now := r.Now
	if now == nil {
		now = time.Now
	}
	for {
		m, err := r.Src.Receive(ctx)
		if err != nil {
			ferr := r.W.Flush()
			if ctx.Err() != nil {
				return st, ferr
			}
			return st, err
		}
		rec := Record{Time: now().UTC(), Overrun: m.Overrun || m.Refused != nil, Coldplug: m.Coldplug}
		switch {
		case m.Overrun:
			st.Overruns++
		case m.Refused != nil:
			st.Refused++
		default:
			e := m.Event
			rec.Event = &e
			if (e.IsUSBDevice() || e.IsUSBInterface()) && e.Action == "add" && r.Attrs != nil {
				a, err := r.Attrs(e.Name())
				if err != nil && r.OnAttrError != nil {
					r.OnAttrError(e.Name(), err)
				}
				rec.Sysfs = a
			}
			st.Events++
		}
		// Each record is written out at once: a trace read while the
		// recording goes on (or after a crash) has every event so far.
		if err := r.W.Write(rec); err != nil {
			return st, err
		}
		if err := r.W.Flush(); err != nil {
			return st, err
		}
	}
}
