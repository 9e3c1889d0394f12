package daemon

import (
	"context"
	"errors"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	xs "github.com/usbhotplugd/usbhotplugd/internal/xenstore"
	"github.com/usbhotplugd/usbhotplugd/internal/xenstore/xenstoretest"
)

// A dead uevent socket ends the agent at once, non-zero, with the cause
// logged once at error level: without its events it manages nothing.
func TestDeadUeventSocketEndsTheAgent(t *testing.T) {
	h := newHost(t)
	done := h.startReady()
	h.src.kill()
	err := h.awaitEnd(done)
	if err == nil || !Logged(err) || !strings.Contains(err.Error(), "uevent reader: kernel uevents: receive: bad file descriptor") {
		t.Fatalf("Run: %v", err)
	}
	if n := strings.Count(h.log.String(), `"level":"error"`); n != 1 {
		t.Errorf("%d error lines, want the cause once:\n%s", n, h.log.String())
	}
	if _, err := os.Stat(filepath.Join(h.cfg.StateDir, ControlSocket)); err == nil {
		t.Error("the control socket outlived the agent")
	}
}

// Any task that fails stops all of them, and one that does not stop in
// time does not hold the process: Wait names it.
func TestOwnerStopsAllAtTheFirstFailure(t *testing.T) {
	o := newOwner(context.Background())
	stopped := make(chan struct{})
	o.Go("patient", func(ctx context.Context) error { <-ctx.Done(); close(stopped); return ctx.Err() })
	o.Go("failing", func(ctx context.Context) error { return errors.New("broken") })
	if err := o.Wait(time.Minute); err == nil || err.Error() != "failing: broken" {
		t.Errorf("Wait: %v", err)
	}
	<-stopped
	if o.Alive() {
		t.Error("alive after a failure")
	}

	o = newOwner(context.Background())
	hang := make(chan struct{})
	defer close(hang)
	o.Go("stubborn", func(ctx context.Context) error { <-hang; return nil })
	o.Go("early", func(ctx context.Context) error { return nil })
	err := o.Wait(time.Millisecond)
	if err == nil || !strings.Contains(err.Error(), "[stubborn]") || !errors.Is(err, errStoppedEarly) {
		t.Errorf("Wait with a task that does not stop: %v", err)
	}
}

// The watchdog is fed while the agent works, and never once a task has
// failed: systemd sees the process go, not a process that manages
// nothing.
func TestWatchdogStopsWithTheTasks(t *testing.T) {
	h := newHost(t)
	notify := filepath.Join(h.dir, "notify")
	nconn, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: notify, Net: "unixgram"})
	if err != nil {
		t.Fatal(err)
	}
	defer nconn.Close()
	t.Setenv("NOTIFY_SOCKET", notify)
	t.Setenv("WATCHDOG_USEC", "300000")
	t.Setenv("WATCHDOG_PID", "")
	_, done := h.start()
	next := func() string {
		nconn.SetReadDeadline(time.Now().Add(30 * time.Second))
		b := make([]byte, 4096)
		n, err := nconn.Read(b)
		if err != nil {
			t.Fatalf("notify socket: %v\n%s", err, h.log.String())
		}
		return string(b[:n])
	}
	for m := ""; !strings.Contains(m, "WATCHDOG=1"); m = next() {
	}
	h.src.kill()
	if err := h.awaitEnd(done); err == nil {
		t.Fatal("Run ended without an error")
	}
	// STOPPING=1 is the daemon's last word, after the watchdog's task
	// ended: nothing may follow it.
	for m := ""; !strings.Contains(m, "STOPPING=1"); m = next() {
	}
	nconn.SetReadDeadline(time.Now())
	b := make([]byte, 4096)
	if n, err := nconn.Read(b); err == nil {
		t.Errorf("after the stop: %q", b[:n])
	}
}

// errProxy stands between the agent and the store; once broken, it
// answers every request with EACCES itself, as a store whose every
// request is refused (watch events still pass).
type errProxy struct {
	broken atomic.Bool
	errno  atomic.Pointer[string] // what a broken proxy answers: EACCES unless set
}

// throughErrProxy puts an errProxy between the agent and the host's store.
func (h *host) throughErrProxy() *errProxy {
	p := &errProxy{}
	h.cfg.Xenstore = xenstoretest.Proxy(h.t, h.store.SocketPath(), func(xs.Header, []byte) string {
		if !p.broken.Load() {
			return ""
		}
		if s := p.errno.Load(); s != nil {
			return *s
		}
		return "EACCES"
	})
	return p
}

// A store that answers every request with an error ends the agent,
// non-zero, with the reason: no pass can work, and retrying forever would
// look alive to systemd.
func TestStoreAnsweringErrorsEndsTheAgent(t *testing.T) {
	h := newHost(t)
	p := h.throughErrProxy()
	// Each probe read may take half of it: long enough that the last read
	// is answered (the refusal) rather than timed out on a loaded host.
	h.cfg.StoreFailAfter = 4 * time.Second
	done := h.startReady()
	p.broken.Store(true)
	// Anything the agent does now fails: a reload's passes.
	h.dialRaw().ask(`{"request":"reload"}`)
	err := h.awaitEnd(done)
	if err == nil || !errors.Is(err, errStoreFailing) || !strings.Contains(err.Error(), "permission denied") {
		t.Fatalf("Run: %v\n%s", err, h.log.String())
	}
	mustContain(t, "the log", h.log.String(), `"level":"error"`, "xenstore answers every request with an error")
}

// run as another user than root fails at once with the reason.
func TestRunNeedsRoot(t *testing.T) {
	old := euid
	euid = func() int { return 1000 }
	defer func() { euid = old }()
	h := newHost(t)
	err := Run(h.ctx, h.cfg)
	if !errors.Is(err, ErrNotRoot) || strings.Contains(err.Error(), "\n") {
		t.Fatalf("Run as uid 1000: %v", err)
	}
	if _, err := os.Stat(h.cfg.StateDir); err == nil {
		t.Error("the state directory was made before the check")
	}
}

// A store that refuses for a while is not the end: the passes that failed
// meanwhile are retried, and the agent converges once the fault ends.
func TestStoreRefusingForAWhileIsSurvived(t *testing.T) {
	h := newHost(t)
	p := h.throughErrProxy()
	h.cfg.StoreFailAfter = time.Hour
	done := h.startReady()
	w := h.dialRaw()
	if m := decode(t, w.ask(`{"request":"watch"}`)); m["watching"] != true {
		t.Fatalf("watch: %v", m)
	}
	p.broken.Store(true)
	if m := decode(t, h.dialRaw().ask(`{"request":"reload"}`)); m["ok"] != true {
		t.Fatalf("reload: %v", m)
	}
	var failed any
	for failed == nil {
		if d := decode(t, w.line()); field(d, "decision", "action") == "failed" {
			failed = field(d, "decision", "busid")
		}
	}
	p.broken.Store(false)
	for {
		d := decode(t, w.line())
		if field(d, "decision", "busid") == failed && field(d, "decision", "action") != "failed" {
			break
		}
	}
	select {
	case err := <-done:
		t.Fatalf("Run ended: %v", err)
	default:
	}
	if st := decode(t, h.dialRaw().ask(`{"request":"status"}`)); field(st, "status", "state") != "ready" {
		t.Errorf("status: %v", st)
	}
}
