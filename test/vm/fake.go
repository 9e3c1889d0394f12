package vmtest

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/rs/zerolog"

	"github.com/usbhotplugd/usbhotplugd/internal/assign"
	"github.com/usbhotplugd/usbhotplugd/internal/daemon"
	"github.com/usbhotplugd/usbhotplugd/internal/fakekernel"
	"github.com/usbhotplugd/usbhotplugd/internal/qmp"
	"github.com/usbhotplugd/usbhotplugd/internal/uevent"
	"github.com/usbhotplugd/usbhotplugd/internal/usbsysfs"
	"github.com/usbhotplugd/usbhotplugd/internal/xenstore"
	"github.com/usbhotplugd/usbhotplugd/test/vm/devmodel"
)

// fakeMachine runs a scenario on the fake kernel, in this process: a
// sysfs tree with the VM's four root hubs under internal/fakekernel, and
// the agent as `usbhotplugd run` runs it (daemon.Run) with the fake
// kernel taking its writes and sending it the uevents of each change.
// The store is the runner's real xenstored, as in the VM. The xl-like
// commands run in this process through the binary's assign.Host calls
// (fakexl.go), and HVM guests' device models are the guest's simulated
// QEMU (devmodel), served on the host's QMP sockets.
type fakeMachine struct {
	dir, root, xsPath string
	k                 *fakekernel.Kernel
	sys               *usbsysfs.FS
	xs                *xenstore.Conn // usbback's port table and the destroys

	mu      sync.Mutex
	trace   bytes.Buffer // guarded by mu
	busids  map[string]string
	devnum  map[int]int
	src     *fakeSource                 // the running agent's, nil when none runs
	pending []uevent.Event              // sent once the change that made them is complete
	dms     map[uint32]*devmodel.Server // HVM guests' device models, by domid
	probes  []*time.Timer               // slow probes' ends (Plug), stopped by Close

	log    lockedBuffer
	cancel context.CancelFunc
	done   chan error
}

// The VM's root hubs, as its kernel numbers them: xHCI's USB 2 and USB 3
// hubs, EHCI's, UHCI's (their serials are their PCI addresses).
var fakeRootHubs = []fakekernel.Dev{
	{BusID: "usb1", DevNum: 1, Vendor: "1d6b", Product: "0002", Class: "09", Serial: "0000:00:04.0", Speed: "480", Interfaces: fakekernel.Hub},
	{BusID: "usb2", DevNum: 1, Vendor: "1d6b", Product: "0003", Class: "09", Serial: "0000:00:04.0", Speed: "5000", Interfaces: fakekernel.Hub},
	{BusID: "usb3", DevNum: 1, Vendor: "1d6b", Product: "0002", Class: "09", Serial: "0000:00:05.0", Speed: "480", Interfaces: fakekernel.Hub},
	{BusID: "usb4", DevNum: 1, Vendor: "1d6b", Product: "0001", Class: "09", Serial: "0000:00:06.0", Speed: "12", Interfaces: fakekernel.Hub},
}

// The drivers the VM's kernel has for USB interfaces (its initramfs's
// modules and slowprobe), beside usb, hub and usbback.
var fakeDrivers = []string{"usbhid", "usb-storage", "uas", "snd-usb-audio", "cdc_ether", "rndis_host", "slowprobe"}

func newFakeMachine(ctx context.Context, dir, xsPath string, coldplug []Plug) (*fakeMachine, error) {
	f := &fakeMachine{dir: dir, root: filepath.Join(dir, "sys"), xsPath: xsPath, busids: map[string]string{}, devnum: map[int]int{},
		dms: map[uint32]*devmodel.Server{}}
	b := &fakekernel.Builder{Root: f.root}
	for _, d := range fakeRootHubs {
		b.Add(d)
	}
	if err := b.Err(); err != nil {
		return nil, err
	}
	for _, d := range fakeDrivers {
		if err := fakekernel.AddDriver(f.root, d); err != nil {
			return nil, err
		}
	}
	xs, err := dialStore(ctx, xsPath)
	if err != nil {
		return nil, err
	}
	f.xs = xs
	f.k = fakekernel.NewKernel(f.root)
	f.k.UsbbackPorts = fakekernel.StorePorts(ctx, xs)
	f.k.OnEvent = f.event
	// The harness's own looks do not wait for a device's lock (in the VM
	// they leave out a device it holds): only the agent's reads do.
	f.sys = usbsysfs.NewFS(f.root).WithWriter(writerOnly{f})
	// Present at boot: their events are in the trace, as the real
	// kernel's are in the VM's (recorded from the start); no agent hears
	// them.
	for _, p := range coldplug {
		if err := f.Plug(ctx, p); err != nil {
			f.Close()
			return nil, err
		}
	}
	return f, nil
}

// event is the fake kernel's uevent: recorded as `usbhotplugd record`
// records it (an add with the device's serial, which names it when the
// trace is normalised), and sent to the running agent.
func (f *fakeMachine) event(e uevent.Event) {
	rec := uevent.Record{Time: time.Now().UTC(), Event: &e}
	if e.Action == "add" && e.IsUSBDevice() {
		if s, err := os.ReadFile(filepath.Join(f.root, e.DevPath, "serial")); err == nil {
			rec.Sysfs = map[string]string{"serial": strings.TrimSpace(string(s))}
		}
	}
	b, _ := json.Marshal(rec)
	f.mu.Lock()
	defer f.mu.Unlock()
	f.trace.Write(append(b, '\n'))
	f.pending = append(f.pending, e)
}

// deliver sends the agent the events of a change once it is complete:
// the fake kernel sends them while it changes the tree, and an agent
// reading sysfs at once would see a device going away still there, which
// a real kernel's removal, done before its event is read, never shows.
func (f *fakeMachine) deliver() {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.src != nil {
		for _, e := range f.pending {
			f.src.push(uevent.Message{Event: e})
		}
	}
	f.pending = nil
}

// WriteAttr is the agent's (and the destroys') sysfs writer: the fake
// kernel's, with the events delivered when the write is done.
func (f *fakeMachine) WriteAttr(path string, data []byte) error {
	defer f.deliver()
	return f.k.WriteAttr(path, data)
}

// LockDevice implements usbsysfs.DeviceLocker for the agent's reads: they
// wait while the fake kernel holds the device's lock (a slow probe), as
// the real kernel's do.
func (f *fakeMachine) LockDevice(busid string) (unlock func()) { return f.k.LockDevice(busid) }

// writerOnly is a Writer that is no DeviceLocker.
type writerOnly struct{ w usbsysfs.Writer }

func (o writerOnly) WriteAttr(path string, data []byte) error { return o.w.WriteAttr(path, data) }

func (f *fakeMachine) Devices(ctx context.Context) ([]usbsysfs.Device, error) {
	return f.sys.Devices()
}

func (f *fakeMachine) AgentLog(ctx context.Context) (string, error) { return f.log.String(), nil }

func (f *fakeMachine) Status(ctx context.Context) (string, error) {
	b, err := os.ReadFile(filepath.Join(f.dir, "state", "status.json"))
	return string(b), err
}

// KernelLog is empty: the fake kernel logs nothing, so the kernel
// conditions find no message.
func (f *fakeMachine) KernelLog(ctx context.Context) (string, error) { return "", nil }

func (f *fakeMachine) Trace(ctx context.Context) (string, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.trace.String(), nil
}

func (f *fakeMachine) policyPath() string { return filepath.Join(f.dir, "policy.toml") }

func (f *fakeMachine) StartAgent(ctx context.Context, policy string) error {
	if f.done != nil {
		return errors.New("an agent runs already")
	}
	if err := os.WriteFile(f.policyPath(), []byte(policy), 0o644); err != nil {
		return err
	}
	src := newFakeSource()
	f.mu.Lock()
	f.src = src
	f.mu.Unlock()
	actx, cancel := context.WithCancel(context.Background())
	f.cancel, f.done = cancel, make(chan error, 1)
	cfg := daemon.Config{PolicyPath: f.policyPath(), StateDir: filepath.Join(f.dir, "state"), Sysfs: f.root,
		SysfsWriter: f, Xenstore: f.xsPath, BackendTimeout: 10 * time.Second, Log: zerolog.New(&f.log).With().Timestamp().Logger(),
		Uevents: func() (uevent.Source, io.Closer, error) { return src, io.NopCloser(nil), nil }}
	go func() { f.done <- daemon.Run(actx, cfg) }()
	return nil
}

// StopAgent stops the agent: a clean stop ends its context; a kill
// breaks its uevent socket, which ends it as a failure does, with no
// clean-up (what authorization before probe changed stays). The pass
// under way still ends, which a kill -9 would cut short.
func (f *fakeMachine) StopAgent(ctx context.Context, kill bool) error {
	if f.done == nil {
		return errors.New("no agent runs")
	}
	f.mu.Lock()
	src := f.src
	f.src = nil
	f.mu.Unlock()
	if kill {
		src.kill()
	} else {
		f.cancel()
	}
	var err error
	select {
	case err = <-f.done:
	case <-time.After(60 * time.Second):
		return errors.New("the agent did not stop within 60s")
	}
	f.cancel()
	f.done = nil
	if kill || err == nil {
		return nil
	}
	return err
}

func (f *fakeMachine) Reload(ctx context.Context, policy string) error {
	if err := os.WriteFile(f.policyPath(), []byte(policy), 0o644); err != nil {
		return err
	}
	c, err := daemon.Dial(ctx, filepath.Join(f.dir, "state"))
	if err != nil {
		return err
	}
	defer c.Close()
	_, err = c.Call(daemon.Request{Request: daemon.ReqReload})
	return err
}

// DeviceModel starts (up) or stops the HVM guest's device model: the
// simulated QEMU the VM's guest serves, served here on the host's socket
// for the domain (qmp.SocketPath), where the agent in this process dials
// it as it dials libxl's QEMU.
func (f *fakeMachine) DeviceModel(ctx context.Context, domid uint32, up bool) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	s, ok := f.dms[domid]
	if !up {
		if !ok {
			return fmt.Errorf("domain %d has no device model", domid)
		}
		delete(f.dms, domid)
		return s.Close()
	}
	if ok {
		return fmt.Errorf("domain %d has a device model already", domid)
	}
	s, err := devmodel.Serve(qmp.SocketPath(domid))
	if err != nil {
		return fmt.Errorf("domain %d's device model: %w", domid, err)
	}
	f.dms[domid] = s
	return nil
}

// Destroy removes the domain's controllers, giving their devices back,
// as the guest program does in the VM.
func (f *fakeMachine) Destroy(ctx context.Context, domid uint32) error {
	h := &assign.Host{XS: f.xs, Sys: f.sys}
	ctrls, err := h.Controllers(ctx, domid)
	if err != nil {
		return err
	}
	for _, c := range ctrls {
		if err := h.RemoveController(ctx, domid, c.DevID); err != nil {
			return fmt.Errorf("removing controller %d: %w", c.DevID, err)
		}
	}
	return nil
}

func (f *fakeMachine) WriteSys(ctx context.Context, path, value string) error {
	return f.WriteAttr(filepath.Join(f.root, path), []byte(value))
}

func (f *fakeMachine) Plug(ctx context.Context, p Plug) error {
	d, err := fakeDevice(p, f.busSpeed)
	if err != nil {
		return err
	}
	if p.Driver == SlowProbeDriver {
		if err := f.probeSlowly(d.BusID); err != nil {
			return err
		}
	}
	bus := busOf(d.BusID)
	if f.devnum[bus] == 0 {
		f.devnum[bus] = 1
	}
	f.devnum[bus]++
	d.DevNum = f.devnum[bus]
	f.busids[p.Get("id")] = d.BusID
	defer f.deliver()
	return f.k.Plug(d)
}

func (f *fakeMachine) Unplug(ctx context.Context, id string) error {
	b, ok := f.busids[id]
	if !ok {
		return fmt.Errorf("unplug %s: never plugged", id)
	}
	defer f.deliver()
	return f.k.Unplug(b)
}

// errNoMount: the fake kernel's disks are sysfs entries, with nothing to
// mount, and the agent reads the mounts of this process's namespace, which
// a scenario must not change; scenarios that mount run on the real kernel
// only (calibrate.go).
var errNoMount = errors.New("the fake kernel has no disks to mount: a scenario that mounts runs in the VM only")

func (f *fakeMachine) Mount(ctx context.Context, busid, dir string) error { return errNoMount }

func (f *fakeMachine) Umount(ctx context.Context, dir string) error { return errNoMount }

// errNoSuspend: the fake kernel has no power management to go through,
// and what a resume does to USB devices (reset-resume, a forced unbind
// and rebind of drivers without reset_resume, a lost controller's
// re-enumeration) is the real kernel's to show; scenarios that suspend run
// on the real kernel only (calibrate.go).
var errNoSuspend = errors.New("the fake kernel does not suspend: a scenario that suspends runs in the VM only")

func (f *fakeMachine) Suspend(ctx context.Context, state, wake string) (string, error) {
	return "", errNoSuspend
}

// SlowProbe is how long the guest's slowprobe module probes a
// SlowProbeDriver device (its delay_ms), and so how long the fake kernel
// holds the device's lock once it is plugged.
const SlowProbe = 15 * time.Second

// probeSlowly holds the lock of a device about to be plugged, and its
// hub's, for SlowProbe, as the real kernel holds them while the slowprobe
// module probes it (the hub's through its enumeration): until then the
// agent's reads of its serial or configuration wait, and so do binds. The
// fake kernel binds its driver at once, where the real one binds it once
// the probe ends; the agent cannot read the difference while the lock is
// held.
func (f *fakeMachine) probeSlowly(busid string) error {
	hub := "usb" + strings.SplitN(busid, "-", 2)[0]
	if i := strings.LastIndexByte(busid, '.'); i >= 0 {
		hub = busid[:i]
	}
	var rels []func()
	for _, b := range []string{hub, busid} {
		rel, err := fakekernel.HoldDevice(f.root, b)
		if err != nil {
			for _, r := range rels {
				r()
			}
			return err
		}
		rels = append(rels, rel)
	}
	var once sync.Once
	t := time.AfterFunc(SlowProbe, func() {
		once.Do(func() {
			for i := len(rels) - 1; i >= 0; i-- {
				rels[i]()
			}
		})
	})
	f.mu.Lock()
	f.probes = append(f.probes, t)
	f.mu.Unlock()
	return nil
}

// busSpeed is the speed of a device's port: its root hub's, or its hub's.
func (f *fakeMachine) busSpeed(busid string) string {
	parent := "usb" + strings.SplitN(busid, "-", 2)[0]
	if i := strings.LastIndexByte(busid, '.'); i >= 0 {
		parent = busid[:i]
	}
	b, _ := os.ReadFile(filepath.Join(f.root, "bus/usb/devices", parent, "speed"))
	return strings.TrimSpace(string(b))
}

func (f *fakeMachine) Close() {
	if f.done != nil {
		f.StopAgent(context.Background(), false)
	}
	f.mu.Lock()
	for id, s := range f.dms {
		s.Close()
		delete(f.dms, id)
	}
	for _, t := range f.probes {
		t.Reset(0) // the probe ends now: its locks are let go
	}
	f.mu.Unlock()
	f.xs.Close()
}

// fakeSource is the agent's uevent socket: what the fake kernel sends,
// queued (a socket's buffer, never full here), until it is killed.
type fakeSource struct {
	mu   sync.Mutex
	q    []uevent.Message
	wake chan struct{}
	dead chan struct{}
	once sync.Once
}

func newFakeSource() *fakeSource {
	return &fakeSource{wake: make(chan struct{}, 1), dead: make(chan struct{})}
}

func (s *fakeSource) push(m uevent.Message) {
	s.mu.Lock()
	s.q = append(s.q, m)
	s.mu.Unlock()
	select {
	case s.wake <- struct{}{}:
	default:
	}
}

func (s *fakeSource) kill() { s.once.Do(func() { close(s.dead) }) }

func (s *fakeSource) Receive(ctx context.Context) (uevent.Message, error) {
	for {
		s.mu.Lock()
		if len(s.q) > 0 {
			m := s.q[0]
			s.q = s.q[1:]
			s.mu.Unlock()
			return m, nil
		}
		s.mu.Unlock()
		select {
		case <-s.wake:
		case <-s.dead:
			return uevent.Message{}, errors.New("uevent socket: the agent was killed")
		case <-ctx.Done():
			return uevent.Message{}, ctx.Err()
		}
	}
}

// lockedBuffer is the agent's log, written by its goroutines.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}
