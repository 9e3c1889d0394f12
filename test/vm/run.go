package vmtest

import (
	"context"
	"errors"
	"fmt"
	"hash/fnv"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/usbhotplugd/usbhotplugd/internal/assign"
	"github.com/usbhotplugd/usbhotplugd/internal/sim"
	"github.com/usbhotplugd/usbhotplugd/internal/usbsysfs"
	"github.com/usbhotplugd/usbhotplugd/internal/xenstore"
	"github.com/usbhotplugd/usbhotplugd/internal/xenstore/xenstoretest"
)

// An Env is what every scenario runs with.
type Env struct {
	Image *Image
	// Keep keeps the logs of passing scenarios too.
	Keep bool
	// Logf, when set, hears about each step.
	Logf func(format string, a ...any)
	// Fake runs the scenarios on the fake kernel in this process instead
	// of the real one in a VM (Image is not needed).
	Fake bool
}

// A Result is one scenario's outcome.
type Result struct {
	Name    string
	Err     error  // nil when it passed
	Dir     string // its logs, kept when it failed
	Elapsed time.Duration
	// Retried, when not "", is why a first run never began
	// (ErrGuestNotReady): this is the second.
	Retried string
	// Latencies of each measure step: QMP device_add answered → port
	// written, and → every interface bound to usbback.
	PortWritten, Bound []time.Duration
	// AgentPass is the agent's own duration of each attach measured.
	AgentPass []time.Duration
	// Calibration is the run's uevents and final state in the form the
	// real and the fake kernel are compared in (calibrate.go).
	Calibration []string
}

// A StepError says which step failed, what was expected and what was found.
type StepError struct {
	File     string
	Line     int
	Step     string
	Expected string
	Found    string
}

func (e *StepError) Error() string {
	return fmt.Sprintf("%s:%d: step %q: expected %s; found %s", e.File, e.Line, e.Step, e.Expected, e.Found)
}

type domState struct {
	sim.Domain
	running bool
	qemu    bool
}

type runner struct {
	env      *Env
	sc       *Scenario
	dir      string
	m        machine
	xs       *xenstore.Conn
	xsPath   string
	h        *assign.Host
	doms     map[string]*domState
	nextID   uint32
	plugs    map[string]Plug
	busids   map[string]string
	buses    map[string][]int // controller id → its root hubs' bus numbers
	policy   string
	logMark  int // agent log offset at the last action step
	kmMark   int // kernel log lines at the last action step
	lastPlug time.Time
	res      *Result
	agentUp  bool
	seen     map[string]bool   // interfaces seen with a dom0 driver
	admin    map[string]bool   // interfaces an admin unbound
	mounted  map[string]string // mount point → busid of the disk mounted there ("" once unplugged)
}

// ErrGuestNotReady is a scenario that never began: the guest kernel did
// not finish enumerating a device plugged at its boot (under TCG a
// driver's probe of an emulated device at boot has been seen to stall for
// minutes, before any agent runs).
var ErrGuestNotReady = errors.New("the guest never finished enumerating a device plugged at its boot")

// Run executes one scenario in a fresh VM with a fresh store. A scenario
// that never began (ErrGuestNotReady) is run once more in a new VM; the
// first run's error and logs are kept in Retried.
func (e *Env) Run(ctx context.Context, sc *Scenario) Result {
	res := e.runOnce(ctx, sc)
	if errors.Is(res.Err, ErrGuestNotReady) && ctx.Err() == nil {
		first := fmt.Sprintf("%v (logs: %s)", res.Err, res.Dir)
		res = e.runOnce(ctx, sc)
		res.Retried = first
	}
	return res
}

func (e *Env) runOnce(ctx context.Context, sc *Scenario) (res Result) {
	start := time.Now()
	res = Result{Name: sc.Name}
	dir, err := os.MkdirTemp("", "vm-"+sc.Name+"-")
	if err != nil {
		res.Err = err
		return res
	}
	res.Dir = dir
	r := &runner{env: e, sc: sc, dir: dir, doms: map[string]*domState{}, plugs: map[string]Plug{}, busids: map[string]string{},
		buses: map[string][]int{}, res: &res, seen: map[string]bool{}, admin: map[string]bool{}, mounted: map[string]string{}, policy: sc.Policies["main"]}
	res.Err = r.run(ctx)
	// The disk images and sockets are no logs.
	for _, pat := range []string{"d*.img", "*.sock"} {
		ms, _ := filepath.Glob(filepath.Join(dir, pat))
		for _, m := range ms {
			os.Remove(m)
		}
	}
	res.Elapsed = time.Since(start)
	if res.Err == nil && !e.Keep {
		os.RemoveAll(dir)
		res.Dir = ""
	}
	return res
}

func (r *runner) logf(format string, a ...any) {
	if r.env.Logf != nil {
		r.env.Logf(format, a...)
	}
}

func (r *runner) run(ctx context.Context) error {
	stop, err := r.startStore(ctx)
	if err != nil {
		return err
	}
	defer stop()
	var cold []string
	for _, p := range r.sc.Coldplug {
		cold = append(cold, p.Arg())
		if d := p.Get("disk"); d != "" {
			cold = append(cold, fmt.Sprintf("scsi-hd,id=%s-disk,bus=%s.0,drive=%s", p.Get("id"), p.Get("id"), d))
		}
		r.plugs[p.Get("id")] = p
	}
	if err := r.boot(ctx, cold); err != nil {
		return err
	}
	defer r.m.Close()
	// The device models of the HVM guests running from the start run in
	// dom0, now up.
	for _, d := range r.doms {
		if d.running && d.Type == "hvm" {
			if err := r.m.DeviceModel(ctx, d.ID, true); err != nil {
				return err
			}
		}
	}
	defer r.collect(ctx)
	if err := r.learnBuses(ctx); err != nil {
		return err
	}
	for _, p := range r.sc.Coldplug {
		if err := r.waitFor(ctx, []string{"present", p.Get("id")}, 120*time.Second); err != nil {
			return fmt.Errorf("coldplugged %s did not appear: %w: %w", p.Get("id"), ErrGuestNotReady, err)
		}
	}
	for i := range r.sc.Steps {
		st := &r.sc.Steps[i]
		r.logf("  %s:%d %s", r.sc.Name, st.Line, st.Text)
		if err := r.step(ctx, st); err != nil {
			return r.stepErr(st, err)
		}
		// With no agent running nothing converges: I7 is checked once
		// the next one has started.
		if !r.agentUp {
			continue
		}
		if err := r.settle(ctx); err != nil {
			return r.stepErr(st, err)
		}
	}
	return nil
}

// boot starts the machine: a VM with the coldplugged devices, or the fake
// kernel with them.
func (r *runner) boot(ctx context.Context, cold []string) error {
	if r.env.Fake {
		if r.sc.Companions {
			return errors.New("companions: the fake kernel has no EHCI companion controllers")
		}
		f, err := newFakeMachine(ctx, r.dir, r.xsPath, r.sc.Coldplug)
		if err == nil {
			r.m = f
		}
		return err
	}
	bctx, cancel := context.WithTimeout(ctx, 5*time.Minute)
	defer cancel()
	vm, err := StartVM(bctx, VMConfig{Image: r.env.Image, Dir: r.dir, XSSocket: r.xsPath, Coldplug: cold, Companions: r.sc.Companions})
	if err == nil {
		r.m = vmMachine{vm}
	}
	return err
}

func (r *runner) stepErr(st *Step, err error) error {
	var se *StepError
	if errors.As(err, &se) {
		se.File, se.Line, se.Step = r.sc.File, st.Line, st.Text
		return se
	}
	return &StepError{File: r.sc.File, Line: st.Line, Step: st.Text, Expected: "the step to succeed", Found: err.Error()}
}

// startStore starts the C xenstored, dom0's nodes, the running domains
// and the simulated backends.
func (r *runner) startStore(ctx context.Context) (func(), error) {
	bin, err := xenstoretest.XenstoredBinary()
	if err != nil {
		return nil, err
	}
	shim, err := xenstoretest.Shim()
	if err != nil {
		return nil, err
	}
	xsDir := filepath.Join(r.dir, "xs")
	if err := os.Mkdir(xsDir, 0o755); err != nil {
		return nil, err
	}
	d, err := xenstoretest.StartReal(bin, shim, xsDir)
	if err != nil {
		return nil, err
	}
	r.xsPath = d.SocketPath()
	r.xs, err = dialStore(ctx, d.SocketPath())
	if err != nil {
		d.Stop()
		return nil, err
	}
	// The host has no USB devices: every port looks stale to Assigned,
	// whose Stale flag is not used; presence is read from the guest.
	empty := filepath.Join(r.dir, "no-sysfs")
	if err := os.Mkdir(empty, 0o755); err != nil {
		return nil, err
	}
	r.h = &assign.Host{XS: r.xs, Sys: usbsysfs.NewFS(empty)}
	bxs, err := dialStore(ctx, d.SocketPath())
	if err != nil {
		d.Stop()
		return nil, err
	}
	br, err := (&sim.Backends{XS: bxs}).Start(ctx)
	if err == nil {
		err = sim.SeedDom0(ctx, r.xs)
	}
	for _, dd := range r.sc.Domains {
		if err == nil {
			typ := "pv"
			if dd.HVM {
				typ = "hvm"
			}
			r.doms[dd.Name] = &domState{Domain: sim.Domain{Name: dd.Name, UUID: uuidOf(dd.Name), Type: typ}, qemu: dd.QEMU}
			if !dd.Stopped {
				err = r.domainStart(ctx, dd.Name)
			}
		}
	}
	return func() {
		if br != nil {
			br.Stop()
		}
		r.xs.Close()
		bxs.Close()
		d.Stop()
	}, err
}

func uuidOf(name string) string {
	h := fnv.New64a()
	h.Write([]byte(name))
	return fmt.Sprintf("00000000-0000-4000-8000-%012x", h.Sum64()&0xffffffffffff)
}

// collect keeps the logs a failure needs: the guest's kernel log, the
// agent's log, the store.
func (r *runner) collect(ctx context.Context) {
	if r.m == nil {
		return
	}
	cctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	if k, err := r.m.KernelLog(cctx); err == nil {
		os.WriteFile(filepath.Join(r.dir, "kernel.log"), []byte(k), 0o644)
	}
	if a, err := r.m.AgentLog(cctx); err == nil {
		os.WriteFile(filepath.Join(r.dir, "agent.log"), []byte(a), 0o644)
	}
	os.WriteFile(filepath.Join(r.dir, "policy.toml"), []byte(r.policy), 0o644)
	if tr, err := r.m.Trace(cctx); err == nil {
		os.WriteFile(filepath.Join(r.dir, "uevents.jsonl"), []byte(tr), 0o644)
		r.res.Calibration = append(r.normalise(tr), r.finalState(cctx)...)
	}
	if st, err := r.m.Status(cctx); err == nil {
		os.WriteFile(filepath.Join(r.dir, "status.json"), []byte(st), 0o644)
	}
	if f, err := os.Create(filepath.Join(r.dir, "xenstore.txt")); err == nil {
		r.xs.Dump(cctx, f, "/")
		f.Close()
	}
}

func joinArgs(a []string) string { return strings.Join(a, " ") }

// dialStore connects to the daemon, which takes a moment to accept the
// first connections (a full backlog answers EAGAIN).
func dialStore(ctx context.Context, path string) (*xenstore.Conn, error) {
	deadline := time.Now().Add(10 * time.Second)
	for {
		c, err := xenstore.DialPath(ctx, path)
		if err == nil || !errors.Is(err, syscall.EAGAIN) || time.Now().After(deadline) {
			return c, err
		}
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-time.After(10 * time.Millisecond):
		}
	}
}
