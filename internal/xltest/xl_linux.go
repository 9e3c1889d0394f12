package xltest

import (
	"bufio"
	"bytes"
	_ "embed"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"

	"github.com/usbhotplugd/usbhotplugd/internal/sim"
	"github.com/usbhotplugd/usbhotplugd/internal/xenstore/xenstoretest"
)

// Path is Debian's xl 4.17 (xen-utils-4.17).
const Path = "/usr/lib/xen-4.17/bin/xl"

//go:embed testdata/xlshim.c
var shimSource []byte

// An XL runs the real xl against one store and one fixture tree.
type XL struct {
	env          []string
	root, varlib string

	mu     sync.Mutex
	kernel Writer
	writes []string // "PATH BYTES" of each sysfs write since Writes
}

// A Writer takes a sysfs write as the kernel would: the fake kernel.
type Writer interface {
	WriteAttr(path string, data []byte) error
}

// Start readies xl for the store at socket, the fixture tree at root and
// the running guests doms. It skips when root, xl, gcc or unshare is
// missing.
func Start(tb testing.TB, socket, root string, doms ...sim.Domain) *XL {
	tb.Helper()
	for _, bin := range []string{Path, "gcc", "unshare"} {
		if _, err := exec.LookPath(bin); err != nil {
			tb.Skipf("%s not found (xen-utils-4.17, gcc, util-linux)", bin)
		}
	}
	if os.Geteuid() != 0 {
		tb.Skip("mounting the fixture over /sys for xl needs root")
	}
	xsShim, err := xenstoretest.Shim()
	if err != nil {
		tb.Skip(err)
	}
	dir := tb.TempDir()
	src, shim := filepath.Join(dir, "xlshim.c"), filepath.Join(dir, "xlshim.so")
	if err := os.WriteFile(src, shimSource, 0o644); err != nil {
		tb.Fatal(err)
	}
	if out, err := exec.Command("gcc", "-shared", "-fPIC", "-O2", "-o", shim, src, "-ldl").CombinedOutput(); err != nil {
		tb.Fatalf("building the xl shim: %v\n%s", err, out)
	}
	// libxl keeps each domain's configuration under /var/lib/xen, named
	// by its domid and uuid; the shim gives each domid its uuid.
	x := &XL{root: filepath.Clean(root), varlib: filepath.Join(dir, "varlibxen")}
	if err := os.MkdirAll(x.varlib, 0o755); err != nil {
		tb.Fatal(err)
	}
	sock := x.serveKernel(tb, dir)
	x.env = append(os.Environ(), "XENSTORED_PATH="+socket, "LD_PRELOAD="+shim+":"+xsShim,
		"XLSHIM_SYSFS_SOCK="+sock, "XLSHIM_SYSFS_ROOT="+x.root)
	for _, d := range doms {
		cfg := fmt.Sprintf(`{"c_info": {"type": %q, "name": %q, "uuid": %q}, "b_info": {"max_vcpus": 1, "max_memkb": 524288, "target_memkb": 524288, "type.pv": {}}}`+"\n",
			d.Type, d.Name, d.UUID)
		if err := os.WriteFile(filepath.Join(x.varlib, fmt.Sprintf("userdata-d.%d.%s.libxl-json", d.ID, d.UUID)), []byte(cfg), 0o644); err != nil {
			tb.Fatal(err)
		}
		x.env = append(x.env, fmt.Sprintf("XLSHIM_UUID_%d=%s", d.ID, d.UUID))
	}
	return x
}

// Command is args run inside the namespace that gives them the fixture as
// /sys and the guests' configurations as /var/lib/xen.
func (x *XL) Command(args ...string) *exec.Cmd {
	cmd := exec.Command("unshare", append([]string{"-m", "sh", "-ec", `mount --bind "$0" /sys; mkdir -p /var/lib/xen; mount --bind "$1" /var/lib/xen; shift; exec "$@"`, x.root, x.varlib}, args...)...)
	cmd.Env = x.env
	return cmd
}

// Run runs xl with args and returns its exit code and output.
func (x *XL) Run(tb testing.TB, args ...string) (int, string, string) {
	tb.Helper()
	var out, errb bytes.Buffer
	cmd := x.Command(append([]string{Path}, args...)...)
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	var exit *exec.ExitError
	switch {
	case err == nil:
		return 0, out.String(), errb.String()
	case errors.As(err, &exit):
		return exit.ExitCode(), out.String(), errb.String()
	}
	tb.Fatalf("xl %v: %v\n%s", args, err, errb.String())
	return 0, "", ""
}

// SetKernel makes k the kernel that takes xl's sysfs writes, from its
// next write on. Until it is set, every write fails with EIO.
func (x *XL) SetKernel(k Writer) {
	x.mu.Lock()
	defer x.mu.Unlock()
	x.kernel = k
}

// Writes returns xl's sysfs writes since the last call, in order, each as
// "PATH BYTES" (PATH relative to the tree) with the kernel's answer after
// a refused one (" -> ERRNO").
func (x *XL) Writes() []string {
	x.mu.Lock()
	defer x.mu.Unlock()
	w := x.writes
	x.writes = nil
	return w
}

// serveKernel answers the shim's questions, one write each, with the
// kernel's errno, until the test ends; it returns the socket's path.
func (x *XL) serveKernel(tb testing.TB, dir string) string {
	tb.Helper()
	sock := filepath.Join(dir, "k.sock")
	l, err := net.Listen("unix", sock)
	if err != nil {
		tb.Fatal(err)
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			c, err := l.Accept()
			if err != nil {
				return // closed: the test is over
			}
			x.answer(c)
		}
	}()
	tb.Cleanup(func() {
		l.Close()
		<-done
	})
	return sock
}

// answer takes one write from the shim and gives it the kernel's errno.
func (x *XL) answer(c net.Conn) {
	defer c.Close()
	line, err := bufio.NewReader(c).ReadString('\n')
	if err != nil {
		return // xl died mid-question: its write fails with EIO
	}
	rel, data, _ := strings.Cut(strings.TrimSuffix(line, "\n"), "\t")
	errno := syscall.EIO
	x.mu.Lock()
	k := x.kernel
	x.mu.Unlock()
	if k != nil {
		errno = 0
		if err := k.WriteAttr(filepath.Join(x.root, rel), []byte(data)); err != nil && !errors.As(err, &errno) {
			errno = syscall.EIO
		}
	}
	w := rel + " " + data
	if errno != 0 {
		w += " -> " + errno.Error()
	}
	x.mu.Lock()
	x.writes = append(x.writes, w)
	x.mu.Unlock()
	fmt.Fprintf(c, "%d\n", int(errno))
}
