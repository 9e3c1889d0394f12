package agent_test

import (
	"context"
	"errors"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/usbhotplugd/usbhotplugd/internal/agent"
	"github.com/usbhotplugd/usbhotplugd/internal/assign"
	"github.com/usbhotplugd/usbhotplugd/internal/fakekernel"
	"github.com/usbhotplugd/usbhotplugd/internal/usbsysfs"
	"github.com/usbhotplugd/usbhotplugd/internal/xenstore/xenstoretest"
	"github.com/usbhotplugd/usbhotplugd/policy"
)

// pauseUnbind is a kernel writer that, once armed, stops its caller just
// before its first write to an unbind file naming intf (just after it,
// with after), until resume is closed: a toolstack preempted between its
// look at the interface's driver and its unbind, or after its unbind.
type pauseUnbind struct {
	w      usbsysfs.Writer
	intf   string
	after  bool
	armed  atomic.Bool
	paused chan struct{}
	resume chan struct{}
}

func newPauseUnbind(w usbsysfs.Writer, intf string) *pauseUnbind {
	return &pauseUnbind{w: w, intf: intf, paused: make(chan struct{}), resume: make(chan struct{})}
}

func (p *pauseUnbind) WriteAttr(path string, data []byte) error {
	if p.after {
		defer p.pause(path, data)
	} else {
		p.pause(path, data)
	}
	return p.w.WriteAttr(path, data)
}

func (p *pauseUnbind) pause(path string, data []byte) {
	if string(data) == p.intf && strings.HasSuffix(path, "/unbind") && p.armed.CompareAndSwap(true, false) {
		close(p.paused)
		<-p.resume
	}
}

// pausedXLDetach starts xl's detach of at through pw, armed, and returns
// once pw holds it at its unbind; the channel gets the detach's result
// after pw.resume is closed.
func (e *env) pausedXLDetach(at assign.Assignment, pw *pauseUnbind) <-chan error {
	e.t.Helper()
	xl := &assign.Host{XS: e.xs, Sys: usbsysfs.NewFS(e.root).WithWriter(pw), InitTimeout: 5 * time.Second, DestroyTimeout: 5 * time.Second}
	detached := make(chan error, 1)
	go func() { detached <- xl.Detach(e.ctx, at.Domid, at.Controller, at.Port) }()
	select {
	case <-pw.paused:
	case err := <-detached:
		e.t.Fatalf("xl's detach never reached its unbind: %v", err)
	}
	return detached
}

// raceEnv is the stage of a detach raced by another: the audio device at
// the desk, put there by the agent, and a reload that moves it to the
// kiosk. want is its interfaces' dom0 drivers as libxl records them.
func raceEnv(t *testing.T, s xenstoretest.Store, wrap func(usbsysfs.Writer) usbsysfs.Writer) (e *env, at assign.Assignment, want map[string]string, toKiosk *policy.Policy) {
	e = newEnv(t, s)
	e.wrapKernel = wrap
	e.run(strings.ReplaceAll(testPolicy, `target = { domain = "kiosk" }`, `target = { domain = "desk" }`), false)
	at, ok := e.at("1-2")
	if !ok || at.Domid != e.doms["desk"].ID {
		t.Fatalf("audio not at the desk: %+v", at)
	}
	intfs, err := e.h.Sys.InterfaceStates("1-2")
	if err != nil {
		t.Fatal(err)
	}
	want = map[string]string{}
	for _, in := range intfs {
		if want[in.Name] = e.driverRecord(in.Name); want[in.Name] == "" {
			t.Fatalf("%s has no driver record at the desk", in.Name)
		}
	}
	toKiosk, err = policy.Parse("test.toml", []byte(testPolicy), nil)
	if err != nil {
		t.Fatal(err)
	}
	return e, at, want, toKiosk
}

// checkMoved checks that the audio device is at the kiosk, each interface
// in usbback with the record of its dom0 driver (I3): nothing was lost.
func checkMoved(t *testing.T, e *env, want map[string]string) {
	t.Helper()
	if a, ok := e.at("1-2"); !ok || a.Domid != e.doms["kiosk"].ID {
		t.Fatalf("audio not at the kiosk: %+v", a)
	}
	for intf, rec := range want {
		if got := e.driverRecord(intf); got != rec {
			t.Errorf("%s's driver record: %q, want %q", intf, got, rec)
		}
		if drv := e.driverOf(intf); drv != "usbback" {
			t.Errorf("%s is at %q, not usbback", intf, drv)
		}
	}
}

// The agent moves a device off the desk (a reload) while xl destroys the
// desk: the agent found the interfaces in usbback, then, before its
// unbind, xl's detach of the same port took them out, bound them back to
// their dom0 drivers and removed the records. The agent's unbind may not
// take them from those drivers (without a record they would stay without
// one, and be attached with none).
func TestAgentDetachRacedByXLLeavesTheDriver(t *testing.T) {
	xenstoretest.ForEach(t, func(t *testing.T, s xenstoretest.Store) {
		var pw *pauseUnbind
		e, at, want, toKiosk := raceEnv(t, s, func(w usbsysfs.Writer) usbsysfs.Writer {
			pw = newPauseUnbind(w, "1-2:1.0")
			return pw
		})
		pw.armed.Store(true)
		e.a.Reload(toKiosk)
		select {
		case <-pw.paused:
		case <-e.ctx.Done():
			t.Fatal("the agent never unbound 1-2:1.0")
		}
		if err := e.h.Detach(e.ctx, at.Domid, at.Controller, at.Port); err != nil {
			t.Fatalf("xl's detach: %v", err)
		}
		close(pw.resume)
		e.await("1-2", agent.ActAttached)
		e.settle()
		checkMoved(t, e, want)
	})
}

// The other way round: xl's detach (the desk destroyed) found the
// interfaces in usbback, then, before its unbind, the agent's own detach
// of the port gave them back to their drivers. xl's unbind, resumed, may
// not take them from those drivers before the agent attaches the device
// to the kiosk.
func TestXLDetachRacedByTheAgentLeavesTheDriver(t *testing.T) {
	xenstoretest.ForEach(t, func(t *testing.T, s xenstoretest.Store) {
		e, at, want, toKiosk := raceEnv(t, s, nil)
		pw := newPauseUnbind(fakekernel.NewKernel(e.root), "1-2:1.0")
		pw.armed.Store(true)
		detached := e.pausedXLDetach(at, pw)
		// xl goes on once the agent has detached the device, before the
		// agent attaches it again.
		var xlErr atomic.Pointer[error]
		e.onAudit = func(r agent.Audit) {
			if r.BusID == "1-2" && r.Action == agent.ActDetached {
				close(pw.resume)
				err := <-detached
				xlErr.Store(&err)
			}
		}
		e.a.Reload(toKiosk)
		e.await("1-2", agent.ActAttached)
		e.settle()
		if p := xlErr.Load(); p == nil {
			t.Fatal("the agent never detached the audio device")
		} else if *p != nil && !errors.Is(*p, assign.ErrPortEmpty) {
			t.Errorf("xl's detach: %v", *p)
		}
		checkMoved(t, e, want)
	})
}

// xl's detach of the port, preempted after it took the interfaces out of
// usbback and before it cleared the port, while a reload moves the device
// to the kiosk: its rebind, resumed, finds the interfaces in usbback again
// (the new attach) and removes the driver records the new attach wrote,
// as libxl's does whatever happened. The agent's next pass (here the one
// after a restart) writes them again from its ownership record.
func TestAgentRewritesRecordsALateDetachRemoved(t *testing.T) {
	xenstoretest.ForEach(t, func(t *testing.T, s xenstoretest.Store) {
		e, at, want, toKiosk := raceEnv(t, s, nil)
		intfs, err := e.h.Sys.InterfaceStates("1-2")
		if err != nil {
			t.Fatal(err)
		}
		pw := newPauseUnbind(fakekernel.NewKernel(e.root), intfs[len(intfs)-1].Name)
		pw.after = true
		pw.armed.Store(true)
		detached := e.pausedXLDetach(at, pw)
		e.a.Reload(toKiosk)
		if r := e.await("1-2", agent.ActAttached); r.Domid != int(e.doms["kiosk"].ID) {
			t.Fatalf("after the reload: %+v", r)
		}
		e.settle()
		close(pw.resume)
		if err := <-detached; err == nil {
			t.Error("xl's rebind of interfaces in usbback did not fail")
		}
		if has, _ := e.h.HasRecord(e.ctx, "1-2"); has {
			t.Fatal("xl's late rebind left the records: not the stage meant")
		}
		e.stop()
		e.run(testPolicy, false)
		checkMoved(t, e, want)
	})
}

// driverRecord is libxl's driver_path record of intf ("" when none).
func (e *env) driverRecord(intf string) string {
	e.t.Helper()
	busid, _, _ := strings.Cut(intf, ":")
	p := "/libxl/usbback/" + strings.ReplaceAll(busid, ".", "_") + "/" + strings.NewReplacer(".", "_", ":", "@").Replace(intf) + "/driver_path"
	b, err := e.xs.Read(context.WithoutCancel(e.ctx), p)
	if err != nil && !errors.Is(err, syscall.ENOENT) {
		e.t.Fatal(err)
	}
	return string(b)
}
