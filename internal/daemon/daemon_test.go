package daemon

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/usbhotplugd/usbhotplugd/internal/fakekernel"
	"github.com/usbhotplugd/usbhotplugd/internal/sim"
	"github.com/usbhotplugd/usbhotplugd/internal/uevent"
	"github.com/usbhotplugd/usbhotplugd/internal/xenstore/xenstoretest"
)

// source is a uevent source the test kills: Receive fails once die is
// closed, as a dead netlink socket's does.
type source struct {
	die  chan struct{}
	once sync.Once
}

func newSource() *source { return &source{die: make(chan struct{})} }

func (s *source) Receive(ctx context.Context) (uevent.Message, error) {
	select {
	case <-s.die:
		return uevent.Message{}, errors.New("receive: bad file descriptor")
	case <-ctx.Done():
		return uevent.Message{}, ctx.Err()
	}
}

func (s *source) kill()        { s.once.Do(func() { close(s.die) }) }
func (s *source) Close() error { return nil }

// logBuf is a log that tells when a line with a word was written.
type logBuf struct {
	mu    sync.Mutex
	buf   bytes.Buffer
	waits map[string]chan struct{}
}

func (l *logBuf) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	for w, ch := range l.waits {
		if bytes.Contains(p, []byte(w)) {
			close(ch)
			delete(l.waits, w)
		}
	}
	return l.buf.Write(p)
}

// await returns a channel closed when a line with w is written from now.
func (l *logBuf) await(w string) <-chan struct{} {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.waits == nil {
		l.waits = map[string]chan struct{}{}
	}
	ch := make(chan struct{})
	l.waits[w] = ch
	return ch
}

func (l *logBuf) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.String()
}

// host is a dom0 for the daemon: a store (real xenstored when the test
// needs it), a kiosk guest, simulated backends, a fixture sysfs with the
// fake kernel.
type host struct {
	t     *testing.T
	ctx   context.Context
	dir   string
	cfg   Config
	log   *logBuf
	src   *source
	store xenstoretest.Store
}

const goodPolicy = "[[rule]]\nname = \"audio\"\naction = \"attach\"\nmatch = { id = \"0d8c:0014\" }\ntarget = { domain = \"kiosk\" }\n"

func newHost(t *testing.T) *host {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	t.Cleanup(cancel)
	s := xenstoretest.Embedded(t)
	xs := s.Dial(t)
	_, br, err := sim.StartKiosk(ctx, xs, s.Dial(t))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { br.Stop() })
	dir := t.TempDir()
	root := filepath.Join(dir, "sys")
	if err := fakekernel.Standard(root); err != nil {
		t.Fatal(err)
	}
	if err := fakekernel.AddDriver(root, "usbback"); err != nil {
		t.Fatal(err)
	}
	h := &host{t: t, ctx: ctx, dir: dir, log: &logBuf{}, src: newSource(), store: s}
	h.writePolicy(goodPolicy)
	h.cfg = Config{PolicyPath: filepath.Join(dir, "policy.toml"), StateDir: filepath.Join(dir, "state"), Sysfs: root,
		SysfsWriter: fakekernel.NewKernel(root), Xenstore: s.SocketPath(), BackendTimeout: 5 * time.Second,
		Log: zerolog.New(h.log), Uevents: func() (uevent.Source, io.Closer, error) { return h.src, h.src, nil }}
	return h
}

func (h *host) writePolicy(s string) {
	p := filepath.Join(h.dir, "policy.toml")
	if err := os.WriteFile(p+".tmp", []byte(s), 0o644); err != nil {
		h.t.Fatal(err)
	}
	if err := os.Rename(p+".tmp", p); err != nil {
		h.t.Fatal(err)
	}
}

// start runs the daemon; the returned channel has Run's error.
func (h *host) start() (stop func(), done <-chan error) {
	ctx, cancel := context.WithCancel(h.ctx)
	ch := make(chan error, 1)
	ended := make(chan struct{})
	go func() {
		defer close(ended)
		ch <- Run(ctx, h.cfg)
	}()
	h.t.Cleanup(func() {
		cancel()
		select {
		case <-ended:
		case <-time.After(30 * time.Second):
			h.t.Error("the daemon did not stop")
		}
	})
	return cancel, ch
}

// startReady runs the daemon and waits until it says every present device
// is reconciled; the returned channel has Run's error.
func (h *host) startReady() (done <-chan error) {
	h.t.Helper()
	ready := h.log.await("ready: every present device reconciled")
	_, done = h.start()
	h.await(ready, "ready")
	return done
}

// awaitEnd waits for Run's end.
func (h *host) awaitEnd(done <-chan error) error {
	h.t.Helper()
	select {
	case err := <-done:
		return err
	case <-h.ctx.Done():
		h.t.Fatalf("the daemon did not end:\n%s", h.log.String())
		return nil
	}
}

// await waits for a log line with w (asked before the event that makes it).
func (h *host) await(ch <-chan struct{}, w string) {
	h.t.Helper()
	select {
	case <-ch:
	case <-h.ctx.Done():
		h.t.Fatalf("no log line with %q:\n%s", w, h.log.String())
	}
}

// raw is a client of the control socket as any program would be: a unix
// socket, JSON lines.
type raw struct {
	t    *testing.T
	conn net.Conn
	buf  []byte
}

func (h *host) dialRaw() *raw {
	h.t.Helper()
	c, err := net.Dial("unix", filepath.Join(h.cfg.StateDir, "control.sock"))
	if err != nil {
		h.t.Fatal(err)
	}
	h.t.Cleanup(func() { c.Close() })
	if dl, ok := h.ctx.Deadline(); ok {
		c.SetDeadline(dl)
	}
	return &raw{t: h.t, conn: c}
}

func (r *raw) send(line string) {
	r.t.Helper()
	if _, err := io.WriteString(r.conn, line+"\n"); err != nil {
		r.t.Fatal(err)
	}
}

// line reads one reply line.
func (r *raw) line() string {
	r.t.Helper()
	for {
		if i := bytes.IndexByte(r.buf, '\n'); i >= 0 {
			l := string(r.buf[:i])
			r.buf = r.buf[i+1:]
			return l
		}
		var b [4096]byte
		n, err := r.conn.Read(b[:])
		if err != nil {
			r.t.Fatalf("reading a reply: %v (so far %q)", err, r.buf)
		}
		r.buf = append(r.buf, b[:n]...)
	}
}

func (r *raw) ask(line string) string {
	r.t.Helper()
	r.send(line)
	return r.line()
}

func mustContain(t *testing.T, what, s string, wants ...string) {
	t.Helper()
	for _, w := range wants {
		if !strings.Contains(s, w) {
			t.Errorf("%s lacks %q:\n%s", what, w, s)
		}
	}
}

// status.json says "stopped" once the agent ends: a reader after a clean
// stop is not told it is ready.
func TestStatusFileSaysStopped(t *testing.T) {
	h := newHost(t)
	ready := h.log.await("ready: every present device reconciled")
	stop, done := h.start()
	h.await(ready, "ready")
	stop()
	if err := h.awaitEnd(done); err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(filepath.Join(h.cfg.StateDir, StatusFile))
	var st Status
	if err != nil || json.Unmarshal(b, &st) != nil || st.State != StateStopped {
		t.Fatalf("status.json after the stop: %v\n%s", err, b)
	}
}

// A killed agent leaves status.json saying "ready". The next one says,
// as soon as it holds the state directory and before any task runs, that
// it is starting, under its own pid.
func TestStatusFileSaysStartingAtOnce(t *testing.T) {
	h := newHost(t)
	if err := os.MkdirAll(h.cfg.StateDir, 0o755); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(h.cfg.StateDir, StatusFile)
	if err := os.WriteFile(path, []byte(`{"pid": 1, "state": "ready"}`+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg := h.cfg
	cfg.setDefaults()
	_, closeAll, err := start(cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer closeAll()
	b, err := os.ReadFile(path)
	var st Status
	if err != nil || json.Unmarshal(b, &st) != nil || st.State != StateStarting || st.PID != os.Getpid() {
		t.Fatalf("status.json once the agent has started: %v\n%s", err, b)
	}
}
