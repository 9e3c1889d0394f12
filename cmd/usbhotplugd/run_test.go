package main

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/usbhotplugd/usbhotplugd/internal/daemon"
	"github.com/usbhotplugd/usbhotplugd/internal/fakekernel"
	"github.com/usbhotplugd/usbhotplugd/internal/sim"
	"github.com/usbhotplugd/usbhotplugd/internal/uevent"
	"github.com/usbhotplugd/usbhotplugd/internal/xenstore/xenstoretest"
)

type chanSource chan uevent.Message

func (c chanSource) Receive(ctx context.Context) (uevent.Message, error) {
	select {
	case m := <-c:
		return m, nil
	case <-ctx.Done():
		return uevent.Message{}, ctx.Err()
	}
}

func (c chanSource) Close() error { return nil }

// noUevents has the run command read its uevents from a source that
// sends none instead of the kernel, until the test ends.
func noUevents(t *testing.T) {
	src := make(chanSource)
	old := ueventSource
	ueventSource = func() (uevent.Source, io.Closer, error) { return src, src, nil }
	t.Cleanup(func() { ueventSource = old })
}

// fakeKernelWrites sends the run command's sysfs writes to the fake
// kernel over root, until the test ends.
func fakeKernelWrites(t *testing.T, root string) {
	old := sysfsWriter
	sysfsWriter = fakekernel.NewKernel(root)
	t.Cleanup(func() { sysfsWriter = old })
}

// kioskStore starts a store of kind on which the guest kiosk runs, its
// backends simulated until the test ends.
func kioskStore(ctx context.Context, t *testing.T, kind string) xenstoretest.Store {
	t.Helper()
	s := xenstoretest.Start(t, kind)
	_, br, err := sim.StartKiosk(ctx, s.Dial(t), s.Dial(t))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { br.Stop() })
	return s
}

// denyAllHost is a standard host in dir with a policy that denies all.
func denyAllHost(t *testing.T) (dir, root, pol string) {
	t.Helper()
	dir = t.TempDir()
	root = filepath.Join(dir, "sys")
	if err := fakekernel.Standard(root); err != nil {
		t.Fatal(err)
	}
	pol = writeFile(t, dir, "policy.toml", "[[rule]]\nname = \"none\"\naction = \"deny\"\n")
	return dir, root, pol
}

// The daemon end to end, in this process: readiness told to systemd, the
// status file, status and reload commands, a refused reload; on each real
// xenstored.
func TestRunDaemon(t *testing.T) {
	for _, kind := range []string{xenstoretest.KindXenstored, xenstoretest.KindOxenstored} {
		t.Run(kind, func(t *testing.T) { runDaemon(t, kind) })
	}
}

func runDaemon(t *testing.T, kind string) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	s := kioskStore(ctx, t, kind)

	dir := t.TempDir()
	root := filepath.Join(dir, "sys")
	if err := fakekernel.Standard(root); err != nil {
		t.Fatal(err)
	}
	if err := fakekernel.AddDriver(root, "usbback"); err != nil {
		t.Fatal(err)
	}
	pol := filepath.Join(dir, "policy.toml")
	good := "[[rule]]\nname = \"audio\"\naction = \"attach\"\nmatch = { id = \"0d8c:0014\" }\ntarget = { domain = \"kiosk\" }\n"
	if err := os.WriteFile(pol, []byte(good), 0o644); err != nil {
		t.Fatal(err)
	}
	state := filepath.Join(dir, "state")

	notify := filepath.Join(dir, "notify")
	nconn, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: notify, Net: "unixgram"})
	if err != nil {
		t.Fatal(err)
	}
	defer nconn.Close()
	t.Setenv("NOTIFY_SOCKET", notify)

	noUevents(t)
	fakeKernelWrites(t, root)

	runCtx, stop := context.WithCancel(ctx)
	done := make(chan int, 1)
	var out, errb bytes.Buffer
	go func() {
		done <- run(runCtx, []string{"run", "--policy", pol, "--state-dir", state, "--xenstore", s.SocketPath(), "--sysfs", root, "--log-format", "json"}, &out, &errb)
	}()

	// READY=1 reaches the notify socket once everything is reconciled.
	buf := make([]byte, 4096)
	nconn.SetReadDeadline(time.Now().Add(30 * time.Second))
	n, err := nconn.Read(buf)
	if err != nil || !strings.Contains(string(buf[:n]), "READY=1") {
		t.Fatalf("notify: %q %v (stderr %s)", buf[:n], err, errb.String())
	}
	var st bytes.Buffer
	if code := run(ctx, []string{"status", "--state-dir", state}, &st, &st); code != 0 {
		t.Fatalf("status: %d %s", code, st.String())
	}
	for _, want := range []string{"running since", "ready, connected to xenstore", "1-2 ", "attached", "kiosk (1)", "audio", "1-3 ", "unmatched"} {
		if !strings.Contains(st.String(), want) {
			t.Errorf("status lacks %q:\n%s", want, st.String())
		}
	}

	// A reload the agent refuses keeps the old policy; the command says why.
	if err := os.WriteFile(pol, []byte("[[rule]]\nname = \"x\"\naction = \"teleport\"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	var rl bytes.Buffer
	if code := run(ctx, []string{"reload", "--policy", pol, "--state-dir", state}, &rl, &rl); code == 0 || !strings.Contains(rl.String(), "teleport") {
		t.Errorf("reload of a bad policy: %d %s", code, rl.String())
	}
	// The agent, asked all the same (as SIGHUP does), refuses it, and
	// status says each of its errors on a line of its own.
	if err := os.WriteFile(pol, []byte("[[rule]]\nname = \"x\"\naction = \"teleport\"\n\n[[rule]]\nname = \"y\"\naction = \"attach\"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := call(ctx, state, daemon.Request{Request: daemon.ReqReload}); err == nil {
		t.Error("the agent took a bad policy")
	}
	st.Reset()
	if code := run(ctx, []string{"status", "--state-dir", state}, &st, &st); code != 0 ||
		!strings.Contains(st.String(), " (the policy above stays in force):\n  "+pol+`:3: rule 1 "x": action: "teleport"`) ||
		!strings.Contains(st.String(), "\n  "+pol+`:5: rule 2 "y": target: `) || strings.Contains(st.String(), `\n`) {
		t.Errorf("status after a refused reload: %d\n%s", code, st.String())
	}
	// A watcher sees the decisions of the good one.
	wctx, wstop := context.WithCancel(ctx)
	wout := &lineWatch{want: `"rule":"mice"`, seen: make(chan struct{})}
	werr := &lineWatch{want: "watching the agent's decisions", seen: make(chan struct{})}
	wdone := make(chan int, 1)
	go func() { wdone <- run(wctx, []string{"watch", "--state-dir", state}, wout, werr) }()
	select {
	case <-werr.seen:
	case <-ctx.Done():
		t.Fatalf("watch did not start: %s", werr.String())
	}
	// A good one is taken, and confirmed.
	// (With a rule check warns of, which the reload says too.)
	if err := os.WriteFile(pol, []byte(good+"[[rule]]\nname = \"mice\"\naction = \"deny\"\nmatch = { id = \"046d:c077\" }\n"+
		"[[rule]]\nname = \"no-printers\"\naction = \"deny\"\nmatch = { class = \"printer\" }\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	// Another file than the agent's is refused, naming both: the agent
	// would reload its own, and the command say it did.
	other := filepath.Join(dir, "other.toml")
	if err := os.WriteFile(other, []byte(good), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, args := range [][]string{{"reload", "--policy", other}, {"assign", "--policy", other, "--sysfs", root, "1-3", "kiosk"}} {
		rl.Reset()
		if code := run(ctx, append(args, "--state-dir", state), &rl, &rl); code == 0 || !strings.Contains(rl.String(), "the running agent reads "+pol+", not "+other) {
			t.Errorf("%s of another file: %d %s", args[0], code, rl.String())
		}
	}
	if _, err := os.Stat(filepath.Join(dir, "rules.d")); err == nil {
		t.Error("the refused assign wrote a drop-in")
	}
	// Without --policy, the agent's own file is checked and reloaded.
	rl.Reset()
	if code := run(ctx, []string{"reload", "--state-dir", state}, &rl, &rl); code != 0 || !strings.Contains(rl.String(), "reloaded "+pol) ||
		!strings.Contains(rl.String(), "warning: "+pol+`:13: rule 3 "no-printers": match.class = "printer" matches almost no device`) {
		t.Errorf("reload: %d %s", code, rl.String())
	}
	// The watcher sees the decision the new rule makes, and stops at its
	// interrupt.
	select {
	case <-wout.seen:
	case <-ctx.Done():
		t.Fatalf("watch saw no decision of the new rule:\n%s", wout.String())
	}
	wstop()
	if code := <-wdone; code != 0 || !strings.Contains(wout.String(), `"rule":"mice"`) || !strings.HasPrefix(wout.String(), "{") {
		t.Errorf("watch: exit %d\n%s\n%s", code, wout.String(), werr.String())
	}
	// A second agent on the same state directory is refused.
	var second bytes.Buffer
	if code := run(ctx, []string{"run", "--policy", pol, "--state-dir", state, "--xenstore", s.SocketPath(), "--sysfs", root}, &second, &second); code == 0 ||
		!strings.Contains(second.String(), "another usbhotplugd") {
		t.Errorf("second agent: %d %s", code, second.String())
	}

	stop()
	if code := <-done; code != 0 {
		t.Errorf("run exited %d: %s", code, errb.String())
	}
	if _, err := os.Stat(filepath.Join(state, "usbhotplugd.pid")); err == nil {
		t.Error("pid file left behind")
	}
}

// lineWatch is a log writer that tells when a line with want was written.
type lineWatch struct {
	mu   sync.Mutex
	buf  bytes.Buffer
	want string
	seen chan struct{}
	once sync.Once
}

func (w *lineWatch) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if bytes.Contains(p, []byte(w.want)) {
		w.once.Do(func() { close(w.seen) })
	}
	return w.buf.Write(p)
}

func (w *lineWatch) String() string {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.buf.String()
}

// xenstored restarts under the agent: it reconnects and reconciles
// everything again.
func TestRunReconnectsToXenstored(t *testing.T) {
	for _, kind := range []string{xenstoretest.KindXenstored, xenstoretest.KindOxenstored} {
		t.Run(kind, func(t *testing.T) { runReconnects(t, kind) })
	}
}

func runReconnects(t *testing.T, kind string) {
	bin, err := xenstoretest.Binary(kind)
	if err != nil {
		xenstoretest.Start(t, kind) // skips, or fails under CI, with the reason
	}
	shim, err := xenstoretest.Shim()
	if err != nil {
		xenstoretest.Start(t, kind)
	}
	xsDir, err := os.MkdirTemp("", "xs")
	if err != nil {
		t.Fatal(err)
	}
	defer os.RemoveAll(xsDir)
	d, err := xenstoretest.StartDaemon(kind, bin, shim, xsDir)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { d.Stop() }()
	dir, root, pol := denyAllHost(t)
	noUevents(t)

	ctx, stop := context.WithTimeout(context.Background(), time.Minute)
	defer stop()
	out := &lineWatch{want: `"message":"ready`, seen: make(chan struct{})}
	done := make(chan int, 1)
	go func() {
		done <- run(ctx, []string{"run", "--policy", pol, "--state-dir", filepath.Join(dir, "state"), "--xenstore", d.SocketPath(), "--sysfs", root, "--log-format", "json"}, out, out)
	}()
	select {
	case <-out.seen:
	case <-ctx.Done():
		t.Fatalf("not ready:\n%s", out.String())
	}
	out.mu.Lock()
	out.want, out.seen, out.once = "reconnected to xenstore", make(chan struct{}), sync.Once{}
	seen := out.seen
	out.mu.Unlock()
	d.Stop()
	if d, err = xenstoretest.StartDaemon(kind, bin, shim, xsDir); err != nil {
		t.Fatal(err)
	}
	select {
	case <-seen:
	case <-ctx.Done():
		t.Fatalf("no reconnection:\n%s", out.String())
	}
	stop()
	if code := <-done; code != 0 {
		t.Errorf("run exited %d:\n%s", code, out.String())
	}
}

// status without an agent fails, and says so.
func TestStatusWithoutAgent(t *testing.T) {
	var out bytes.Buffer
	code := run(context.Background(), []string{"status", "--state-dir", t.TempDir()}, &out, &out)
	if code != exitFailure || !strings.Contains(out.String(), "no agent is running") {
		t.Errorf("status: exit %d\n%s", code, out.String())
	}
}

// While xenstored is not there, the agent waits for it, its retries name
// their unit, and status says what it waits for.
func TestStatusWaitingForXenstored(t *testing.T) {
	dir, root, pol := denyAllHost(t)
	noUevents(t)
	ctx, stop := context.WithTimeout(context.Background(), time.Minute)
	defer stop()
	out := &lineWatch{want: ", retrying in ", seen: make(chan struct{})}
	state := filepath.Join(dir, "state")
	done := make(chan int, 1)
	go func() {
		done <- run(ctx, []string{"run", "--policy", pol, "--state-dir", state, "--xenstore", filepath.Join(dir, "none"), "--sysfs", root, "--log-format", "json"}, out, out)
	}()
	select {
	case <-out.seen:
	case <-ctx.Done():
		t.Fatalf("no retry:\n%s", out.String())
	}
	if !strings.Contains(out.String(), `"message":"xenstore: `) {
		t.Errorf("the retry does not name its unit:\n%s", out.String())
	}
	var st bytes.Buffer
	if code := run(ctx, []string{"status", "--state-dir", state}, &st, &st); code != 0 || !strings.Contains(st.String(), "waiting for xenstored") {
		t.Errorf("status: exit %d\n%s", code, st.String())
	}
	stop()
	if code := <-done; code != 0 {
		t.Errorf("run exited %d:\n%s", code, out.String())
	}
}

// run as another user than root fails at once, in one line that says why.
func TestRunAsNonRoot(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root, to run the agent as another user")
	}
	if err := os.Chmod(filepath.Dir(binary), 0o755); err != nil {
		t.Fatal(err)
	}
	var stdout, stderr bytes.Buffer
	cmd := exec.Command(binary, "run", "--policy", "/nonexistent", "--state-dir", "/nonexistent")
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: 65534, Gid: 65534, Groups: []uint32{}}}
	err := cmd.Run()
	var ee *exec.ExitError
	if !errors.As(err, &ee) || ee.ExitCode() != exitFailure {
		t.Fatalf("run as nobody: %v\n%s%s", err, stdout.String(), stderr.String())
	}
	if lines := strings.Split(strings.TrimSpace(stderr.String()), "\n"); len(lines) != 1 || !strings.HasPrefix(lines[0], "usbhotplugd run: needs root: ") || stdout.Len() != 0 {
		t.Errorf("stderr %q, stdout %q", stderr.String(), stdout.String())
	}
}
