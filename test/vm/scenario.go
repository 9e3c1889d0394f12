package vmtest

import (
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"
)

// A Scenario is one test: a topology, policies, domains, and steps.
//
// The format is one statement a line; '#' starts a comment line.
//
//	policy NAME            a policy, its TOML on the lines up to "end"
//	domain NAME [stopped] [qemu] [hvm]  a guest, running (unless stopped)
//	                       when the agent first starts; qemu: its device model
//	                       offers qusb; hvm: an HVM guest, whose device model
//	                       (the simulated QEMU, in dom0) takes emulated controllers
//	coldplug DRIVER k=v…   a device present at boot (QEMU -device; id= names it)
//	repeat N … end         the lines between, N times
//	companions             the VM also has an ICH9 EHCI (bus=ich.0) with
//	                       three UHCI companions (real kernel only), which
//	                       take its full- and low-speed devices
//
// and the steps, in order:
//
//	agent start [POLICY] | agent stop | agent kill9
//	plug DRIVER k=v…       device_add (usb-uas takes disk=dN: its scsi-hd)
//	plugunplug DRIVER k=v… device_add then device_del at once
//	unplug ID              device_del
//	domain start|stop|reboot NAME | domain rename OLD NEW
//	reload POLICY          the agent's policy file replaced, `usbhotplugd reload`
//	xl SUBCOMMAND ARGS…    one of the agent binary's xl-like commands, in dom0
//	unbind ID:INTF DRIVER  an admin's unbind; bind ID:INTF DRIVER likewise
//	                       (ID alone: the device's, from or to usb)
//	sysfs ID[:INTF] ATTR VALUE  an admin's write of the device's (or its
//	                       interface's) attribute: bConfigurationValue, authorized;
//	                       hub=CTRL for each root hub of a controller
//	mount ID DIR           dom0 mounts the first partition of the stick's disk
//	                       on DIR (waiting for the disk to be made); umount DIR
//	suspend STATE WAKE     dom0 suspends (STATE mem: S3, written to
//	                       /sys/power/state) and is woken (WAKE qmp: QMP
//	                       system_wakeup once QEMU says it is suspended)
//	persist ID on|off      the device's power/persist: off, a resume that finds
//	                       its port reset disconnects it and enumerates it
//	                       again instead of reset-resuming it
//	wait COND [within DUR] the condition, polled until the deadline (default 60s)
//	expect COND            the condition, now
//	measure ID DOMAIN      wait for port and binds; the time since the last plug is kept
//
// Conditions: port ID DOMAIN [C:P] | port ID none | drivers ID D,D… (per
// interface, "-" for none) | present ID | absent ID | audit ID ACTION
// [TEXT…] (a record since the last action step, with TEXT in its message
// or its trigger) | audits ID ACTION MAX (at most MAX such records) |
// kernel TEXT… (kernel log since the last action step) | kernels MAX
// TEXT… (at most MAX such messages) | ready (the agent's status file
// says it has reconciled everything) | status ID ACTION|none (the status
// file's entry for the device, or none for any busid it may have) |
// statuses N (the status file lists N devices) | uevents
// none|some KEY=V[,V…]… [under ID] (no event, or one, of the kernel's
// uevents recorded since boot has each KEY with one of its values, in
// any subsystem; under ID: of the device, its interfaces or anything
// below them). @ID in arguments is the device's busid.
type Scenario struct {
	Name     string
	File     string
	Policies map[string]string
	Domains  []DomainDecl
	Coldplug []Plug
	Steps    []Step
	// Companions: the VM has companionControllers too.
	Companions bool
}

// A DomainDecl is a guest named by the scenario.
type DomainDecl struct {
	Name    string
	Stopped bool
	QEMU    bool // a device model that offers the qusb backend
	HVM     bool // an HVM guest, with a device model on QMP
}

// A Plug is a device, as QEMU's -device or device_add takes it.
type Plug struct {
	Driver string
	Props  [][2]string
}

// Get returns a property.
func (p Plug) Get(k string) string {
	for _, kv := range p.Props {
		if kv[0] == k {
			return kv[1]
		}
	}
	return ""
}

// Arg is the -device argument.
func (p Plug) Arg() string {
	s := p.Driver
	for _, kv := range p.Props {
		if kv[0] != "disk" {
			s += "," + kv[0] + "=" + kv[1]
		}
	}
	return s
}

// A Step is one line of the scenario.
type Step struct {
	Line   int
	Text   string
	Verb   string
	Args   []string
	Plug   Plug
	Within time.Duration
}

// Mounts says whether the scenario mounts a disk in dom0, which only the
// real kernel can do: such a scenario is not calibrated (calibrate.go).
func (s *Scenario) Mounts() bool {
	return slices.ContainsFunc(s.Steps, func(st Step) bool { return st.Verb == "mount" })
}

// Suspends says whether the scenario suspends dom0, which only the real
// kernel can do: such a scenario is not calibrated (calibrate.go).
func (s *Scenario) Suspends() bool {
	return slices.ContainsFunc(s.Steps, func(st Step) bool { return st.Verb == "suspend" })
}

// SlowProbeDriver is the QEMU device whose probe the guest's slowprobe
// module makes slow (test/vm/slowprobe): SlowProbe, with its lock held.
const SlowProbeDriver = "usb-serial"

// ProbesSlowly says whether the scenario plugs a device whose probe is
// slow (SlowProbeDriver), whose events the fake kernel orders otherwise:
// such a scenario is not calibrated (calibrate.go).
func (s *Scenario) ProbesSlowly() bool {
	return slices.ContainsFunc(s.Coldplug, func(p Plug) bool { return p.Driver == SlowProbeDriver }) ||
		slices.ContainsFunc(s.Steps, func(st Step) bool {
			return (st.Verb == "plug" || st.Verb == "plugunplug") && st.Plug.Driver == SlowProbeDriver
		})
}

// ParseFile reads a scenario; errors name the file and line.
func ParseFile(path string) (*Scenario, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	return Parse(path, string(b))
}

type lineText struct {
	n    int
	text string
}

// Parse reads a scenario from its text.
func Parse(file, text string) (*Scenario, error) {
	s := &Scenario{Name: strings.TrimSuffix(filepath.Base(file), ".scn"), File: file, Policies: map[string]string{}}
	var lines []lineText
	for i, l := range strings.Split(text, "\n") {
		lines = append(lines, lineText{i + 1, l})
	}
	lines, err := s.blocks(lines)
	if err != nil {
		return nil, err
	}
	for _, l := range lines {
		if err := s.statement(l.n, strings.TrimSpace(l.text)); err != nil {
			return nil, fmt.Errorf("%s:%d: %w", file, l.n, err)
		}
	}
	return s, nil
}

// blocks takes out policy blocks and expands repeat blocks.
func (s *Scenario) blocks(in []lineText) ([]lineText, error) {
	var out []lineText
	for i := 0; i < len(in); i++ {
		f := strings.Fields(in[i].text)
		if len(f) == 0 || strings.HasPrefix(f[0], "#") || (f[0] != "policy" && f[0] != "repeat") {
			out = append(out, in[i])
			continue
		}
		if len(f) != 2 {
			return nil, fmt.Errorf("%s:%d: %s takes one argument", s.File, in[i].n, f[0])
		}
		j := i + 1
		for j < len(in) && strings.TrimSpace(in[j].text) != "end" {
			j++
		}
		if j == len(in) {
			return nil, fmt.Errorf("%s:%d: %s without end", s.File, in[i].n, f[0])
		}
		body := in[i+1 : j]
		if f[0] == "policy" {
			var b strings.Builder
			for _, l := range body {
				b.WriteString(strings.TrimSpace(l.text) + "\n")
			}
			s.Policies[f[1]] = b.String()
		} else {
			n, err := strconv.Atoi(f[1])
			if err != nil || n < 1 || n > 1000 {
				return nil, fmt.Errorf("%s:%d: repeat %q: a count from 1 to 1000", s.File, in[i].n, f[1])
			}
			for k := 0; k < n; k++ {
				out = append(out, body...)
			}
		}
		i = j
	}
	return out, nil
}

var arity = map[string][2]int{ // verb: min, max args (-1: any)
	"agent": {1, 2}, "unplug": {1, 1}, "domain": {2, 3}, "reload": {1, 1}, "xl": {1, -1},
	"unbind": {2, 2}, "bind": {2, 2}, "wait": {1, -1}, "expect": {1, -1}, "measure": {2, 2},
	"mount": {2, 2}, "umount": {1, 1}, "suspend": {2, 2}, "persist": {2, 2}, "sysfs": {3, 3},
}

func (s *Scenario) statement(n int, l string) error {
	if l == "" || strings.HasPrefix(l, "#") {
		return nil
	}
	f := strings.Fields(l)
	verb, args := f[0], f[1:]
	switch verb {
	case "companions":
		if len(args) != 0 {
			return fmt.Errorf("companions takes no argument")
		}
		s.Companions = true
		return nil
	case "domain":
		if len(args) >= 1 && (args[0] == "start" || args[0] == "stop" || args[0] == "reboot" || args[0] == "rename") {
			break
		}
		if len(args) < 1 {
			return fmt.Errorf("domain NAME [stopped] [qemu] [hvm], or domain start|stop|reboot|rename …")
		}
		d := DomainDecl{Name: args[0]}
		for _, a := range args[1:] {
			switch a {
			case "stopped":
				d.Stopped = true
			case "qemu":
				d.QEMU = true
			case "hvm":
				d.HVM = true
			default:
				return fmt.Errorf("domain %s: %q is not stopped, qemu or hvm", args[0], a)
			}
		}
		s.Domains = append(s.Domains, d)
		return nil
	case "coldplug", "plug", "plugunplug":
		p, err := parsePlug(args)
		if err != nil {
			return err
		}
		if verb == "coldplug" {
			s.Coldplug = append(s.Coldplug, p)
			return nil
		}
		s.Steps = append(s.Steps, Step{Line: n, Text: l, Verb: verb, Plug: p})
		return nil
	}
	a, ok := arity[verb]
	if !ok {
		return fmt.Errorf("unknown statement %q", verb)
	}
	st := Step{Line: n, Text: l, Verb: verb, Args: args, Within: 60 * time.Second}
	if verb == "wait" && len(args) >= 3 && args[len(args)-2] == "within" {
		d, err := time.ParseDuration(args[len(args)-1])
		if err != nil {
			return fmt.Errorf("within %q: %w", args[len(args)-1], err)
		}
		st.Within, st.Args = d, args[:len(args)-2]
	}
	if len(st.Args) < a[0] || (a[1] >= 0 && len(st.Args) > a[1]) {
		return fmt.Errorf("%s: wrong number of arguments", verb)
	}
	if verb == "wait" || verb == "expect" {
		if err := checkCond(st.Args); err != nil {
			return err
		}
	}
	if verb == "suspend" && (!slices.Contains(suspendStates, args[0]) || !slices.Contains(wakeMethods, args[1])) {
		return fmt.Errorf("suspend mem qmp, not %q %q", args[0], args[1])
	}
	if verb == "sysfs" && (strings.Contains(args[1], "/") || strings.Contains(args[1], "..")) {
		return fmt.Errorf("sysfs ID[:INTF] ATTR VALUE: %q is not one attribute", args[1])
	}
	if verb == "persist" && args[1] != "on" && args[1] != "off" {
		return fmt.Errorf("persist ID on|off, not %q", args[1])
	}
	s.Steps = append(s.Steps, st)
	return nil
}

func parsePlug(args []string) (Plug, error) {
	if len(args) < 2 {
		return Plug{}, fmt.Errorf("a device needs a driver and id=")
	}
	p := Plug{Driver: args[0]}
	for _, kv := range args[1:] {
		k, v, ok := strings.Cut(kv, "=")
		if !ok || k == "" {
			return Plug{}, fmt.Errorf("property %q: want key=value", kv)
		}
		p.Props = append(p.Props, [2]string{k, v})
	}
	if p.Get("id") == "" || p.Get("bus") == "" || p.Get("port") == "" {
		return Plug{}, fmt.Errorf("%s: id=, bus= and port= are needed", p.Driver)
	}
	return p, nil
}

var condArity = map[string][2]int{
	"port": {2, 3}, "drivers": {2, 2}, "present": {1, 1}, "absent": {1, 1},
	"audit": {2, -1}, "audits": {3, 3}, "kernel": {1, -1}, "kernels": {2, -1}, "ready": {0, 0},
	"uevents": {2, -1}, "status": {2, 2}, "statuses": {1, 1},
}

func checkCond(args []string) error {
	a, ok := condArity[args[0]]
	n := len(args) - 1
	if !ok {
		return fmt.Errorf("unknown condition %q", args[0])
	}
	if n < a[0] || (a[1] >= 0 && n > a[1]) {
		return fmt.Errorf("condition %s: wrong number of arguments", args[0])
	}
	if args[0] == "uevents" {
		if args[1] != "none" && args[1] != "some" {
			return fmt.Errorf("uevents none|some KEY=VALUE… [under ID], not %q", args[1])
		}
		_, err := parseTraceMatch(args[2:])
		return err
	}
	return nil
}
