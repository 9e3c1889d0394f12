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

// A Store is a running xenstore daemon private to one test.
type Store interface {
	// Name is "embedded" or "xenstored".
	Name() string
	// SocketPath is the daemon's unix socket (for XENSTORED_PATH).
	SocketPath() string
	// Dial opens a privileged (dom0) connection, closed at the test's end.
	Dial(t testing.TB) *xenstore.Conn
	// Guest introduces domid (if it is not already) and connects as that
	// guest, over a ring for the C daemon.
	Guest(t testing.TB, domid uint32) *xenstore.Conn
}

// Stores returns both kinds of store; the C one is skipped (or, under CI,
// failed) when it cannot run here.
func Stores() []func(t testing.TB) Store {
	return []func(testing.TB) Store{
		func(t testing.TB) Store { return Embedded(t) },
		func(t testing.TB) Store { return Real(t) },
	}
}

// ForEach runs fn as a subtest against each kind of store, named by it.
func ForEach(t *testing.T, fn func(t *testing.T, s Store)) {
	t.Helper()
	for _, name := range []string{"embedded", "xenstored"} {
		t.Run(name, func(t *testing.T) {
			var s Store
			if name == "embedded" {
				s = Embedded(t)
			} else {
				s = Real(t)
			}
			fn(t, s)
		})
	}
}

func missing(t testing.TB, what string) {
	t.Helper()
	if os.Getenv("CI") != "" {
		t.Fatalf("cannot run the real xenstored: %s (CI must have it)", what)
	}
	t.Skipf("skipping the real xenstored: %s", what)
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

func (e *embedded) Name() string       { return "embedded" }
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

// ---- the real C xenstored ----

// A Daemon is a running C xenstored.
type Daemon struct {
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

func (r *real) Name() string { return "xenstored" }
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
	shimOnce.Do(func() {
		gcc, err := exec.LookPath("gcc")
		if err != nil {
			shimErr = fmt.Errorf("gcc not found (apt-get install gcc): %w", err)
			return
		}
		sum := sha256.Sum256(shimSource)
		out := filepath.Join(os.TempDir(), "usbhotplugd-xsshim-"+hex.EncodeToString(sum[:8])+".so")
		if _, err := os.Stat(out); err == nil {
			shimPath = out
			return
		}
		dir, err := os.MkdirTemp("", "xsshim")
		if err != nil {
			shimErr = err
			return
		}
		defer os.RemoveAll(dir)
		src := filepath.Join(dir, "xsshim.c")
		if err := os.WriteFile(src, shimSource, 0o644); err != nil {
			shimErr = err
			return
		}
		tmp := filepath.Join(dir, "xsshim.so")
		cmd := exec.Command(gcc, "-shared", "-fPIC", "-O2", "-Wall", "-o", tmp, src, "-ldl")
		if b, err := cmd.CombinedOutput(); err != nil {
			shimErr = fmt.Errorf("building the xenstored shim: %v: %s", err, b)
			return
		}
		if err := os.Rename(tmp, out); err != nil {
			shimErr = err
			return
		}
		shimPath = out
	})
	return shimPath, shimErr
}

// XenstoredBinary returns the C daemon's path, or an error naming the
// package that provides it.
func XenstoredBinary() (string, error) {
	p := os.Getenv("USBHOTPLUGD_XENSTORED")
	if p == "" {
		p = DefaultXenstored
	}
	if _, err := os.Stat(p); err != nil {
		return "", fmt.Errorf("%s not found (apt-get install xen-utils-4.17): %w", p, err)
	}
	return p, nil
}

// Real starts a private C xenstored. Set USBHOTPLUGD_DEBUG=xenstored to
// keep its trace file.
func Real(t testing.TB) Store {
	t.Helper()
	bin, err := XenstoredBinary()
	if err != nil {
		missing(t, err.Error())
	}
	shim, err := Shim()
	if err != nil {
		missing(t, err.Error())
	}
	r, err := StartReal(bin, shim, sockDir(t))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(r.Stop)
	return &real{r}
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
	cmd := exec.Command(bin, args...)
	cmd.Env = append(os.Environ(),
		"XSSHIM_DIR="+dir, "XENSTORED_RUNDIR="+dir, "XENSTORED_ROOTDIR="+dir,
		"LD_PRELOAD="+shim)
	out, err := os.Create(filepath.Join(dir, "xenstored.log"))
	if err != nil {
		return nil, err
	}
	defer out.Close()
	cmd.Stdout, cmd.Stderr = out, out
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("starting %s: %w", bin, err)
	}
	r := &Daemon{dir: dir, path: filepath.Join(dir, "socket"), cmd: cmd}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	// Wait until the daemon answers on its socket, or exits.
	deadline := time.Now().Add(10 * time.Second)
	for {
		nc, err := net.Dial("unix", r.path)
		if err == nil {
			nc.Close()
			break
		}
		select {
		case werr := <-exited:
			b, _ := os.ReadFile(filepath.Join(dir, "xenstored.log"))
			return nil, fmt.Errorf("xenstored exited at start: %v: %s", werr, b)
		case <-time.After(2 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			cmd.Process.Kill()
			<-exited
			return nil, fmt.Errorf("xenstored did not open %s within 10s", r.path)
		}
	}
	r.exited = exited
	return r, nil
}
