package agent_test

import (
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"maps"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/usbhotplugd/usbhotplugd/internal/agent"
	"github.com/usbhotplugd/usbhotplugd/internal/assign"
	"github.com/usbhotplugd/usbhotplugd/internal/fakekernel"
	"github.com/usbhotplugd/usbhotplugd/internal/usbsysfs"
	"github.com/usbhotplugd/usbhotplugd/internal/xenstore"
	"github.com/usbhotplugd/usbhotplugd/internal/xenstore/xenstoretest"
	"github.com/usbhotplugd/usbhotplugd/policy"
)

// A killSwitch is a process's death at a chosen step: once armed, the
// store request (or sysfs write) it counts to is never made, nor is any
// request or write after it, as for a process killed just before it.
// A request cut this way is one the store never saw: its transaction,
// if it was in one, is dropped with the connection.
type killSwitch struct {
	mu          sync.Mutex
	armed, dead bool
	reqs, wrs   int
	atReq, atWr int // -1: not at this kind
	// failWr are sysfs writes that fail (EIO) without the death, as a
	// wedged driver answers: what the agent's rollback then does is cut.
	failWr []int
	failed bool // the first of failWr was made
	conn   net.Conn
	wbuf   []byte
	fired  chan struct{}
}

func newKillSwitch(atReq, atWr int) *killSwitch {
	return &killSwitch{atReq: atReq, atWr: atWr, fired: make(chan struct{})}
}

func (k *killSwitch) arm() {
	k.mu.Lock()
	k.armed = true
	k.mu.Unlock()
}

// killLocked kills: the connection goes (xenstored drops its
// transactions), and nothing is written after.
func (k *killSwitch) killLocked() {
	if !k.dead {
		k.dead = true
		k.conn.Close()
		close(k.fired)
	}
}

func (k *killSwitch) kill() {
	k.mu.Lock()
	k.killLocked()
	k.mu.Unlock()
}

func (k *killSwitch) isDead() bool {
	k.mu.Lock()
	defer k.mu.Unlock()
	return k.dead
}

// A killConn is the store connection of a killSwitch: whole requests
// pass until the one it dies at.
//
// Only the requests that change the store are counted: a death before a
// read leaves what a death before the next change leaves, and a write in
// a transaction is seen only at its commit.
type killConn struct {
	net.Conn
	k *killSwitch
}

func (c killConn) Write(b []byte) (int, error) {
	k := c.k
	k.mu.Lock()
	defer k.mu.Unlock()
	if k.dead {
		return 0, net.ErrClosed
	}
	k.wbuf = append(k.wbuf, b...)
	var out []byte
	for len(k.wbuf) >= xenstore.HeaderSize {
		n := xenstore.HeaderSize + int(binary.LittleEndian.Uint32(k.wbuf[12:]))
		if len(k.wbuf) < n {
			break
		}
		if k.armed && changes(k.wbuf[:n]) {
			if k.reqs == k.atReq {
				c.Conn.Write(out)
				k.killLocked()
				return 0, net.ErrClosed
			}
			k.reqs++
		}
		out = append(out, k.wbuf[:n]...)
		k.wbuf = k.wbuf[n:]
	}
	if len(out) > 0 {
		if _, err := c.Conn.Write(out); err != nil {
			return 0, err
		}
	}
	return len(b), nil
}

// changes says whether the request msg (header and payload) changes the
// store when it is made.
func changes(msg []byte) bool {
	h, err := xenstore.ParseHeader(msg)
	if err != nil {
		return true
	}
	switch h.Type {
	case xenstore.TypeWrite, xenstore.TypeMkdir, xenstore.TypeRm, xenstore.TypeSetPerms:
		return h.TxID == 0
	case xenstore.TypeTransactionEnd:
		return string(msg[xenstore.HeaderSize:]) == "T\x00"
	}
	return false
}

// A killWriter is the sysfs writer of a killSwitch.
type killWriter struct {
	usbsysfs.Writer
	k *killSwitch
}

func (w killWriter) WriteAttr(p string, b []byte) error {
	k := w.k
	k.mu.Lock()
	fail := false
	if !k.dead && k.armed {
		if k.wrs == k.atWr {
			k.killLocked()
		}
		fail = slices.Contains(k.failWr, k.wrs)
		k.failed = k.failed || fail
		k.wrs++
	}
	dead := k.dead
	k.mu.Unlock()
	if dead || fail {
		return &fs.PathError{Op: "write", Path: p, Err: syscall.EIO}
	}
	return w.Writer.WriteAttr(p, b)
}

// killableHost is an assign.Host whose store connection and sysfs writes
// die with k.
func (e *env) killableHost(k *killSwitch) *assign.Host {
	e.t.Helper()
	raw, err := net.Dial("unix", e.s.SocketPath())
	if err != nil {
		e.t.Fatal(err)
	}
	k.conn = raw
	xs := xenstore.NewConn(killConn{raw, k})
	e.t.Cleanup(func() { xs.Close() })
	kern := fakekernel.NewKernel(e.root)
	sys := usbsysfs.NewFS(e.root).WithWriter(lockingWriter{killWriter{kern, k}, kern}).WithLockWait(usbsysfs.DefaultLockWait)
	return &assign.Host{XS: xs, Sys: sys, InitTimeout: 5 * time.Second, DestroyTimeout: 5 * time.Second, DialQMP: e.dialQMP}
}

// runKillable starts an agent on a killable host and waits until it is
// ready and idle; stop ends it (after a kill, with the error it ended
// with).
func (e *env) runKillable(k *killSwitch, pol string) (a *agent.Agent, stop func()) {
	e.t.Helper()
	p, err := policy.Parse("test.toml", []byte(pol), nil)
	if err != nil {
		e.t.Fatal(err)
	}
	if e.mountinfo == "" {
		e.mountinfo = filepath.Join(e.t.TempDir(), "mountinfo")
		if err := os.WriteFile(e.mountinfo, []byte(rootMount), 0o644); err != nil {
			e.t.Fatal(err)
		}
	}
	a = agent.New(agent.Config{Host: e.killableHost(k), Policy: p, Log: zerolog.New(e), Mountinfo: e.mountinfo,
		OnAudit: func(r agent.Audit) {
			select {
			case e.audits <- r:
			default:
			}
		}})
	ctx, cancel := context.WithCancel(e.ctx)
	ready := make(chan struct{})
	stopped := make(chan error, 1)
	go func() { stopped <- a.Run(ctx, never{}, func() { close(ready) }) }()
	stop = sync.OnceFunc(func() {
		cancel()
		<-stopped
	})
	e.t.Cleanup(stop)
	select {
	case <-ready:
	case err := <-stopped:
		e.t.Fatalf("agent stopped before it was ready: %v", err)
	case <-e.ctx.Done():
		e.t.Fatal("agent not ready")
	}
	if err := a.WaitIdle(e.ctx); err != nil {
		e.t.Fatal(err)
	}
	return a, stop
}

// original is every interface's driver in the standard fixture, as dom0
// has them before anything is attached.
func (e *env) original() map[string]string {
	e.t.Helper()
	devs, err := e.h.Sys.Devices()
	if err != nil {
		e.t.Fatal(err)
	}
	m := map[string]string{}
	for _, d := range devs {
		for _, in := range d.Interfaces {
			m[in.Name] = in.Driver
		}
	}
	return m
}

// checkConverged checks I1–I3 and that no device is lost to dom0, from
// the store and sysfs as they are: each interface is in usbback with its
// device at a pv port and its dom0 driver (orig) recorded, or with its
// dom0 driver (orig, or given for one that came inert and had none);
// driver and ownership records are of devices at ports only. attached
// are the busids that must be at a port, and the domid of each.
func (e *env) checkConverged(orig, given map[string]string, attached map[string]uint32) []string {
	e.t.Helper()
	var bad []string
	all, err := e.h.Assigned(e.ctx)
	if err != nil {
		e.t.Fatal(err)
	}
	at := map[string]assign.Assignment{}
	for _, x := range all {
		if y, ok := at[x.BusID]; ok {
			bad = append(bad, fmt.Sprintf("I1: %s at %d:%d:%d and %d:%d:%d", x.BusID, y.Domid, y.Controller, y.Port, x.Domid, x.Controller, x.Port))
		}
		at[x.BusID] = x
	}
	for b, d := range attached {
		if x, ok := at[b]; !ok || x.Domid != d {
			bad = append(bad, fmt.Sprintf("%s is at %+v (%v), want domain %d", b, x, ok, d))
		}
	}
	for b := range at {
		if _, ok := attached[b]; !ok {
			bad = append(bad, fmt.Sprintf("%s is at a port: %+v", b, at[b]))
		}
	}
	dom0 := maps.Clone(orig)
	maps.Copy(dom0, given)
	devs, err := e.h.Sys.Devices()
	if err != nil {
		e.t.Fatal(err)
	}
	for _, d := range devs {
		x, ported := at[d.BusID]
		for _, in := range d.Interfaces {
			rec, hasRec, err := e.readOpt(fmt.Sprintf("/libxl/usbback/%s/%s/driver_path", enc(d.BusID), enc(in.Name)))
			if err != nil {
				e.t.Fatal(err)
			}
			switch {
			case in.Driver == "usbback":
				if !ported || x.Type != policy.TypePV {
					bad = append(bad, fmt.Sprintf("I2: %s is in usbback, its device at no pv port", in.Name))
				}
				if orig[in.Name] != "" && rec != "/sys/bus/usb/drivers/"+orig[in.Name] {
					bad = append(bad, fmt.Sprintf("I3: %s is in usbback, its driver record is %q (%v), want %s", in.Name, rec, hasRec, orig[in.Name]))
				}
			case in.Driver != dom0[in.Name]:
				bad = append(bad, fmt.Sprintf("lost to dom0: %s has driver %q, want %q", in.Name, in.Driver, dom0[in.Name]))
			case hasRec && !ported:
				bad = append(bad, fmt.Sprintf("%s has a driver record %q at no port", in.Name, rec))
			}
		}
	}
	owned, err := agent.ListOwned(e.ctx, e.xs)
	if err != nil {
		e.t.Fatal(err)
	}
	for b, o := range owned {
		if x, ok := at[b]; !ok || x.Domid != o.Domid || x.Controller != o.Controller || x.Port != o.Port {
			bad = append(bad, fmt.Sprintf("ownership record of %s names %d:%d:%d, the store has %+v (%v)", b, o.Domid, o.Controller, o.Port, x, ok))
		}
	}
	recs, err := e.h.Records(e.ctx)
	if err != nil {
		e.t.Fatal(err)
	}
	for _, b := range recs {
		if _, ok := at[b]; !ok {
			bad = append(bad, fmt.Sprintf("driver records of %s, at no port", b))
		}
	}
	// A give to dom0 half done is finished, its record gone.
	if giving, err := e.xs.Directory(e.ctx, agent.GivingRoot); err == nil && len(giving) > 0 {
		bad = append(bad, fmt.Sprintf("records of devices being given to dom0 are left: %v", giving))
	}
	for b := range attached {
		if _, ok := owned[b]; !ok {
			bad = append(bad, fmt.Sprintf("%s has no ownership record", b))
		}
	}
	return bad
}

func enc(s string) string { return strings.NewReplacer(".", "_", ":", "@").Replace(s) }

func (e *env) readOpt(p string) (string, bool, error) {
	b, err := e.xs.Read(e.ctx, p)
	if errors.Is(err, syscall.ENOENT) {
		return "", false, nil
	}
	return string(b), err == nil, err
}

// A crashCase is one sequence of the agent whose every step is cut in
// turn.
type crashCase struct {
	name string
	// before is the policy of the agent the sequence runs in, after the
	// policy of the agent that restarts.
	before, after string
	// setup, when set, runs on the agent before it is armed; act then
	// starts the sequence on it.
	setup, act func(e *env, a *agent.Agent)
	// between, when set, changes the host after the kill (or the end of
	// the sequence) and before the restart, as while no agent ran.
	between func(e *env)
	// busid is the device the sequence is of ("" for 1-2).
	busid string
	// attached are the busids at a port of the domain after names once
	// the restarted agent is idle; done is the action that ends the
	// sequence when no kill cut it.
	attached []string
	done     agent.Action
}

const audioTo = `
[[rule]]
name = "audio"
action = "attach"
match = { id = "0d8c:0014" }
target = { domain = "%s" }
`

const audioDenied = `
[[rule]]
name = "audio"
action = "deny"
match = { id = "0d8c:0014" }
`

func crashCases() []crashCase {
	return []crashCase{
		{
			// The guest starts: the attach creates its controller.
			name: "attach", before: fmt.Sprintf(audioTo, "lab"), after: fmt.Sprintf(audioTo, "lab"),
			act:      func(e *env, _ *agent.Agent) { e.start("lab") },
			attached: []string{"1-2"}, done: agent.ActAttached,
		},
		{
			name: "detach", before: fmt.Sprintf(audioTo, "kiosk"), after: audioDenied,
			act:  func(e *env, a *agent.Agent) { e.reloadOn(a, audioDenied) },
			done: agent.ActDenied,
		},
		{
			// Unplugged while attached: its port and records go.
			name: "leave", before: fmt.Sprintf(audioTo, "kiosk"), after: fmt.Sprintf(audioTo, "kiosk"),
			act: func(e *env, a *agent.Agent) {
				if err := fakekernel.NewKernel(e.root).Unplug("1-2"); err != nil {
					e.t.Fatal(err)
				}
				a.Handle(e.ctx, removeEvent(e.t, "1-2"))
			},
			done: agent.ActGone,
		},
		{
			// Authorization before probe: a badge reader plugged inert
			// goes straight to usbback, no dom0 driver recorded.
			name: "attach an inert device", before: authzTo("kiosk"), after: authzTo("kiosk"), busid: "1-6",
			act:      func(e *env, a *agent.Agent) { e.plugInert(a) },
			attached: []string{"1-6"}, done: agent.ActAttached,
		},
		{
			// ... and given to dom0's drivers by a reload: it had none
			// to record.
			name: "detach an inert device", before: authzTo("kiosk"), after: authzDenied, busid: "1-6",
			setup: func(e *env, a *agent.Agent) {
				e.plugInert(a)
				e.await("1-6", agent.ActAttached)
			},
			act:  func(e *env, a *agent.Agent) { e.reloadOn(a, authzDenied) },
			done: agent.ActDenied,
		},
		{
			// ... and the agent that restarts runs without the mode: a
			// give-back cut short is finished all the same.
			name: "detach an inert device, restarted without the mode", before: authzTo("kiosk"), after: badgeDenied, busid: "1-6",
			setup: func(e *env, a *agent.Agent) {
				e.plugInert(a)
				e.await("1-6", agent.ActAttached)
			},
			act:  func(e *env, a *agent.Agent) { e.reloadOn(a, authzDenied) },
			done: agent.ActDenied,
		},
		{
			// ... and it leaves while no agent runs: the record of its
			// give-back goes with it.
			name: "an inert device leaves while given back", before: authzTo("kiosk"), after: authzDenied, busid: "1-6",
			setup: func(e *env, a *agent.Agent) {
				e.plugInert(a)
				e.await("1-6", agent.ActAttached)
			},
			act: func(e *env, a *agent.Agent) { e.reloadOn(a, authzDenied) },
			between: func(e *env) {
				if err := fakekernel.NewKernel(e.root).Unplug("1-6"); err != nil {
					e.t.Fatal(err)
				}
			},
			done: agent.ActDenied,
		},
		{
			// Without the mode: a device usbback bound by itself, at a
			// plug while its port was set, has no driver record to give
			// it back by; a reload denies it.
			name: "detach what usbback claimed by itself", before: badgeTo("kiosk"), after: badgeDenied, busid: "1-6",
			setup: func(e *env, a *agent.Agent) {
				e.plugClaimed(a)
			},
			act:  func(e *env, a *agent.Agent) { e.reloadOn(a, badgeDenied) },
			done: agent.ActDenied,
		},
		{
			// A give-back to dom0 cut short, and the agent that restarts
			// sends the device to a guest again: nothing is being given
			// to dom0 any more.
			name: "detach, restarted under a policy that attaches it", before: fmt.Sprintf(audioTo, "kiosk"), after: fmt.Sprintf(audioTo, "kiosk"),
			act:      func(e *env, a *agent.Agent) { e.reloadOn(a, audioDenied) },
			attached: []string{"1-2"}, done: agent.ActDenied,
		},
		{
			// ... and with authorization before probe, of a device that
			// came inert.
			name: "detach an inert device, restarted under a policy that attaches it", before: authzTo("kiosk"), after: authzTo("kiosk"), busid: "1-6",
			setup: func(e *env, a *agent.Agent) {
				e.plugInert(a)
				e.await("1-6", agent.ActAttached)
			},
			act:      func(e *env, a *agent.Agent) { e.reloadOn(a, authzDenied) },
			attached: []string{"1-6"}, done: agent.ActDenied,
		},
		{
			name: "move", before: fmt.Sprintf(audioTo, "kiosk"), after: fmt.Sprintf(audioTo, "desk"),
			act:      func(e *env, a *agent.Agent) { e.reloadOn(a, fmt.Sprintf(audioTo, "desk")) },
			attached: []string{"1-2"}, done: agent.ActAttached,
		},
	}
}

const authzBadge = `
[agent]
authorize = "before-probe"

[[rule]]
name = "badge reader"
action = "%s"
match = { id = "1234:0001" }
`

func authzTo(domain string) string {
	return fmt.Sprintf(authzBadge, "attach") + fmt.Sprintf("target = { domain = %q }\n", domain)
}

var authzDenied = fmt.Sprintf(authzBadge, "deny")

const badgeRule = `
[[rule]]
name = "badge reader"
action = "%s"
match = { id = "1234:0001" }
`

func badgeTo(domain string) string {
	return fmt.Sprintf(badgeRule, "attach") + fmt.Sprintf("target = { domain = %q }\n", domain)
}

// badgeDenied leaves the badge reader to dom0, without the mode.
var badgeDenied = fmt.Sprintf(badgeRule, "deny")

// plugClaimed plugs the badge reader 1-6, has the agent attach it, and
// leaves it as usbback leaves a device it bound by itself at a plug while
// its port was set (a replug while no agent ran): in usbback at its port,
// with no driver record, and an ownership record that names no dom0
// driver (as the agent rewrites it for a device found so).
func (e *env) plugClaimed(a *agent.Agent) {
	e.t.Helper()
	if err := (&fakekernel.Builder{Root: e.root}).Add(keyboard("1-6", "0001")).Err(); err != nil {
		e.t.Fatal(err)
	}
	a.Handle(e.ctx, addEvent(e.t, "1-6"))
	e.await("1-6", agent.ActAttached)
	if err := e.xs.Rm(e.ctx, "/libxl/usbback/1-6"); err != nil {
		e.t.Fatal(err)
	}
	owned, err := agent.ListOwned(e.ctx, e.xs)
	if err != nil {
		e.t.Fatal(err)
	}
	o, ok := owned["1-6"]
	if !ok {
		e.t.Fatal("1-6 has no ownership record")
	}
	o.Drivers = nil
	b, err := json.Marshal(o)
	if err != nil {
		e.t.Fatal(err)
	}
	if err := e.xs.Write(e.ctx, agent.RecordRoot+"/1-6", b); err != nil {
		e.t.Fatal(err)
	}
}

// plugInert plugs the badge reader 1-6, inert as the mode makes it, and
// tells the agent.
func (e *env) plugInert(a *agent.Agent) {
	e.t.Helper()
	if err := (&fakekernel.Builder{Root: e.root}).Add(keyboard("1-6", "0001")).Err(); err != nil {
		e.t.Fatal(err)
	}
	a.Handle(e.ctx, addEvent(e.t, "1-6"))
}

func (e *env) reloadOn(a *agent.Agent, pol string) {
	e.t.Helper()
	p, err := policy.Parse("test.toml", []byte(pol), nil)
	if err != nil {
		e.t.Fatal(err)
	}
	a.Reload(p)
}

// The agent killed before each change of the store and each sysfs write
// of an attach, a detach, an unplug and a move, in turn: the agent that
// starts next converges, I1–I3 hold and nothing is lost to dom0.
func TestAgentKilledAtEveryStep(t *testing.T) {
	for _, c := range crashCases() {
		t.Run(c.name, func(t *testing.T) {
			for _, kind := range []string{"store change", "sysfs write"} {
				steps := 0
				for n := 0; ; n++ {
					at := [2]int{n, -1}
					if kind == "sysfs write" {
						at = [2]int{-1, n}
					}
					killed := false
					ok := t.Run(fmt.Sprintf("%s %d", kind, n), func(t *testing.T) { killed = crashAt(t, c, kind, at) })
					if !killed || !ok {
						break // one failure of a kind tells
					}
					steps++
				}
				t.Logf("%s: killed before each of %d %ss", c.name, steps, kind)
				if steps == 0 && kind == "store change" {
					t.Errorf("%s made no %s", c.name, kind)
				}
			}
		})
	}
}

// A sysfs write of an attach and of a detach failing, each in turn,
// and the agent killed before each write of what follows (its rollback,
// its retry), in turn: the agent that starts next converges as above.
func TestAgentKilledInEveryRollback(t *testing.T) {
	for _, c := range crashCases() {
		if c.name != "attach" && c.name != "detach" {
			continue // the others' writes are of these kinds
		}
		t.Run(c.name, func(t *testing.T) {
			runs := 0
			for f := 0; ; f++ {
				failed := false
				for n := f + 1; ; n++ {
					killed := false
					ok := t.Run(fmt.Sprintf("write %d failed, sysfs write %d", f, n), func(t *testing.T) {
						killed, failed = crashAfterFailure(t, c, "sysfs write", [2]int{-1, n}, f)
					})
					if !ok {
						return
					}
					runs++
					if !killed || !failed {
						break
					}
				}
				if !failed {
					break // the sequence has no write f
				}
			}
			t.Logf("%s: %d runs", c.name, runs)
		})
	}
}

// An attach whose bind to usbback fails, and whose rollback's bind back to
// the dom0 driver fails too (a wedged driver): the interface is offered to
// the kernel's matching before its record goes, and the agent that starts
// next, under a policy that leaves the device to dom0, finds it with its
// driver.
func TestAgentRollbackWhoseRebindFails(t *testing.T) {
	c := crashCases()[0]
	c.after = audioDenied
	c.attached = nil
	// Writes 0 and 1 take 1-2:1.0 from snd-usb-audio and give it to
	// usbback; 2 is the rollback's bind back.
	if _, failed := crashAfterFailure(t, c, "sysfs write", [2]int{-1, -1}, 1, 2); !failed {
		t.Fatal("the bind to usbback was not made")
	}
}

// crashAt runs c with the agent killed at at (the index of a store
// change, of a sysfs write; -1 for the other kind); false when the
// sequence ended before it.
func crashAt(t *testing.T, c crashCase, kind string, at [2]int) bool {
	t.Helper()
	killed, _ := crashAfterFailure(t, c, kind, at)
	return killed
}

// crashAfterFailure is crashAt with the sysfs writes failWr failing first;
// failed says the first was made.
func crashAfterFailure(t *testing.T, c crashCase, kind string, at [2]int, failWr ...int) (killed, failed bool) {
	t.Helper()
	e := newEnv(t, xenstoretest.Real(t))
	orig := e.original()
	busid := c.busid
	if busid == "" {
		busid = "1-2"
	}
	k := newKillSwitch(at[0], at[1])
	k.failWr = failWr
	a, stop := e.runKillable(k, c.before)
	if c.setup != nil {
		c.setup(e, a)
		if err := a.WaitIdle(e.ctx); err != nil {
			t.Fatal(err)
		}
	}
	for len(e.audits) > 0 {
		<-e.audits
	}
	k.arm()
	c.act(e, a)
	ended := false
	for !ended {
		select {
		case <-k.fired:
			ended = true
		case r := <-e.audits:
			if k.isDead() {
				// Killed while the test looked elsewhere (the act itself
				// runs beside the worker): a dead agent is not waited
				// for, since a pass of it may wait on its dead store
				// connection for good.
				ended = true
				break
			}
			if r.BusID == busid && r.Action == agent.ActFailed && len(failWr) > 0 {
				// The failure's rollback ran whole: its retry comes
				// later, and would find the fault gone.
				if err := a.WaitIdle(e.ctx); err != nil {
					t.Fatal(err)
				}
				ended = true
			}
			if r.BusID == busid && r.Action == c.done {
				if err := a.WaitIdle(e.ctx); err != nil {
					t.Fatal(err)
				}
				ended = true
			}
		case <-e.ctx.Done():
			t.Fatalf("%s %d: neither killed nor done:\n%s", kind, at, e.logText())
		}
	}
	killed = k.isDead()
	k.mu.Lock()
	failed = k.failed
	k.mu.Unlock()
	k.kill()
	stop()
	if err := e.backs.WaitIdle(e.ctx); err != nil {
		t.Fatal(err)
	}
	if c.between != nil {
		c.between(e)
	}
	e.logMu.Lock()
	e.log.Reset()
	e.logMu.Unlock()
	e.run(c.after, false)
	want := map[string]uint32{}
	for _, b := range c.attached {
		want[b] = e.domidOf(c.after)
	}
	// The badge reader's, when it is given to dom0: it had none before.
	given := map[string]string{"1-6:1.0": "usbhid"}
	if bad := e.checkConverged(orig, given, want); len(bad) > 0 {
		t.Errorf("(sysfs writes %v failed) killed before %s %d of %s, then restarted:\n  %s\nlog of the restart:\n%s", failWr, kind, max(at[0], at[1]), c.name, strings.Join(bad, "\n  "), e.logText())
	}
	e.stop()
	return killed, failed
}

// domidOf is the running domain pol's rule names.
func (e *env) domidOf(pol string) uint32 {
	for name, d := range e.doms {
		if strings.Contains(pol, fmt.Sprintf("domain = %q", name)) {
			return d.ID
		}
	}
	e.t.Fatalf("no domain of %s runs", pol)
	return 0
}

// xl killed before each store change and each sysfs write of its
// usbdev-detach of a device the agent attached, in turn, while the agent
// runs: what xl left is finished as libxl's order says (a port cleared
// gives it back to its dom0 drivers, held there), and I1–I3 hold with
// nothing lost. A port still set is the device's: the interfaces xl
// unbound from usbback before it was killed are what an admin's unbind
// leaves, which the running agent does not fight but says; its next start
// binds them again.
func TestXLKilledAtEveryStepOfADetach(t *testing.T) {
	for _, kind := range []string{"store change", "sysfs write"} {
		steps := 0
		for n := 0; ; n++ {
			at := [2]int{n, -1}
			if kind == "sysfs write" {
				at = [2]int{-1, n}
			}
			killed := false
			ok := t.Run(fmt.Sprintf("%s %d", kind, n), func(t *testing.T) {
				e := newEnv(t, xenstoretest.Real(t))
				orig := e.original()
				e.run(fmt.Sprintf(audioTo, "kiosk"), false)
				x, ok := e.at("1-2")
				if !ok {
					t.Fatal("audio not attached")
				}
				k := newKillSwitch(at[0], at[1])
				xl := e.killableHost(k)
				k.arm()
				err := xl.Detach(e.ctx, x.Domid, x.Controller, x.Port)
				killed = k.isDead()
				if !killed && err != nil {
					t.Fatalf("xl's detach: %v", err)
				}
				k.kill()
				// What the kernel's events of xl's writes would ask for.
				if err := e.a.Rescan(e.ctx, "xl's writes"); err != nil {
					t.Fatal(err)
				}
				e.settle()
				want := map[string]uint32{}
				if _, ok := e.at("1-2"); ok {
					want["1-2"] = x.Domid
					e.restartIfUnbound("1-2", fmt.Sprintf(audioTo, "kiosk"))
				}
				bad := slices.DeleteFunc(e.checkConverged(orig, nil, want), func(s string) bool {
					// Held: its record stays, for its guest's restart.
					return len(want) == 0 && strings.HasPrefix(s, "ownership record of 1-2 ")
				})
				if !killed && len(want) > 0 {
					bad = append(bad, "the agent undid xl's detach")
				}
				if len(bad) > 0 {
					t.Errorf("xl killed before %s %d of its detach:\n  %s\nlog:\n%s", kind, n, strings.Join(bad, "\n  "), e.logText())
				}
			})
			if !killed || !ok {
				break
			}
			steps++
		}
		t.Logf("xl killed before each of %d %ss of its detach", steps, kind)
	}
}

// restartIfUnbound checks, of busid at its port, that an interface out of
// usbback is said to be (status), and restarts the agent, whose start
// binds it again.
func (e *env) restartIfUnbound(busid, pol string) {
	e.t.Helper()
	d, err := e.h.Sys.Device(busid)
	if err != nil {
		e.t.Fatal(err)
	}
	if allInUsbback(d) {
		return
	}
	st := e.status.Load()
	said := false
	for _, r := range st.Devices {
		said = said || r.BusID == busid && strings.Contains(r.Reason, "not in usbback: unbound by someone else")
	}
	if !said {
		e.t.Errorf("%s, at its port, out of usbback, is not said to be: %+v", busid, st.Devices)
	}
	e.stop()
	e.run(pol, false)
}

func allInUsbback(d usbsysfs.Device) bool {
	for _, in := range d.Interfaces {
		if in.Driver != "usbback" {
			return false
		}
	}
	return true
}
