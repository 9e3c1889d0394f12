package main

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// The daemon links no testing package: the fake kernel that replay runs
// on is an ordinary package, and test helpers stay in test files.
func TestBinaryLinksNoTesting(t *testing.T) {
	goTool, err := exec.LookPath("go")
	if err != nil {
		t.Skip("needs the go command to list the binary's packages")
	}
	for _, tags := range []string{"", "testhooks"} {
		out, err := exec.Command(goTool, "list", "-tags", tags, "-deps", ".").CombinedOutput()
		if err != nil {
			t.Fatalf("go list -tags %q -deps: %v\n%s", tags, err, out)
		}
		for _, p := range strings.Fields(string(out)) {
			if p == "testing" || strings.HasPrefix(p, "testing/") || strings.HasSuffix(p, "test") && strings.Contains(p, "usbhotplugd/") {
				t.Errorf("with tags %q the binary links %s", tags, p)
			}
		}
	}
}

// Only the commands that read and print go without a signal handler
// (which costs a thread at start-up); every command that changes the
// host stops cleanly on SIGINT and SIGTERM.
func TestQuickCommandsOnly(t *testing.T) {
	quick := map[string]bool{"usb-list": true, "version": true}
	for _, c := range commands {
		if got := handlesSignals([]string{c.name, "x"}); got == quick[c.name] {
			t.Errorf("%s: handles signals %v", c.name, got)
		}
	}
	for _, args := range [][]string{nil, {"--help"}, {"no-such-command"}} {
		if !handlesSignals(args) {
			t.Errorf("%q: handles no signals", args)
		}
	}
}

// Start-up work is paid by every command: the packages' initialisation
// stays small (tables are static data or built on first use), and the
// packages a PVUSB command is made of do next to none. It counts
// allocations, which do not depend on the machine's load.
func TestInitWork(t *testing.T) {
	goTool, err := exec.LookPath("go")
	if err != nil {
		t.Skip("needs the go command to build the binary")
	}
	bin := filepath.Join(t.TempDir(), "usbhotplugd")
	build := exec.Command(goTool, "build", "-trimpath", "-o", bin, ".")
	build.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	cmd := exec.Command(bin, "version")
	cmd.Env = append(os.Environ(), "GODEBUG=inittrace=1")
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("usbhotplugd version: %v\n%s", err, out)
	}
	const module = "github.com/usbhotplugd/usbhotplugd/"
	lean := map[string]bool{"internal/xenstore": true, "internal/assign": true, "internal/usbsysfs": true, "internal/uevent": true}
	seen := 0
	for _, l := range strings.Split(string(out), "\n") {
		// init PKG @T ms, C ms clock, B bytes, N allocs
		var pkg string
		var at, clock float64
		var bytes, allocs int
		if n, _ := fmt.Sscanf(l, "init %s @%f ms, %f ms clock, %d bytes, %d allocs", &pkg, &at, &clock, &bytes, &allocs); n != 5 {
			continue
		}
		seen++
		name, ours := strings.CutPrefix(pkg, module)
		switch {
		case ours && lean[name] && allocs > 2:
			t.Errorf("%s allocates %d times (%d bytes) at start-up; a PVUSB command pays it", name, allocs, bytes)
		case (ours || pkg == "main") && (allocs > 32 || bytes > 8<<10):
			t.Errorf("%s allocates %d times (%d bytes) at start-up, which every command pays", pkg, allocs, bytes)
		}
	}
	if seen == 0 {
		t.Fatalf("no init trace in:\n%s", out)
	}
}
