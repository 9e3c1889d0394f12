package main

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/usbhotplugd/usbhotplugd/internal/xenstore/xenstoretest"
)

var binary string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "uhd-bin")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	binary = filepath.Join(dir, "usbhotplugd")
	if out, err := exec.Command("go", "build", "-o", binary, ".").CombinedOutput(); err != nil {
		fmt.Fprintf(os.Stderr, "building usbhotplugd: %v\n%s", err, out)
		os.Exit(1)
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

func need(t *testing.T, bin, pkg string) string {
	t.Helper()
	p, err := exec.LookPath(bin)
	if err != nil {
		if _, serr := os.Stat(bin); serr == nil {
			return bin
		}
		if os.Getenv("CI") != "" {
			t.Fatalf("%s not found: CI must install %s", bin, pkg)
		}
		t.Skipf("%s not found (apt-get install %s)", bin, pkg)
	}
	return p
}

// startEmbedded runs `usbhotplugd xenstored --socket` as its own process
// and waits for its announcement line.
func startEmbedded(t *testing.T) string {
	t.Helper()
	dir, err := os.MkdirTemp("", "xs")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	sock := filepath.Join(dir, "socket")
	cmd := exec.Command(binary, "xenstored", "--socket", sock)
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Signal(os.Interrupt); cmd.Wait() })
	line := make(chan string, 1)
	go func() {
		s := bufio.NewScanner(out)
		s.Scan()
		line <- s.Text()
		io.Copy(io.Discard, out)
	}()
	select {
	case l := <-line:
		if !strings.Contains(l, sock) {
			t.Fatalf("unexpected first line %q", l)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("usbhotplugd xenstored did not start")
	}
	return sock
}

func xs(t *testing.T, sock string, args ...string) string {
	t.Helper()
	cmd := exec.Command(args[0], args[1:]...)
	cmd.Env = append(os.Environ(), "XENSTORED_PATH="+sock)
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("%s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return string(out)
}

func TestXenstoreUtilsAgainstEmbedded(t *testing.T) {
	need(t, "xenstore-ls", "xenstore-utils")
	sock := startEmbedded(t)

	// xenstore-watch prints the initial event and the next one, then exits.
	watch := exec.Command("xenstore-watch", "-n", "2", "/demo")
	watch.Env = append(os.Environ(), "XENSTORED_PATH="+sock)
	var wout bytes.Buffer
	watch.Stdout = &wout
	pr, pw, _ := os.Pipe()
	watch.Stderr = pw
	if err := watch.Start(); err != nil {
		t.Fatal(err)
	}
	pw.Close()
	pr.Close()

	xs(t, sock, "xenstore-write", "/demo/a", "hello", "/demo/b", "world")
	if got := xs(t, sock, "xenstore-read", "/demo/a"); got != "hello\n" {
		t.Fatalf("xenstore-read = %q", got)
	}
	xs(t, sock, "xenstore-chmod", "/demo/a", "n0", "r5")
	ls := xs(t, sock, "xenstore-ls", "-fp", "/demo")
	want := "/demo/a = \"hello\"   (n0,r5)\n/demo/b = \"world\"   (n0)\n"
	if ls != want {
		t.Fatalf("xenstore-ls -fp:\n%s\nwant:\n%s", ls, want)
	}
	if got := xs(t, sock, "xenstore-list", "/demo"); got != "a\nb\n" {
		t.Fatalf("xenstore-list = %q", got)
	}
	xs(t, sock, "xenstore-exists", "/demo/b")
	xs(t, sock, "xenstore-rm", "/demo/b")
	cmd := exec.Command("xenstore-exists", "/demo/b")
	cmd.Env = append(os.Environ(), "XENSTORED_PATH="+sock)
	if err := cmd.Run(); err == nil {
		t.Fatal("xenstore-exists found a removed node")
	}

	done := make(chan error, 1)
	go func() { done <- watch.Wait() }()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("xenstore-watch: %v", err)
		}
	case <-time.After(10 * time.Second):
		watch.Process.Kill()
		t.Fatal("xenstore-watch did not see two events")
	}
	lines := strings.Split(strings.TrimSpace(wout.String()), "\n")
	if len(lines) != 2 || lines[0] != "/demo" || !strings.HasPrefix(lines[1], "/demo") {
		t.Fatalf("xenstore-watch printed %q", wout.String())
	}
}

// testXenstore runs Xen's own test-xenstore against a socket and returns
// its timing lines.
func testXenstore(t *testing.T, sock string, iterations int) map[string]string {
	t.Helper()
	bin := need(t, "/usr/lib/xen-4.17/bin/test-xenstore", "xen-utils-4.17")
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin, "-i", fmt.Sprint(iterations))
	cmd.Env = append(os.Environ(), "XENSTORED_PATH="+sock)
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("test-xenstore failed: %v\n%s", err, out)
	}
	res := map[string]string{}
	for _, l := range strings.Split(string(out), "\n") {
		// "read 1    : 60921 ns", or with -i "read 1    : avg: 81218 ns (… .. …)"
		name, v, ok := strings.Cut(l, ":")
		if !ok {
			continue
		}
		v = strings.TrimPrefix(strings.TrimSpace(v), "avg:")
		if i := strings.Index(v, " ns"); i > 0 {
			res[strings.TrimSpace(name)] = strings.TrimSpace(v[:i]) + " ns"
		}
	}
	if len(res) != 12 {
		t.Fatalf("test-xenstore reported %d results, want 12:\n%s", len(res), out)
	}
	return res
}

// TestXenTestXenstore runs Xen's test-xenstore against the embedded server,
// the C daemon and oxenstored, and logs their timings side by side (go test
// -v).
func TestXenTestXenstore(t *testing.T) {
	emb := testXenstore(t, startEmbedded(t), 20)
	real := xenstoretest.Real(t)
	c := testXenstore(t, real.SocketPath(), 20)
	ox := testXenstore(t, xenstoretest.Oxen(t).SocketPath(), 20)
	var b strings.Builder
	fmt.Fprintf(&b, "\n%-12s %14s %14s %14s\n", "test", "C xenstored", "oxenstored", "embedded")
	for _, k := range []string{"read 1", "read 2000", "write 1", "write 2000", "dir", "rm node", "rm dir", "ta empty", "ta empty x", "ta rmw", "ta rmw x", "ta err"} {
		fmt.Fprintf(&b, "%-12s %14s %14s %14s\n", k, c[k], ox[k], emb[k])
	}
	t.Log(b.String())
}
