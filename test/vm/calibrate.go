package vmtest

import (
	"context"
	"fmt"
	"os"
	"slices"
	"sort"
	"strings"
)

// The real and the fake kernel are compared on what the agent sees of
// them and does to them: each device's usb uevents, in order, and the
// final drivers and ports. normalise reduces a trace to that:
//
//   - only SUBSYSTEM=usb events of devices and interfaces. What drivers
//     make below an interface (hid, input, hidraw, leds, SCSI hosts and
//     disks, sound cards, network interfaces, wakeup sources) the fake
//     kernel does not model, and the agent does not read; the bus's,
//     drivers' and modules' events are the kernel's boot;
//   - not the root hubs' events: the controllers make them at boot, the
//     fake kernel's tree has its root hubs from the start;
//   - of each event its ACTION, whether it is the device's or which
//     interface's, and its DRIVER. SEQNUM and times differ from run to
//     run; the path above the device names a PCI slot; PRODUCT, TYPE,
//     INTERFACE and MODALIAS are the device's descriptors, which the fake
//     kernel's own tests check against a real kernel's captures;
//   - devices are named by the scenario's ID (by their serial, else by
//     their port), not by busid, and each device's events are listed
//     together: the interleaving of two devices' events depends on
//     timing (the agent works on one while the kernel enumerates the
//     next, or a kill lands during an attach), their order within one
//     device does not.
//
// Every scenario is calibrated but quick.scn, storm.scn and
// storm-authorize.scn, those that mount a disk (Scenario.Mounts,
// inuse.scn), those that suspend dom0 (Scenario.Suspends, suspend.scn),
// those that plug a device whose probe is slow (Scenario.ProbesSlowly,
// slowprobe.scn, slowbind.scn), those with EHCI companions
// (companions.scn), which the fake kernel has not, and
// config-rules-authorize.scn, whose give-back to dom0 right after a
// detach the real usbback takes first or not, as its port watch is late
// or not. quick.scn's and the storms' keyboard is plugged and pulled out
// at once, and whether the real kernel enumerates it first, and how far,
// is timing; the recorded events would
// be one run's. A mount cannot be made true on the fake kernel: its disks
// are sysfs entries with nothing to mount, and the agent in this process
// would read, and watch, the host's own mounts, which a test must not
// change; faking the mount table would test the fake, not the watch. Nor
// can a suspend: what a resume does to USB devices (drivers without PM
// callbacks unbound and their interfaces probed again, reset-resumes, a
// reset controller's devices enumerated again) is the real kernel's, and
// which of them happens varies from one resume to the next (QEMU resets
// EHCI on one wake and not on another). A slow probe the fake kernel
// plays (it holds the device's lock, and its hub's, as long), but it binds
// the driver at once, where the real kernel binds it when the probe ends,
// and how far the agent gets meanwhile is timing.
func (r *runner) normalise(trace string) []string {
	ids := r.scenarioIDs()
	bySerial := map[string]string{}
	dup := map[string]bool{}
	for _, id := range ids {
		s := r.plugs[id].Get("serial")
		if _, seen := bySerial[s]; seen {
			dup[s] = true
		}
		bySerial[s] = id
	}
	byPort := map[string]string{}
	for _, id := range ids {
		for _, b := range r.candidates(r.plugs[id]) {
			byPort[b] = id
		}
	}
	named := map[string]string{} // busid → the ID of the device now there
	lines := map[string][]string{}
	for _, e := range ParseTrace(trace) {
		name := e.DevPath[strings.LastIndexByte(e.DevPath, '/')+1:]
		if e.Subsystem != "usb" || strings.HasPrefix(name, "usb") || strings.Contains(name, "-0:") {
			continue
		}
		dev, what := name, "device"
		if i := strings.IndexByte(name, ':'); i >= 0 {
			dev, what = name[:i], name[i:]
		} else if e.Action == "add" {
			named[dev] = r.nameOf(dev, e, bySerial, dup, byPort)
		}
		id := named[dev]
		if id == "" {
			id = r.nameOf(dev, e, bySerial, dup, byPort)
		}
		l := fmt.Sprintf("%s %s %s", id, e.Action, what)
		if d := e.Env["DRIVER"]; d != "" {
			l += " " + d
		}
		lines[id] = append(lines[id], l)
	}
	var out []string
	for _, id := range ids {
		out = append(out, lines[id]...)
		delete(lines, id)
	}
	rest := make([]string, 0, len(lines))
	for id := range lines {
		rest = append(rest, id)
	}
	sort.Strings(rest)
	for _, id := range rest {
		out = append(out, lines[id]...)
	}
	return out
}

// nameOf is the scenario's ID for the device an add event made: by its
// serial when one device of the scenario has it, else by its port.
func (r *runner) nameOf(busid string, e TraceEvent, bySerial map[string]string, dup map[string]bool, byPort map[string]string) string {
	if s := e.Serial; s != "" && !dup[s] && bySerial[s] != "" {
		return bySerial[s]
	}
	if id := byPort[busid]; id != "" {
		return id
	}
	return busid
}

// scenarioIDs are the devices of the scenario, coldplugged ones first,
// in the order they are first named.
func (r *runner) scenarioIDs() []string {
	var ids []string
	for _, p := range r.sc.Coldplug {
		ids = append(ids, p.Get("id"))
	}
	for _, st := range r.sc.Steps {
		if (st.Verb == "plug" || st.Verb == "plugunplug") && !slices.Contains(ids, st.Plug.Get("id")) {
			ids = append(ids, st.Plug.Get("id"))
		}
	}
	return ids
}

// finalState is, for each device of the scenario, its interfaces'
// drivers and the domain it is at, or that it is gone.
func (r *runner) finalState(ctx context.Context) []string {
	devs, err := r.m.Devices(ctx)
	if err != nil {
		return []string{"final: " + err.Error()}
	}
	all, err := r.h.Assigned(ctx)
	if err != nil {
		return []string{"final: " + err.Error()}
	}
	var out []string
	for _, id := range r.scenarioIDs() {
		busid, err := r.resolve(ctx, id)
		d := findDev(devs, busid)
		if err != nil || d == nil {
			out = append(out, fmt.Sprintf("final %s absent", id))
			continue
		}
		port := "none"
		for _, a := range all {
			if a.BusID == busid {
				port = fmt.Sprintf("domid %d", a.Domid)
				for _, dd := range r.doms {
					if dd.running && dd.ID == a.Domid {
						port = dd.Name
					}
				}
			}
		}
		out = append(out, fmt.Sprintf("final %s drivers=%s port=%s", id, driverList(d), port))
	}
	return out
}

// diffLines is a line diff of want and got ("-" only in want, "+" only
// in got, " " in both), or "" when they are equal.
func diffLines(want, got []string) string {
	if slices.Equal(want, got) {
		return ""
	}
	n, m := len(want), len(got)
	lcs := make([][]int, n+1)
	for i := range lcs {
		lcs[i] = make([]int, m+1)
	}
	for i := n - 1; i >= 0; i-- {
		for j := m - 1; j >= 0; j-- {
			if want[i] == got[j] {
				lcs[i][j] = lcs[i+1][j+1] + 1
			} else {
				lcs[i][j] = max(lcs[i+1][j], lcs[i][j+1])
			}
		}
	}
	var b strings.Builder
	i, j := 0, 0
	for i < n || j < m {
		switch {
		case i < n && j < m && want[i] == got[j]:
			b.WriteString("  " + want[i] + "\n")
			i, j = i+1, j+1
		case i < n && (j == m || lcs[i+1][j] >= lcs[i][j+1]):
			b.WriteString("- " + want[i] + "\n")
			i++
		default:
			b.WriteString("+ " + got[j] + "\n")
			j++
		}
	}
	return b.String()
}

// WriteCalibration writes a passing scenario's calibration: a header
// saying where it came from, then the lines.
func WriteCalibration(path string, res Result, kver string) error {
	var b strings.Builder
	fmt.Fprintf(&b, "# scenarios/%s.scn on the real kernel (Debian's %s under QEMU): each device's\n", res.Name, kver)
	b.WriteString("# usb uevents in order, then its final drivers and port. Written by\n")
	b.WriteString("# `make vmtest-calibrate`; test/vm/calibrate.go says what is left out and why.\n")
	for _, l := range res.Calibration {
		b.WriteString(l + "\n")
	}
	return os.WriteFile(path, []byte(b.String()), 0o644)
}

// ReadCalibration reads the lines of a calibration file.
func ReadCalibration(path string) ([]string, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	var out []string
	for _, l := range strings.Split(string(b), "\n") {
		if l != "" && !strings.HasPrefix(l, "#") {
			out = append(out, l)
		}
	}
	return out, nil
}
