package xltest

import (
	"bufio"
	"bytes"
	_ "embed"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
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
	log          string // the shim's log of xl's sysfs writes
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
	x := &XL{root: filepath.Clean(root), varlib: filepath.Join(dir, "varlibxen"), log: filepath.Join(dir, "sysfs-writes")}
	if err := os.MkdirAll(x.varlib, 0o755); err != nil {
		tb.Fatal(err)
	}
	x.env = append(os.Environ(), "XENSTORED_PATH="+socket, "LD_PRELOAD="+shim+":"+xsShim,
		"XLSHIM_SYSFS_LOG="+x.log, "XLSHIM_SYSFS_ROOT="+x.root)
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

// Run runs xl with args and returns its exit code and output. Its sysfs
// writes wait in the log for Replay.
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

// Replay hands xl's sysfs writes since the last Replay to k, in order,
// and returns them as "PATH BYTES" (PATH relative to the tree). A write k
// refuses fails the test: a real kernel would have failed xl's write.
func (x *XL) Replay(tb testing.TB, k Writer) []string {
	tb.Helper()
	b, err := os.ReadFile(x.log)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		tb.Fatal(err)
	}
	if err := os.Remove(x.log); err != nil {
		tb.Fatal(err)
	}
	var done []string
	sc := bufio.NewScanner(bytes.NewReader(b))
	for sc.Scan() {
		path, data, ok := strings.Cut(sc.Text(), "\t")
		if !ok || !strings.HasPrefix(path, "/") {
			tb.Fatalf("the shim's log: %q", sc.Text())
		}
		rel := strings.TrimPrefix(path, "/")
		if err := k.WriteAttr(filepath.Join(x.root, rel), []byte(data)); err != nil {
			tb.Fatalf("xl wrote %q to %s, which the kernel refuses: %v", data, rel, err)
		}
		done = append(done, rel+" "+data)
	}
	return done
}
