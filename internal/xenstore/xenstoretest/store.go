package xenstoretest

import (
	"context"
	"crypto/sha256"
	_ "embed"
	"encoding/hex"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/usbhotplugd/usbhotplugd/internal/xenstore"
	"github.com/usbhotplugd/usbhotplugd/internal/xenstore/server"
)

//go:embed shim/xsshim.c
var shimSource []byte

// DefaultXenstored is where Debian's xen-utils-4.17 installs the C daemon;
// USBHOTPLUGD_XENSTORED overrides it.
const DefaultXenstored = "/usr/lib/xen-4.17/bin/xenstored"

// DefaultOxenstored is where the same package installs the OCaml daemon;
// USBHOTPLUGD_OXENSTORED overrides it.
const DefaultOxenstored = "/usr/lib/xen-4.17/bin/oxenstored"

// The kinds of store, as Store.Name gives them.
const (
	KindEmbedded   = "embedded"
	KindXenstored  = "xenstored"
	KindOxenstored = "oxenstored"
)

// Kinds lists every kind of store, in the order of Stores.
func Kinds() []string { return []string{KindEmbedded, KindXenstored, KindOxenstored} }

// A Store is a running xenstore daemon private to one test.
type Store interface {
	// Name is one of Kinds.
	Name() string
	// SocketPath is the daemon's unix socket (for XENSTORED_PATH).
	SocketPath() string
	// Dial opens a privileged (dom0) connection, closed at the test's end.
	Dial(t testing.TB) *xenstore.Conn
	// Guest introduces domid (if it is not already) and connects as that
	// guest, over a ring for a real daemon.
	Guest(t testing.TB, domid uint32) *xenstore.Conn
}

// Start starts a store of the given kind; a real daemon that cannot run
// here is skipped (or, under CI, failed).
func Start(t testing.TB, kind string) Store {
	t.Helper()
	switch kind {
	case KindEmbedded:
		return Embedded(t)
	case KindXenstored:
		return Real(t)
	case KindOxenstored:
		return Oxen(t)
	}
	t.Fatalf("no store kind %q", kind)
	return nil
}

// Stores returns a starter for each of Kinds, in that order.
func Stores() []func(t testing.TB) Store {
	var fs []func(testing.TB) Store
	for _, k := range Kinds() {
		fs = append(fs, func(t testing.TB) Store { return Start(t, k) })
	}
	return fs
}

// ForEach runs fn as a subtest against each kind of store, named by it.
func ForEach(t *testing.T, fn func(t *testing.T, s Store)) {
	t.Helper()
	for _, kind := range Kinds() {
		t.Run(kind, func(t *testing.T) { fn(t, Start(t, kind)) })
	}
}

func missing(t testing.TB, daemon, what string) {
	t.Helper()
	if os.Getenv("CI") != "" {
		t.Fatalf("cannot run the real %s: %s (CI must have it)", daemon, what)
	}
	t.Skipf("skipping the real %s: %s", daemon, what)
}

func sockDir(t testing.TB) string {
	// Unix socket paths are limited to 108 bytes: keep them short.
	d, err := os.MkdirTemp("", "xs")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(d) })
	return d
}

// ---- embedded ----

type embedded struct {
	srv  *server.Server
	path string
}

// Embedded starts an embedded server on a unix socket.
func Embedded(t testing.TB) Store {
	t.Helper()
	srv := server.New()
	path := filepath.Join(sockDir(t), "socket")
	l, err := srv.Listen(path)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close(); srv.Close() })
	return &embedded{srv: srv, path: path}
}

// Server returns the embedded server of a Store made by Embedded, or nil.
func Server(s Store) *server.Server {
	if e, ok := s.(*embedded); ok {
		return e.srv
	}
	return nil
}

func (e *embedded) Name() string       { return KindEmbedded }
func (e *embedded) SocketPath() string { return e.path }
func (e *embedded) Dial(t testing.TB) *xenstore.Conn {
	return dialSocket(t, e.path)
}
func (e *embedded) Guest(t testing.TB, domid uint32) *xenstore.Conn {
	t.Helper()
	introduce(t, e, domid)
	c := xenstore.NewConn(e.srv.Pipe(domid))
	t.Cleanup(func() { c.Close() })
	return c
}

func introduce(t testing.TB, s Store, domid uint32) {
	t.Helper()
	d := s.Dial(t)
	if err := d.Introduce(context.Background(), domid, 1, 1); err != nil {
		t.Fatalf("introduce domain %d: %v", domid, err)
	}
	d.Close()
}

func dialSocket(t testing.TB, path string) *xenstore.Conn {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c, err := xenstore.DialPath(ctx, path)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// ---- the real daemons ----

// A Daemon is a running real xenstored, C or OCaml.
type Daemon struct {
	kind   string
	dir    string
	path   string
	cmd    *exec.Cmd
	exited chan error
}

// SocketPath is the daemon's unix socket.
func (d *Daemon) SocketPath() string { return d.path }

// Dir is the daemon's private directory (socket, shim files, log).
func (d *Daemon) Dir() string { return d.dir }

// Stop kills the daemon and waits for it.
func (d *Daemon) Stop() {
	d.cmd.Process.Kill()
	<-d.exited
}

type real struct{ *Daemon }

func (r *real) Name() string { return r.kind }
func (r *real) Dial(t testing.TB) *xenstore.Conn {
	return dialSocket(t, r.path)
}
func (r *real) Guest(t testing.TB, domid uint32) *xenstore.Conn {
	t.Helper()
	introduce(t, r, domid)
	rc, err := OpenRing(r.dir, domid)
	if err != nil {
		t.Fatal(err)
	}
	c := xenstore.NewConn(rc)
	t.Cleanup(func() { c.Close() })
	return c
}

var (
	shimOnce sync.Once
	shimPath string
	shimErr  error
)

// Shim compiles the LD_PRELOAD shim once per process, into a cache file
// named by the hash of its source, and returns its path.
func Shim() (string, error) {
	shimOnce.Do(func() { shimPath, shimErr = buildShim() })
	return shimPath, shimErr
}

func buildShim() (string, error) {
	gcc, err := exec.LookPath("gcc")
	if err != nil {
		return "", fmt.Errorf("gcc not found (apt-get install gcc): %w", err)
	}
	sum := sha256.Sum256(shimSource)
	out := filepath.Join(os.TempDir(), "usbhotplugd-xsshim-"+hex.EncodeToString(sum[:8])+".so")
	if _, err := os.Stat(out); err == nil {
		return out, nil
	}
	dir, err := os.MkdirTemp("", "xsshim")
	if err != nil {
		return "", err
	}
	defer os.RemoveAll(dir)
	src := filepath.Join(dir, "xsshim.c")
	if err := os.WriteFile(src, shimSource, 0o644); err != nil {
		return "", err
	}
	tmp := filepath.Join(dir, "xsshim.so")
	cmd := exec.Command(gcc, "-shared", "-fPIC", "-O2", "-Wall", "-o", tmp, src, "-ldl")
	if b, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("building the xenstored shim: %v: %s", err, b)
	}
	return out, os.Rename(tmp, out)
}

func findBinary(env, def string) (string, error) {
	p := os.Getenv(env)
	if p == "" {
		p = def
	}
	if _, err := os.Stat(p); err != nil {
		return "", fmt.Errorf("%s not found (apt-get install xen-utils-4.17): %w", p, err)
	}
	return p, nil
}

// XenstoredBinary returns the C daemon's path, or an error naming the
// package that provides it.
func XenstoredBinary() (string, error) { return findBinary("USBHOTPLUGD_XENSTORED", DefaultXenstored) }

// OxenstoredBinary returns the OCaml daemon's path, or an error naming
// the package that provides it.
func OxenstoredBinary() (string, error) {
	return findBinary("USBHOTPLUGD_OXENSTORED", DefaultOxenstored)
}

// Binary returns the path of a real daemon's binary, by kind
// (KindXenstored or KindOxenstored).
func Binary(kind string) (string, error) {
	if kind == KindOxenstored {
		return OxenstoredBinary()
	}
	return XenstoredBinary()
}

// StartDaemon starts a real daemon of the given kind in dir, as StartReal
// and StartOxen do.
func StartDaemon(kind, bin, shim, dir string) (*Daemon, error) {
	if kind == KindOxenstored {
		return StartOxen(bin, shim, dir)
	}
	return StartReal(bin, shim, dir)
}

// Real starts a private C xenstored. Set USBHOTPLUGD_DEBUG=xenstored to
// keep its trace file.
func Real(t testing.TB) Store {
	t.Helper()
	return startDaemon(t, KindXenstored, XenstoredBinary, StartReal)
}

// Oxen starts a private OCaml oxenstored.
func Oxen(t testing.TB) Store {
	t.Helper()
	return startDaemon(t, KindOxenstored, OxenstoredBinary, StartOxen)
}

func startDaemon(t testing.TB, kind string, find func() (string, error), start func(bin, shim, dir string) (*Daemon, error)) Store {
	t.Helper()
	bin, err := find()
	if err != nil {
		missing(t, kind, err.Error())
	}
	shim, err := Shim()
	if err != nil {
		missing(t, kind, err.Error())
	}
	d, err := start(bin, shim, sockDir(t))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(d.Stop)
	return &real{d}
}

// StartReal starts the C daemon in dir; the caller stops it with the
// Daemon's Stop method. It is for benchmarks and commands that run
// outside a test.
func StartReal(bin, shim, dir string) (*Daemon, error) {
	if err := os.WriteFile(filepath.Join(dir, "xsd_port"), []byte("1\n"), 0o600); err != nil {
		return nil, err
	}
	if err := os.WriteFile(filepath.Join(dir, "xsd_kva"), make([]byte, 4096), 0o600); err != nil {
		return nil, err
	}
	args := []string{"-N", "-F", filepath.Join(dir, "pid")}
	if strings.Contains(os.Getenv("USBHOTPLUGD_DEBUG"), "xenstored") {
		args = append(args, "-T", filepath.Join(dir, "trace"))
	}
	env := []string{"XENSTORED_RUNDIR=" + dir, "XENSTORED_ROOTDIR=" + dir}
	return startProcess(KindXenstored, bin, shim, dir, args, env)
}

// oxenConfig is oxenstored's configuration: the limits Debian's
// /etc/xen/oxenstored.conf ships for 4.17, with every file in the
// daemon's directory. The port file holds the number alone: the daemon
// reads it as an integer and fails on a newline.
const oxenConfig = `pid-file = %[1]s/pid
test-eagain = false
merge-activate = true
conflict-burst-limit = 5.0
conflict-max-history-seconds = 0.05
conflict-rate-limit-is-aggregate = true
perms-activate = true
perms-watch-activate = true
quota-activate = true
quota-maxentity = 1000
quota-maxsize = 2048
quota-maxwatch = 100
quota-transaction = 10
quota-maxrequests = 1024
quota-path-max = 1024
quota-maxoutstanding = 1024
quota-maxwatchevents = 1024
persistent = false
xenstored-log-file = %[1]s/oxenstored.log
xenstored-log-level = info
access-log-file = %[1]s/access.log
xenstored-kva = %[1]s/xsd_kva
xenstored-port = %[1]s/xsd_port
`

// StartOxen starts the OCaml daemon in dir, as StartReal does the C one.
// Its run directory, /var/run/xenstored, is compiled in: the shim maps it
// to dir, so the socket is dir/socket and the host's is never touched.
func StartOxen(bin, shim, dir string) (*Daemon, error) {
	if err := os.WriteFile(filepath.Join(dir, "xsd_port"), []byte("1"), 0o600); err != nil {
		return nil, err
	}
	if err := os.WriteFile(filepath.Join(dir, "xsd_kva"), make([]byte, 4096), 0o600); err != nil {
		return nil, err
	}
	conf := filepath.Join(dir, "oxenstored.conf")
	if err := os.WriteFile(conf, fmt.Appendf(nil, oxenConfig, dir), 0o600); err != nil {
		return nil, err
	}
	args := []string{"--no-fork", "--config-file", conf}
	return startProcess(KindOxenstored, bin, shim, dir, args, nil)
}

func startProcess(kind, bin, shim, dir string, args, env []string) (*Daemon, error) {
	cmd := exec.Command(bin, args...)
	cmd.Env = append(os.Environ(), append(env, "XSSHIM_DIR="+dir, "LD_PRELOAD="+shim)...)
	out, err := os.Create(filepath.Join(dir, kind+".out"))
	if err != nil {
		return nil, err
	}
	defer out.Close()
	cmd.Stdout, cmd.Stderr = out, out
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("starting %s: %w", bin, err)
	}
	d := &Daemon{kind: kind, dir: dir, path: filepath.Join(dir, "socket"), cmd: cmd}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	if err := d.awaitSocket(exited); err != nil {
		return nil, err
	}
	d.exited = exited
	return d, nil
}

// awaitSocket waits until the daemon answers on its socket, or exits.
func (d *Daemon) awaitSocket(exited chan error) error {
	deadline := time.Now().Add(10 * time.Second)
	for {
		nc, err := net.Dial("unix", d.path)
		if err == nil {
			nc.Close()
			return nil
		}
		select {
		case werr := <-exited:
			b, _ := os.ReadFile(filepath.Join(d.dir, d.kind+".out"))
			return fmt.Errorf("%s exited at start: %v: %s", d.kind, werr, b)
		case <-time.After(2 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			d.cmd.Process.Kill()
			<-exited
			return fmt.Errorf("%s did not open %s within 10s", d.kind, d.path)
		}
	}
}
