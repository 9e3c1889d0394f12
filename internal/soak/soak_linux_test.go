package soak_test

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/usbhotplugd/usbhotplugd/internal/assign"
	"github.com/usbhotplugd/usbhotplugd/internal/fakekernel"
	"github.com/usbhotplugd/usbhotplugd/internal/nstest"
	"github.com/usbhotplugd/usbhotplugd/internal/replay"
	"github.com/usbhotplugd/usbhotplugd/internal/sim"
	"github.com/usbhotplugd/usbhotplugd/internal/uevent"
	"github.com/usbhotplugd/usbhotplugd/internal/usbsysfs"
	"github.com/usbhotplugd/usbhotplugd/internal/xenstore"
	"github.com/usbhotplugd/usbhotplugd/internal/xenstore/xenstoretest"
	"github.com/usbhotplugd/usbhotplugd/policy"
)

const childEnv = "USBHOTPLUGD_SOAK_CHILD"

// soakKills is how many times the soak kills the agent with SIGKILL.
const soakKills = 150

func TestMain(m *testing.M) {
	if nstest.Child(childEnv) {
		rep, err := soak()
		if err != nil {
			rep.Error = err.Error()
		}
		b, _ := json.Marshal(rep)
		fmt.Printf("\nREPORT %s\n", b)
		os.Exit(0)
	}
	os.Exit(m.Run())
}

// Report is what one soak run saw.
type Report struct {
	Seed       uint64   `json:"seed"`
	Cycles     int      `json:"cycles"`
	Kills      int      `json:"kills"`
	Ops        int      `json:"ops"`
	Plugs      int      `json:"plugs"`
	Unplugs    int      `json:"unplugs"`
	Reboots    int      `json:"reboots"`
	Reloads    int      `json:"reloads"`
	Checks     int      `json:"checks"`
	Violations []string `json:"violations"`
	// DestroyErrors are a device the driver's destroy could not give back
	// cleanly because the agent was working on it; the checks after
	// decide whether anything was lost.
	DestroyErrors []string `json:"destroy_errors,omitempty"`
	Seconds       float64  `json:"seconds"`
	// IdleRSSKiB and IdleWakeupsPerSec: the agent process at rest, after
	// the soak (context switches of all its threads).
	IdleRSSKiB        int64   `json:"idle_rss_kib"`
	IdleWakeupsPerSec float64 `json:"idle_wakeups_per_sec"`
	Error             string  `json:"error,omitempty"`
}

// TestSoak runs the agent as its own process on each real xenstored with
// simulated backends, inside a private user+network namespace so that
// the test's netlink socket stands in for the kernel. A driver plugs and
// unplugs devices, reboots domains, reloads policies, and kills the agent
// with SIGKILL at random moments; after each restart and at the end the
// invariants I1–I7 are checked from xenstore and sysfs.
func TestSoak(t *testing.T) {
	if testing.Short() {
		t.Skipf("the soak runs %d SIGKILL cycles", soakKills)
	}
	for _, kind := range []string{xenstoretest.KindXenstored, xenstoretest.KindOxenstored} {
		t.Run(kind, func(t *testing.T) { soakOn(t, kind) })
	}
}

func soakOn(t *testing.T, kind string) {
	xsBin, err := xenstoretest.Binary(kind)
	if err != nil {
		missing(t, err.Error())
	}
	shim, err := xenstoretest.Shim()
	if err != nil {
		missing(t, err.Error())
	}
	dir := t.TempDir()
	agentBin := filepath.Join(dir, "usbhotplugd")
	build := exec.Command("go", "build", "-tags", "testhooks", "-o", agentBin, "../../cmd/usbhotplugd")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("building the agent: %v\n%s", err, out)
	}
	seed := uint64(time.Now().UnixNano())
	if s := os.Getenv("USBHOTPLUGD_SOAK_SEED"); s != "" {
		seed, _ = strconv.ParseUint(s, 10, 64)
	}
	out, err := nstest.Run(t, childEnv, syscall.CLONE_NEWNET, []string{"SOAK_AGENT=" + agentBin, "SOAK_XENSTORED=" + xsBin, "SOAK_KIND=" + kind, "SOAK_SHIM=" + shim,
		"SOAK_DIR=" + dir, "SOAK_SEED=" + strconv.FormatUint(seed, 10)}, "-test.run=^$")
	_, js, ok := strings.Cut(string(out), "\nREPORT ")
	if err != nil || !ok {
		t.Fatalf("soak run failed: %v\n%s", err, out)
	}
	var rep Report
	if err := json.Unmarshal([]byte(strings.TrimSpace(js)), &rep); err != nil {
		t.Fatalf("report: %v\n%s", err, out)
	}
	t.Logf("soak (seed %d, USBHOTPLUGD_SOAK_SEED to repeat): %d cycles, %d SIGKILLs, %d operations (%d plugs, %d unplugs, %d reboots, %d reloads), %d invariant checks, %d violations, %d destroys raced, %.1f s; idle agent: RSS %d KiB, %.1f wake-ups/s",
		rep.Seed, rep.Cycles, rep.Kills, rep.Ops, rep.Plugs, rep.Unplugs, rep.Reboots, rep.Reloads, rep.Checks, len(rep.Violations), len(rep.DestroyErrors), rep.Seconds,
		rep.IdleRSSKiB, rep.IdleWakeupsPerSec)
	if rep.Error != "" {
		t.Fatalf("soak stopped: %s\n%s", rep.Error, tail(string(out), 4000))
	}
	for _, v := range rep.Violations {
		t.Error(v)
	}
	if rep.Kills < soakKills {
		t.Errorf("only %d SIGKILLs, want %d", rep.Kills, soakKills)
	}
}

// procStatus reads a process's resident set (KiB) and the context
// switches of all its threads.
func procStatus(pid int) (rss, switches int64) {
	b, _ := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	for _, l := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(l, "VmRSS:"); ok {
			rss, _ = strconv.ParseInt(strings.Fields(v)[0], 10, 64)
		}
	}
	tasks, _ := os.ReadDir(fmt.Sprintf("/proc/%d/task", pid))
	for _, t := range tasks {
		b, _ := os.ReadFile(fmt.Sprintf("/proc/%d/task/%s/status", pid, t.Name()))
		for _, l := range strings.Split(string(b), "\n") {
			for _, k := range []string{"voluntary_ctxt_switches:", "nonvoluntary_ctxt_switches:"} {
				if v, ok := strings.CutPrefix(l, k); ok {
					n, _ := strconv.ParseInt(strings.TrimSpace(v), 10, 64)
					switches += n
				}
			}
		}
	}
	return rss, switches
}

func tail(s string, n int) string {
	if len(s) > n {
		return s[len(s)-n:]
	}
	return s
}

func missing(t *testing.T, what string) {
	if os.Getenv("CI") != "" {
		t.Fatalf("cannot soak: %s (CI must have it)", what)
	}
	t.Skipf("skipping the soak: %s", what)
}

// The policies the driver switches between on reload: the sockets change
// domains; storage never leaves dom0.
const policyA = `[domain.kiosk]
usbctrl = ["version=2, ports=8"]
[domain.desk]
usbctrl = ["version=2, ports=8"]
[[rule]]
name = "no-storage"
action = "deny"
match = { interface = "storage" }
[[rule]]
name = "kiosk-sockets"
action = "attach"
match = { port = "1-1.*" }
target = { domain = "kiosk" }
[[rule]]
name = "desk-sockets"
action = "attach"
match = { port = "1-2.*" }
target = { domain = "desk" }
`

var policyB = strings.NewReplacer(`"kiosk" }`, `"DESK" }`, `"desk" }`, `"kiosk" }`).Replace(policyA)

func init() { policyB = strings.ReplaceAll(policyB, `"DESK" }`, `"desk" }`) }

// A kind of device the driver plugs.
type kind struct {
	vid, pid uint16
	intfs    [][3]uint8
	drivers  []string
}

var kinds = []kind{
	{0x046d, 0xc52b, [][3]uint8{{3, 0, 0}, {3, 0, 0}}, []string{"usbhid", "usbhid"}},                                    // receiver (non-boot HID)
	{0x0d8c, 0x0014, [][3]uint8{{1, 1, 0}, {1, 2, 0}, {3, 0, 0}}, []string{"snd-usb-audio", "snd-usb-audio", "usbhid"}}, // headset
	{0x0781, 0x5567, [][3]uint8{{8, 6, 0x50}}, []string{"usb-storage"}},                                                 // stick
	{0x04b8, 0x0202, [][3]uint8{{7, 1, 2}}, []string{"usblp"}},                                                          // printer
}

type driver struct {
	ctx     context.Context
	rng     *rand.Rand
	host    *replay.Host
	root    string
	nl      int
	seq     uint64
	devnum  int
	present map[string]kind
	h       *assign.Host // the driver's own view, as xl's
	xs      *xenstore.Conn
	doms    map[string]sim.Domain
	nextID  uint32
	rep     *Report
}

func devpath(busid string) string {
	parts := strings.Split(strings.TrimPrefix(busid, "1-"), ".")
	p := "/devices/pci0000:00/0000:00:14.0/usb1/1-" + parts[0]
	cur := "1-" + parts[0]
	for _, x := range parts[1:] {
		cur += "." + x
		p += "/" + cur
	}
	return p
}

func (d *driver) datagram(action, path, devtype string, env []string) []byte {
	d.seq++
	b := fmt.Appendf(nil, "%s@%s\x00ACTION=%s\x00DEVPATH=%s\x00SUBSYSTEM=usb\x00DEVTYPE=%s\x00SEQNUM=%d\x00", action, path, action, path, devtype, d.seq)
	for _, kv := range env {
		b = append(append(b, kv...), 0)
	}
	return b
}

// emit applies an event to the tree, as the kernel does, then sends it.
func (d *driver) emit(b []byte, attrs map[string]string) error {
	ev, err := uevent.Parse(b)
	if err != nil {
		return fmt.Errorf("own datagram: %w", err)
	}
	if err := d.host.Apply(ev, attrs); err != nil {
		return err
	}
	// With the agent down the datagram is lost, as the kernel's would be:
	// the restart's scan must find the change.
	return unix.Sendto(d.nl, b, 0, &unix.SockaddrNetlink{Family: unix.AF_NETLINK, Groups: 1})
}

func (d *driver) plug(busid string, k kind) error {
	d.devnum++
	p := devpath(busid)
	base := []string{"BUSNUM=001", fmt.Sprintf("DEVNUM=%03d", d.devnum), fmt.Sprintf("PRODUCT=%x/%x/100", k.vid, k.pid), "TYPE=0/0/0"}
	attrs := map[string]string{"busnum": "1", "devnum": strconv.Itoa(d.devnum), "idVendor": fmt.Sprintf("%04x", k.vid), "idProduct": fmt.Sprintf("%04x", k.pid),
		"bNumInterfaces": fmt.Sprintf(" %d", len(k.intfs)), "bDeviceClass": "00"}
	if k.intfs[0][0] == 9 {
		attrs["bDeviceClass"] = "09"
		base[3] = "TYPE=9/0/0"
	}
	if err := d.emit(d.datagram("add", p, "usb_device", base), attrs); err != nil {
		return err
	}
	for i, c := range k.intfs {
		ip := fmt.Sprintf("%s/%s:1.%d", p, busid, i)
		env := append(append([]string(nil), base[2:]...), fmt.Sprintf("INTERFACE=%d/%d/%d", c[0], c[1], c[2]))
		if err := d.emit(d.datagram("add", ip, "usb_interface", env), nil); err != nil {
			return err
		}
		if err := d.emit(d.datagram("bind", ip, "usb_interface", append(env, "DRIVER="+k.drivers[i])), nil); err != nil {
			return err
		}
	}
	if err := d.emit(d.datagram("bind", p, "usb_device", append(base, "DRIVER=usb")), nil); err != nil {
		return err
	}
	d.present[busid] = k
	return nil
}

func (d *driver) unplug(busid string) error {
	k := d.present[busid]
	p := devpath(busid)
	for i := range k.intfs {
		ip := fmt.Sprintf("%s/%s:1.%d", p, busid, i)
		if err := d.emit(d.datagram("remove", ip, "usb_interface", nil), nil); err != nil {
			return err
		}
	}
	if err := d.emit(d.datagram("remove", p, "usb_device", nil), nil); err != nil {
		return err
	}
	delete(d.present, busid)
	return nil
}

func (d *driver) startDomain(name string) error {
	d.nextID++
	sd := sim.Domain{ID: d.nextID, Name: name, Type: "pv", UUID: fmt.Sprintf("00000000-0000-4000-8000-%012x", d.nextID)}
	if err := sim.SeedDomain(d.ctx, d.xs, sd); err != nil {
		return err
	}
	if err := d.xs.Introduce(d.ctx, sd.ID, 1, 1); err != nil {
		return err
	}
	d.doms[name] = sd
	return nil
}

var sockets = []string{"1-1.1", "1-1.2", "1-1.3", "1-1.4", "1-2.1", "1-2.2", "1-2.3", "1-2.4"}

func soak() (rep Report, err error) {
	start := time.Now()
	defer func() { rep.Seconds = time.Since(start).Seconds() }()
	rep.Seed, _ = strconv.ParseUint(os.Getenv("SOAK_SEED"), 10, 64)
	rng := rand.New(rand.NewPCG(rep.Seed, 1))
	ctx, cancel := context.WithTimeout(context.Background(), 80*time.Second)
	defer cancel()
	dir := os.Getenv("SOAK_DIR")
	xsDir := filepath.Join(dir, "xs")
	root := filepath.Join(dir, "sys")
	state := filepath.Join(dir, "state")
	pol := filepath.Join(dir, "policy.toml")
	for _, p := range []string{xsDir, root, state} {
		if err := os.MkdirAll(p, 0o755); err != nil {
			return rep, err
		}
	}
	if err := os.WriteFile(pol, []byte(policyA), 0o644); err != nil {
		return rep, err
	}
	daemon, err := xenstoretest.StartDaemon(os.Getenv("SOAK_KIND"), os.Getenv("SOAK_XENSTORED"), os.Getenv("SOAK_SHIM"), xsDir)
	if err != nil {
		return rep, err
	}
	defer daemon.Stop()
	dial := func() (*xenstore.Conn, error) { return xenstore.DialPath(ctx, daemon.SocketPath()) }
	xs, err := dial()
	if err != nil {
		return rep, err
	}
	defer xs.Close()
	if err := sim.SeedDom0(ctx, xs); err != nil {
		return rep, err
	}
	simXS, err := dial()
	if err != nil {
		return rep, err
	}
	defer simXS.Close()
	backends := &sim.Backends{XS: simXS}
	run, err := backends.Start(ctx)
	if err != nil {
		return rep, err
	}
	defer run.Stop()

	host, err := replay.NewHost(root)
	if err != nil {
		return rep, err
	}
	nl, err := unix.Socket(unix.AF_NETLINK, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, unix.NETLINK_KOBJECT_UEVENT)
	if err != nil {
		return rep, fmt.Errorf("netlink: %w", err)
	}
	defer unix.Close(nl)
	if err := unix.Bind(nl, &unix.SockaddrNetlink{Family: unix.AF_NETLINK}); err != nil {
		return rep, err
	}
	sa, err := unix.Getsockname(nl)
	if err != nil {
		return rep, err
	}
	kernel := fakekernel.NewKernel(root)
	kernel.Accept = func(driver, intf string) bool { return true }
	d := &driver{ctx: ctx, rng: rng, host: host, root: root, nl: nl, present: map[string]kind{}, xs: xs, doms: map[string]sim.Domain{}, rep: &rep,
		h: &assign.Host{XS: xs, Sys: usbsysfs.NewFS(root).WithWriter(kernel), InitTimeout: 5 * time.Second, DestroyTimeout: 5 * time.Second}}
	// The hubs under the sockets, a device an admin attached with xl to a
	// domain no rule names, and the guests.
	hub := kind{0x05e3, 0x0610, [][3]uint8{{9, 0, 0}}, []string{"hub"}}
	for _, b := range []string{"1-1", "1-2"} {
		if err := d.plug(b, hub); err != nil {
			return rep, err
		}
	}
	if err := d.plug("1-3", kinds[3]); err != nil {
		return rep, err
	}
	for _, n := range []string{"kiosk", "desk", "lab"} {
		if err := d.startDomain(n); err != nil {
			return rep, err
		}
	}
	lab := d.doms["lab"]
	if _, err := d.h.AddController(ctx, lab.ID, policy.CtrlSpec{Type: "auto", Version: 2, Ports: 8}, false); err != nil {
		return rep, fmt.Errorf("admin's controller: %w", err)
	}
	adminPort, err := d.h.Attach(ctx, lab.ID, policy.DevSpec{BusID: "1-3", Controller: -1})
	if err != nil {
		return rep, fmt.Errorf("admin's attach: %w", err)
	}

	agentEnv := append(os.Environ(), "USBHOTPLUGD_TEST_UEVENT_PORT="+strconv.FormatUint(uint64(sa.(*unix.SockaddrNetlink).Pid), 10),
		"USBHOTPLUGD_TEST_FAKE_KERNEL="+root)
	agentLog, err := os.Create(filepath.Join(dir, "agent.log"))
	if err != nil {
		return rep, err
	}
	defer agentLog.Close()
	policies := []string{policyA, policyB}
	current := 0
	startAgent := func() (*exec.Cmd, error) {
		cmd := exec.CommandContext(ctx, os.Getenv("SOAK_AGENT"), "run", "--policy", pol, "--state-dir", state, "--xenstore", daemon.SocketPath(),
			"--sysfs", root, "--log-format", "json", "--backend-timeout", "5s")
		cmd.Env = agentEnv
		out, err := cmd.StdoutPipe()
		if err != nil {
			return nil, err
		}
		cmd.Stderr = os.Stderr
		if err := cmd.Start(); err != nil {
			return nil, err
		}
		ready := make(chan struct{})
		go func() {
			sc := bufio.NewScanner(out)
			sc.Buffer(make([]byte, 1<<20), 1<<20)
			signalled := false
			for sc.Scan() {
				line := sc.Text()
				fmt.Fprintln(agentLog, line)
				if !signalled && strings.Contains(line, `"message":"ready`) {
					signalled = true
					close(ready)
				}
				if strings.Contains(line, `"level":"error"`) && !strings.Contains(line, "connection") {
					fmt.Fprintln(os.Stderr, "agent:", line)
				}
			}
		}()
		select {
		case <-ready:
			return cmd, nil
		case <-time.After(20 * time.Second):
			cmd.Process.Kill()
			cmd.Wait()
			return nil, errors.New("the agent did not become ready within 20 s")
		}
	}
	check := func(when string) error {
		c, cancel := context.WithTimeout(ctx, 10*time.Second)
		defer cancel()
		if err := backends.WaitIdle(c); err != nil {
			return fmt.Errorf("backends: %w", err)
		}
		p, err := policy.Parse("policy.toml", []byte(policies[current]), nil)
		if err != nil {
			return err
		}
		rep.Checks++
		for _, v := range d.invariants(c, p, lab.ID, adminPort) {
			if k := os.Getenv("USBHOTPLUGD_SOAK_KEEP"); k != "" && len(rep.Violations) == 0 {
				b, _ := os.ReadFile(filepath.Join(dir, "agent.log"))
				os.WriteFile(k, b, 0o644)
			}
			rep.Violations = append(rep.Violations, fmt.Sprintf("%s (cycle %d): %s", when, rep.Cycles, v))
		}
		return nil
	}

	// Counted by cycles, not by time: a loaded machine takes longer, and
	// still kills the agent as often.
	for rep.Kills < soakKills {
		rep.Cycles++
		cmd, err := startAgent()
		if err != nil {
			return rep, err
		}
		if err := check("after a restart"); err != nil {
			return rep, err
		}
		for n := 1 + rng.IntN(5); n > 0; n-- {
			rep.Ops++
			switch op := rng.IntN(10); {
			case op < 4:
				var free []string
				for _, s := range sockets {
					if _, ok := d.present[s]; !ok {
						free = append(free, s)
					}
				}
				if len(free) > 0 {
					rep.Plugs++
					if err := d.plug(free[rng.IntN(len(free))], kinds[rng.IntN(len(kinds))]); err != nil {
						return rep, err
					}
				}
			case op < 7:
				var here []string
				for _, s := range sockets {
					if _, ok := d.present[s]; ok {
						here = append(here, s)
					}
				}
				if len(here) > 0 {
					rep.Unplugs++
					if err := d.unplug(here[rng.IntN(len(here))]); err != nil {
						return rep, err
					}
				}
			case op < 9:
				rep.Reboots++
				name := []string{"kiosk", "desk"}[rng.IntN(2)]
				if err := replay.Destroy(ctx, d.h, xs, d.doms[name]); err != nil {
					// The agent raced the destroy for a device: xl's
					// destroy goes on too, and the agent cleans up.
					rep.DestroyErrors = append(rep.DestroyErrors, err.Error())
				}
				if err := d.startDomain(name); err != nil {
					return rep, err
				}
			default:
				rep.Reloads++
				current = 1 - current
				if err := os.WriteFile(pol+".tmp", []byte(policies[current]), 0o644); err != nil {
					return rep, err
				}
				if err := os.Rename(pol+".tmp", pol); err != nil {
					return rep, err
				}
				cmd.Process.Signal(syscall.SIGHUP)
			}
		}
		// A random moment: at once, or while the agent works on it.
		if w := rng.IntN(4); w > 0 {
			time.Sleep(time.Duration(rng.IntN(3000*w)) * time.Microsecond)
		}
		cmd.Process.Signal(syscall.SIGKILL)
		cmd.Wait()
		fmt.Fprintf(agentLog, "--- SIGKILL (cycle %d)\n", rep.Cycles)
		rep.Kills++
	}
	// The end: one more start, the checks, and a clean stop.
	cmd, err := startAgent()
	if err != nil {
		return rep, err
	}
	if err := check("at the end"); err != nil {
		return rep, err
	}
	// Idle: what the agent costs while nothing happens, over two seconds.
	rss0, sw0 := procStatus(cmd.Process.Pid)
	t0 := time.Now()
	time.Sleep(2 * time.Second) // the idle period being measured, not a synchronisation
	rss1, sw1 := procStatus(cmd.Process.Pid)
	rep.IdleRSSKiB = max(rss0, rss1)
	rep.IdleWakeupsPerSec = float64(sw1-sw0) / time.Since(t0).Seconds()
	cmd.Process.Signal(syscall.SIGTERM)
	if err := cmd.Wait(); err != nil {
		rep.Violations = append(rep.Violations, fmt.Sprintf("the agent's clean stop: %v", err))
	}
	return rep, nil
}

// invariants checks I1–I7 (and that every device the policy sends to a
// running domain is there), from xenstore and sysfs.
func (d *driver) invariants(ctx context.Context, p *policy.Policy, lab uint32, adminPort assign.Assignment) []string {
	var bad []string
	all, err := d.h.Assigned(ctx)
	if err != nil {
		return []string{"reading the ports: " + err.Error()}
	}
	at := map[string]assign.Assignment{}
	for _, a := range all {
		if prev, dup := at[a.BusID]; dup {
			bad = append(bad, fmt.Sprintf("I1: %s is at domain %d port %d:%d and at domain %d port %d:%d", a.BusID, prev.Domid, prev.Controller, prev.Port, a.Domid, a.Controller, a.Port))
		}
		at[a.BusID] = a
		if _, ok := d.present[a.BusID]; !ok && a.BusID != "1-3" {
			bad = append(bad, fmt.Sprintf("I4: domain %d port %d:%d names %s, which left the host", a.Domid, a.Controller, a.Port, a.BusID))
		}
	}
	devs, err := d.h.Sys.Devices()
	if err != nil {
		return append(bad, "reading sysfs: "+err.Error())
	}
	inv := make([]policy.Device, 0, len(devs))
	for _, dv := range devs {
		pd := policy.Device{BusID: dv.BusID, Vendor: dv.Vendor, Product: dv.Product, Class: dv.Class}
		for _, in := range dv.Interfaces {
			pd.Interfaces = append(pd.Interfaces, policy.Interface{Class: in.Class, SubClass: in.SubClass, Protocol: in.Protocol})
		}
		inv = append(inv, pd)
	}
	for i, dv := range devs {
		a, assigned := at[dv.BusID]
		for _, in := range dv.Interfaces {
			switch {
			case in.Driver == "usbback" && !assigned:
				bad = append(bad, fmt.Sprintf("I2: %s is bound to usbback but %s is at no port", in.Name, dv.BusID))
			case in.Driver == "" && !assigned:
				bad = append(bad, fmt.Sprintf("I7: %s has no driver and %s is at no port: lost to dom0", in.Name, dv.BusID))
			}
		}
		if assigned {
			if has, err := d.h.HasRecord(ctx, dv.BusID); err != nil || !has {
				bad = append(bad, fmt.Sprintf("I3: %s is at domain %d port %d:%d without driver_path records", dv.BusID, a.Domid, a.Controller, a.Port))
			}
		}
		dec := p.Match(&inv[i], inv)
		if assigned && dv.BusID != "1-3" && dec.Action != policy.Attach {
			bad = append(bad, fmt.Sprintf("I5: %s is at domain %d port %d:%d, but the policy says %s: %s", dv.BusID, a.Domid, a.Controller, a.Port, dec.Action, dec.Reason))
		}
		if dec.Action == policy.Attach {
			want := d.doms[dec.Target.Domain]
			if !assigned || a.Domid != want.ID {
				bad = append(bad, fmt.Sprintf("converge: %s should be at %s (domid %d): %s; it is at %+v", dv.BusID, want.Name, want.ID, dec.Reason, at[dv.BusID]))
			}
		}
	}
	if a, ok := at["1-3"]; !ok || a.Domid != lab || a.Controller != adminPort.Controller || a.Port != adminPort.Port {
		bad = append(bad, fmt.Sprintf("I6: the admin's 1-3 at domain %d port %d:%d was moved: now %+v", lab, adminPort.Controller, adminPort.Port, at["1-3"]))
	}
	return bad
}
