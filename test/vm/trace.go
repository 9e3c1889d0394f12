package vmtest

import (
	"encoding/json"
	"fmt"
	"strings"

	"github.com/usbhotplugd/usbhotplugd/internal/uevent"
)

// A TraceEvent is one kernel uevent of a recorded trace (the records of
// `usbhotplugd record`), every subsystem's, with the device's serial as
// recorded with its add.
type TraceEvent struct {
	uevent.Event
	Serial string
}

// ParseTrace reads the events of a trace. It is read while the recorder
// still writes it, so a line that does not decode (the last one, cut
// short) is skipped, as are overruns and replay directives.
func ParseTrace(text string) []TraceEvent {
	var out []TraceEvent
	for _, l := range strings.Split(text, "\n") {
		var rec uevent.Record
		if json.Unmarshal([]byte(l), &rec) != nil || rec.Event == nil {
			continue
		}
		out = append(out, TraceEvent{*rec.Event, rec.Sysfs["serial"]})
	}
	return out
}

// under reports whether the event is of the device busid or of something
// below it in the device tree: its interfaces, what their drivers made
// (hid, input, SCSI hosts, disks) and, for a hub, the devices behind it.
func (e TraceEvent) under(busid string) bool {
	return strings.Contains(e.DevPath+"/", "/"+busid+"/")
}

// A traceMatch is the filter of a uevents condition: KEY=V1,V2 (the
// event's environment has KEY with one of the values; ACTION, SUBSYSTEM,
// DEVTYPE and DRIVER are keys like the others), and optionally "under ID".
type traceMatch struct {
	keys  [][2]string
	under string // a scenario ID, or ""
}

// parseTraceMatch reads the words after "uevents none|some".
func parseTraceMatch(args []string) (traceMatch, error) {
	var m traceMatch
	for i := 0; i < len(args); i++ {
		if args[i] == "under" {
			if i != len(args)-2 {
				return m, fmt.Errorf("uevents: under ID comes last, once")
			}
			m.under = args[i+1]
			break
		}
		k, v, ok := strings.Cut(args[i], "=")
		if !ok || k == "" || v == "" {
			return m, fmt.Errorf("uevents: %q: want KEY=VALUE[,VALUE…] or under ID", args[i])
		}
		m.keys = append(m.keys, [2]string{k, v})
	}
	if len(m.keys) == 0 {
		return m, fmt.Errorf("uevents: no KEY=VALUE")
	}
	return m, nil
}

// usbOnly reports whether the filter can match only usb events (the
// ones the fake kernel sends): it names SUBSYSTEM=usb, or no SUBSYSTEM
// and a DRIVER of usb devices and interfaces only.
func (m traceMatch) usbOnly() bool {
	for _, kv := range m.keys {
		if kv[0] == "SUBSYSTEM" {
			return kv[1] == "usb"
		}
	}
	for _, kv := range m.keys {
		if kv[0] == "DRIVER" && strings.Contains(kv[1], "hid-generic") {
			return false
		}
	}
	return true
}

func (m traceMatch) matches(e TraceEvent, busid string) bool {
	if busid != "" && !e.under(busid) {
		return false
	}
	for _, kv := range m.keys {
		got, ok := e.Env[kv[0]]
		if !ok {
			return false
		}
		any := false
		for _, want := range strings.Split(kv[1], ",") {
			any = any || got == want
		}
		if !any {
			return false
		}
	}
	return true
}

// evalTrace is "uevents none|some KEY=V… [under ID]" on the events: none
// holds when no event matches, some when one does. found names the
// matching events (at most a few).
func evalTrace(evs []TraceEvent, mode string, m traceMatch, busid string) (bool, string) {
	var hits []string
	n := 0
	for _, e := range evs {
		if m.matches(e, busid) {
			n++
			if len(hits) < 4 {
				hits = append(hits, fmt.Sprintf("%s %s %s%s", e.Action, e.Subsystem, e.DevPath, driverSuffix(e)))
			}
		}
	}
	found := fmt.Sprintf("%d matching uevents in %d recorded", n, len(evs))
	if n > 0 {
		found += ": " + strings.Join(hits, "; ")
	}
	if mode == "none" {
		return n == 0, found
	}
	return n > 0, found
}

func driverSuffix(e TraceEvent) string {
	if d := e.Env["DRIVER"]; d != "" {
		return " DRIVER=" + d
	}
	return ""
}
