package main

import (
	"os/exec"
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
