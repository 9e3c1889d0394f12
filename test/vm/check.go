package vmtest

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/usbhotplugd/usbhotplugd/internal/assign"
	"github.com/usbhotplugd/usbhotplugd/internal/usbsysfs"
)

// learnBuses maps each controller to its root hubs' bus numbers (USB 2
// first), by the root hubs' serials, which are their PCI addresses.
func (r *runner) learnBuses(ctx context.Context) error {
	devs, err := r.m.Devices(ctx)
	if err != nil {
		return err
	}
	sort.Slice(devs, func(i, j int) bool {
		return devs[i].Speed == "480" && devs[j].Speed != "480" || devs[i].BusNum < devs[j].BusNum && devs[i].Speed == devs[j].Speed
	})
	for _, d := range devs {
		if d.Parent != "" {
			continue
		}
		for _, c := range vmControllers(r.sc.Companions) {
			if strings.HasSuffix(d.Serial, pciSuffix(c.addr)) {
				r.buses[c.id] = append(r.buses[c.id], d.BusNum)
			}
		}
	}
	for _, c := range vmControllers(r.sc.Companions) {
		if len(r.buses[c.id]) == 0 {
			return fmt.Errorf("no root hub of %s in the guest", c.id)
		}
	}
	return nil
}

// pciSuffix is how a root hub's serial (its PCI address) ends for a
// controller at addr (0xSLOT or 0xSLOT.FUNCTION).
func pciSuffix(addr string) string {
	slot, fn, _ := strings.Cut(addr, ".")
	if fn == "" {
		fn = "0"
	}
	return fmt.Sprintf(":%02x.%s", parseHex(slot), fn)
}

func parseHex(s string) int {
	var n int
	fmt.Sscanf(strings.TrimPrefix(s, "0x"), "%x", &n)
	return n
}

// resolve is the busid of the device the scenario calls id: the bus of
// its controller's root hub that has it, and its port path.
func (r *runner) resolve(ctx context.Context, id string) (string, error) {
	if b := r.busids[id]; b != "" {
		return b, nil
	}
	p, ok := r.plugs[id]
	if !ok {
		return "", fmt.Errorf("no device %q in the scenario", id)
	}
	devs, err := r.m.Devices(ctx)
	if err != nil {
		return "", err
	}
	for _, want := range r.candidates(p) {
		if findDev(devs, want) != nil {
			r.busids[id] = want
			return want, nil
		}
	}
	return "", fmt.Errorf("%s (bus %s port %s) is not in the guest", id, p.Get("bus"), p.Get("port"))
}

// candidates are the busids a device can have: its port path under each
// root hub of its controller.
func (r *runner) candidates(p Plug) []string {
	ctrl, _, _ := strings.Cut(p.Get("bus"), ".")
	var out []string
	for _, bn := range r.buses[ctrl] {
		out = append(out, fmt.Sprintf("%d-%s", bn, p.Get("port")))
	}
	// At an EHCI with companions, a device that is not high-speed (or
	// the hub it is behind) is at the companion that serves its port.
	if ctrl == "ich" {
		first, rest, _ := strings.Cut(p.Get("port"), ".")
		if n, err := strconv.Atoi(first); err == nil && n >= 1 && n <= 6 {
			path := strconv.Itoa((n-1)%2 + 1)
			if rest != "" {
				path += "." + rest
			}
			for _, bn := range r.buses[fmt.Sprintf("ich-uhci%d", (n-1)/2+1)] {
				out = append(out, fmt.Sprintf("%d-%s", bn, path))
			}
		}
	}
	return out
}

func findDev(devs []usbsysfs.Device, busid string) *usbsysfs.Device {
	for i := range devs {
		if devs[i].BusID == busid {
			return &devs[i]
		}
	}
	return nil
}

func (r *runner) expect(ctx context.Context, cond []string) error {
	ok, found, err := r.eval(ctx, cond)
	if err != nil {
		return err
	}
	if !ok {
		return &StepError{Expected: joinArgs(cond), Found: found}
	}
	return nil
}

// waitFor polls a condition until it holds or the deadline passes.
func (r *runner) waitFor(ctx context.Context, cond []string, within time.Duration) error {
	return r.poll(ctx, func() []string { return cond }, within)
}

// waitForSubst is waitFor with @ID looked up at each look: the device may
// appear only meanwhile.
func (r *runner) waitForSubst(ctx context.Context, cond []string, within time.Duration) error {
	return r.poll(ctx, func() []string { return r.subst(ctx, cond) }, within)
}

func (r *runner) poll(ctx context.Context, condf func() []string, within time.Duration) error {
	deadline := time.Now().Add(within)
	for {
		cond := condf()
		ok, found, err := r.eval(ctx, cond)
		if err != nil {
			return err
		}
		if ok {
			return nil
		}
		if time.Now().After(deadline) {
			return &StepError{Expected: joinArgs(cond) + " within " + within.String(), Found: found}
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(100 * time.Millisecond): // the next look at sysfs and the store
		}
	}
}

// eval reports whether a condition holds, and what was found.
func (r *runner) eval(ctx context.Context, c []string) (bool, string, error) {
	switch c[0] {
	case "present", "absent":
		b, err := r.resolve(ctx, c[1])
		if c[0] == "present" {
			return err == nil, fmt.Sprint(err), nil
		}
		if err != nil {
			return true, "", nil
		}
		devs, derr := r.m.Devices(ctx)
		if derr != nil {
			return false, "", derr
		}
		return findDev(devs, b) == nil, b + " is present", nil
	case "port":
		return r.evalPort(ctx, c[1:])
	case "drivers":
		return r.evalDrivers(ctx, c[1], c[2])
	case "audit", "audits":
		return r.evalAudit(ctx, c)
	case "kernel", "kernels":
		if r.env.Fake {
			return true, "", nil // the fake kernel has no log: only the real one's messages are checked
		}
		return r.evalKernel(ctx, c)
	case "uevents":
		return r.evalUevents(ctx, c)
	case "status", "statuses":
		return r.evalStatus(ctx, c)
	case "ready":
		st, err := r.m.Status(ctx)
		if err != nil {
			return false, err.Error(), nil
		}
		var s struct {
			Ready bool
			State string
		}
		json.Unmarshal([]byte(st), &s)
		return s.Ready || s.State == "ready", "the status file says not ready: " + tail(st, 300), nil
	}
	return false, "", fmt.Errorf("unknown condition %q", c[0])
}

// evalStatus looks at the devices the status file lists: one device's
// entry (status ID ACTION|none) or how many there are (statuses N), so
// that a device gone leaves no entry behind.
func (r *runner) evalStatus(ctx context.Context, c []string) (bool, string, error) {
	st, err := r.m.Status(ctx)
	if err != nil {
		return false, err.Error(), nil
	}
	var s struct {
		Devices []struct{ BusID, Action string }
	}
	if err := json.Unmarshal([]byte(st), &s); err != nil {
		return false, "the status file is not JSON: " + tail(st, 300), nil
	}
	var all []string
	for _, d := range s.Devices {
		all = append(all, d.BusID+" "+d.Action)
	}
	found := fmt.Sprintf("the status file lists %d devices: %s", len(all), strings.Join(all, ", "))
	if c[0] == "statuses" {
		return fmt.Sprint(len(s.Devices)) == c[1], found, nil
	}
	busids := r.candidates(r.plugs[c[1]])
	if b, err := r.resolve(ctx, c[1]); err == nil {
		busids = []string{b}
	}
	for _, d := range s.Devices {
		if slices.Contains(busids, d.BusID) {
			return c[2] != "none" && d.Action == c[2], found, nil
		}
	}
	return c[2] == "none", found, nil
}

func (r *runner) evalPort(ctx context.Context, c []string) (bool, string, error) {
	all, err := r.h.Assigned(ctx)
	if err != nil {
		return false, "", err
	}
	busid, err := r.resolve(ctx, c[0])
	if err != nil && c[1] == "none" {
		// Never seen in the guest: none of the busids it could have is at a port.
		for _, b := range r.candidates(r.plugs[c[0]]) {
			for _, a := range all {
				if a.BusID == b {
					return false, fmt.Sprintf("%s is at domain %d port %d:%d", b, a.Domid, a.Controller, a.Port), nil
				}
			}
		}
		return true, "", nil
	}
	if err != nil {
		return false, err.Error(), nil
	}
	var at *assign.Assignment
	for i := range all {
		if all[i].BusID == busid {
			at = &all[i]
		}
	}
	found := busid + " is at no port"
	if at != nil {
		found = fmt.Sprintf("%s is at domain %d port %d:%d", busid, at.Domid, at.Controller, at.Port)
	}
	if c[1] == "none" {
		return at == nil, found, nil
	}
	d, err := r.dom(c[1])
	if err != nil {
		return false, "", err
	}
	ok := at != nil && d.running && at.Domid == d.ID
	if ok && len(c) == 3 {
		ok = fmt.Sprintf("%d:%d", at.Controller, at.Port) == c[2]
	}
	return ok, found + fmt.Sprintf(" (%s is domid %d, running %v)", d.Name, d.ID, d.running), nil
}

func (r *runner) evalDrivers(ctx context.Context, id, want string) (bool, string, error) {
	busid, err := r.resolve(ctx, id)
	if err != nil {
		return false, err.Error(), nil
	}
	devs, err := r.m.Devices(ctx)
	if err != nil {
		return false, "", err
	}
	d := findDev(devs, busid)
	if d == nil {
		return false, busid + " is not in the guest", nil
	}
	got := driverList(d)
	return got == want, busid + " has drivers " + got, nil
}

func driverList(d *usbsysfs.Device) string {
	in := append([]usbsysfs.Interface(nil), d.Interfaces...)
	sort.Slice(in, func(i, j int) bool { return in[i].Name < in[j].Name })
	var s []string
	for _, i := range in {
		if i.Driver == "" {
			s = append(s, "-")
		} else {
			s = append(s, i.Driver)
		}
	}
	return strings.Join(s, ",")
}

// audits are the agent's audit records since the last action step.
// An auditLine is an audit record as the agent logs it (JSON); the
// fields the checks use, read leniently so that a change of the log's
// other fields does not blind them.
type auditLine struct {
	BusID, Action, Message string
	Trigger                string // what asked for the pass
	// Duration is the pass's (duration_ms, or duration in milliseconds).
	Duration float64
}

func parseAudit(line string) (auditLine, bool) {
	var m map[string]any
	if json.Unmarshal([]byte(line), &m) != nil || m["audit"] != true {
		return auditLine{}, false
	}
	str := func(k string) string { s, _ := m[k].(string); return s }
	a := auditLine{BusID: str("busid"), Action: str("action"), Message: str("message"), Trigger: str("trigger")}
	for _, k := range []string{"duration_ms", "duration"} {
		if d, ok := m[k].(float64); ok {
			a.Duration = d
			break
		}
	}
	return a, a.Action != ""
}

func (r *runner) audits(ctx context.Context) ([]auditLine, error) {
	lg, err := r.m.AgentLog(ctx)
	if err != nil {
		return nil, err
	}
	var out []auditLine
	for _, l := range strings.Split(lg[min(r.logMark, len(lg)):], "\n") {
		if a, ok := parseAudit(l); ok {
			out = append(out, a)
		}
	}
	return out, nil
}

func (r *runner) evalAudit(ctx context.Context, c []string) (bool, string, error) {
	busid, err := r.resolve(ctx, c[1])
	if err != nil {
		return false, err.Error(), nil
	}
	as, err := r.audits(ctx)
	if err != nil {
		return false, "", err
	}
	n, text := 0, ""
	if c[0] == "audit" {
		text = joinArgs(c[3:])
	}
	var seen []string
	for _, a := range as {
		if a.BusID != busid {
			continue
		}
		seen = append(seen, a.Action+" ("+a.Trigger+"): "+a.Message)
		if a.Action == c[2] && (strings.Contains(a.Message, text) || strings.Contains(a.Trigger, text)) {
			n++
		}
	}
	found := fmt.Sprintf("records for %s since the last action: %q", busid, seen)
	if c[0] == "audits" {
		var max int
		if _, err := fmt.Sscan(c[3], &max); err != nil {
			return false, "", fmt.Errorf("audits: MAX %q: %w", c[3], err)
		}
		return n <= max, found, nil
	}
	return n > 0, found, nil
}

// kernelLines is the guest's kernel log, one message a line.
func (r *runner) kernelLines(ctx context.Context) ([]string, error) {
	k, err := r.m.KernelLog(ctx)
	if err != nil {
		return nil, err
	}
	var out []string
	for _, l := range strings.Split(k, "\n") {
		if _, msg, ok := strings.Cut(l, ";"); ok {
			out = append(out, msg)
		}
	}
	return out, nil
}

// measure waits for the device to be at a port of the domain and bound to
// usbback, and keeps how long each took since its plug was answered. The
// store is looked at every few milliseconds (it is on the host); the
// guest's sysfs as fast as the control port answers.
func (r *runner) measure(ctx context.Context, id, dom string) error {
	start := r.lastPlug
	d, err := r.dom(dom)
	if err != nil {
		return err
	}
	busid, err := r.measurePort(ctx, id, d.ID)
	if err != nil {
		return err
	}
	port := time.Since(start)
	deadline := time.Now().Add(60 * time.Second)
	for {
		devs, err := r.m.Devices(ctx)
		if err != nil {
			return err
		}
		if d := findDev(devs, busid); d != nil && allUsbback(d) {
			break
		}
		if time.Now().After(deadline) {
			return &StepError{Expected: id + " bound to usbback within 60s", Found: "it is not"}
		}
	}
	r.res.PortWritten = append(r.res.PortWritten, port)
	r.res.Bound = append(r.res.Bound, time.Since(start))
	return r.agentDuration(ctx, busid)
}

// agentDuration keeps the agent's own duration of the attach: its pass,
// from the uevent that started it.
func (r *runner) agentDuration(ctx context.Context, busid string) error {
	deadline := time.Now().Add(60 * time.Second)
	for {
		as, err := r.audits(ctx)
		if err != nil {
			return err
		}
		for _, a := range as {
			if a.BusID == busid && a.Action == "attached" {
				r.res.AgentPass = append(r.res.AgentPass, time.Duration(a.Duration*float64(time.Millisecond)))
				return nil
			}
		}
		if time.Now().After(deadline) {
			return &StepError{Expected: "an attached record for " + busid, Found: "none"}
		}
	}
}

// measurePort waits for a port of domid to name one of the busids the
// device can have (its controller's root hubs, its port path).
func (r *runner) measurePort(ctx context.Context, id string, domid uint32) (string, error) {
	want := map[string]bool{}
	for _, b := range r.candidates(r.plugs[id]) {
		want[b] = true
	}
	deadline := time.Now().Add(60 * time.Second)
	for {
		all, err := r.h.Assigned(ctx)
		if err != nil {
			return "", err
		}
		for _, a := range all {
			if want[a.BusID] && a.Domid == domid {
				r.busids[id] = a.BusID
				return a.BusID, nil
			}
		}
		if time.Now().After(deadline) {
			return "", &StepError{Expected: fmt.Sprintf("%s at a port of domain %d within 60s", id, domid), Found: fmt.Sprintf("%+v", all)}
		}
		select {
		case <-ctx.Done():
			return "", ctx.Err()
		case <-time.After(5 * time.Millisecond): // the next look at the store
		}
	}
}

func allUsbback(d *usbsysfs.Device) bool {
	for _, in := range d.Interfaces {
		if in.Driver != "usbback" {
			return false
		}
	}
	return len(d.Interfaces) > 0
}

func (r *runner) evalKernel(ctx context.Context, c []string) (bool, string, error) {
	lines, err := r.kernelLines(ctx)
	if err != nil {
		return false, "", err
	}
	max, words := -1, c[1:]
	if c[0] == "kernels" {
		if _, err := fmt.Sscan(c[1], &max); err != nil {
			return false, "", fmt.Errorf("kernels: MAX %q: %w", c[1], err)
		}
		words = c[2:]
	}
	want := joinArgs(words)
	n := 0
	for _, l := range lines[min(r.kmMark, len(lines)):] {
		if strings.Contains(l, want) {
			n++
		}
	}
	if max >= 0 {
		return n <= max, fmt.Sprintf("%d such kernel messages since the last action", n), nil
	}
	return n > 0, "no such kernel message since the last action", nil
}

// evalUevents is a uevents condition on the trace recorded so far.
func (r *runner) evalUevents(ctx context.Context, c []string) (bool, string, error) {
	m, err := parseTraceMatch(c[2:])
	if err != nil {
		return false, "", err
	}
	if r.env.Fake && !m.usbOnly() {
		return true, "", nil // the fake kernel makes no hid, input, SCSI… devices: only the real one's are checked
	}
	busid := ""
	if m.under != "" {
		if busid, err = r.resolve(ctx, m.under); err != nil {
			return false, err.Error(), nil
		}
	}
	text, err := r.m.Trace(ctx)
	if err != nil {
		return false, "", err
	}
	ok, found := evalTrace(ParseTrace(text), c[1], m, busid)
	return ok, found, nil
}
