package main

import (
	"bufio"
	"bytes"
	"context"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/usbhotplugd/usbhotplugd/internal/fakekernel"
	"github.com/usbhotplugd/usbhotplugd/internal/sim"
	"github.com/usbhotplugd/usbhotplugd/internal/xenstore/xenstoretest"
)

// docHost is the host the README's walk-through and the man pages'
// examples run on: the standard fixture devices, an embedded xenstore
// seeded as a dom0 with the guest kiosk, simulated backends. Paths under
// /etc/usbhotplugd/ are mapped into a temporary directory.
type docHost struct {
	etc string
	// backs are the simulated backends: between two commands an admin
	// types, they finish moving, so each waits for them to be idle.
	backs *sim.Backends
}

func newDocHost(t *testing.T) *docHost {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	t.Cleanup(cancel)
	s := xenstoretest.Embedded(t)
	xs := s.Dial(t)
	b, r, err := sim.StartKiosk(ctx, xs, s.Dial(t))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { r.Stop() })
	root := t.TempDir()
	if err := fakekernel.Standard(root); err != nil {
		t.Fatal(err)
	}
	if err := fakekernel.AddDriver(root, "usbback"); err != nil {
		t.Fatal(err)
	}
	old := sysfsWriter
	sysfsWriter = fakekernel.NewKernel(root)
	t.Cleanup(func() { sysfsWriter = old })
	t.Setenv("XENSTORED_PATH", s.SocketPath())
	t.Setenv("USBHOTPLUGD_SYSFS", root)
	return &docHost{etc: t.TempDir(), backs: b}
}

func (h *docHost) mapPath(s string) string {
	rules, _ := filepath.Abs("../../rules")
	return strings.NewReplacer("/etc/xen/", h.etc+"/xen/", "/etc/usbhotplugd/", h.etc+"/", "/usr/share/usbhotplugd/rules/", rules+"/").Replace(s)
}

// run runs one command line as the admin would type it.
func (h *docHost) run(t *testing.T, line string) (string, int) {
	t.Helper()
	args := strings.Fields(h.mapPath(line))
	if len(args) == 0 || args[0] != "usbhotplugd" {
		t.Fatalf("not a usbhotplugd command: %q", line)
	}
	var out bytes.Buffer
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if err := h.backs.WaitIdle(ctx); err != nil {
		t.Fatal(err)
	}
	code := run(ctx, args[1:], &out, &out)
	rules, _ := filepath.Abs("../../rules")
	return strings.NewReplacer(h.etc+"/xen/", "/etc/xen/", h.etc+"/", "/etc/usbhotplugd/", rules+"/", "/usr/share/usbhotplugd/rules/").Replace(out.String()), code
}

func normalise(s string) []string {
	var out []string
	for _, l := range strings.Split(strings.TrimRight(s, "\n"), "\n") {
		out = append(out, strings.TrimRight(l, " "))
	}
	return out
}

// matches compares output with the text after a command: "..." alone on a
// line stands for any lines.
func matches(got, want []string) bool {
	if len(want) == 0 {
		return true
	}
	if want[0] == "..." {
		for i := 0; i <= len(got); i++ {
			if matches(got[i:], want[1:]) {
				return true
			}
		}
		return false
	}
	return len(got) > 0 && got[0] == want[0] && matches(got[1:], want[1:])
}

var fileMarker = regexp.MustCompile(`^<!-- file: (\S+) -->$`)

// Every ```console block of the README is a session on docHost: each
// "$ usbhotplugd ..." line runs, and what follows it, up to the next "$"
// line, is what it must print. A ```toml block after a
// "<!-- file: PATH -->" line is written to PATH first.
func TestReadmeExamples(t *testing.T) {
	f, err := os.Open("../../README.md")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	h := newDocHost(t)
	sc := bufio.NewScanner(f)
	var (
		block, file string
		body        []string
		ran         int
	)
	flush := func() {
		if (block == "toml" || block == "cfg") && file != "" {
			p := h.mapPath(file)
			os.MkdirAll(filepath.Dir(p), 0o755)
			if err := os.WriteFile(p, []byte(h.mapPath(strings.Join(body, "\n")+"\n")), 0o644); err != nil {
				t.Fatal(err)
			}
			file = ""
		}
		if block != "console" {
			return
		}
		for i := 0; i < len(body); {
			line := body[i]
			i++
			if !strings.HasPrefix(line, "$ ") {
				continue
			}
			var want []string
			for i < len(body) && !strings.HasPrefix(body[i], "$ ") {
				want = append(want, body[i])
				i++
			}
			got, code := h.run(t, strings.TrimPrefix(line, "$ "))
			ran++
			if code != 0 && !strings.Contains(strings.Join(want, "\n"), "exit status") {
				t.Errorf("%s: exit %d\n%s", line, code, got)
				continue
			}
			if os.Getenv("USBHOTPLUGD_README_SHOW") != "" {
				t.Logf("%s\n%s", line, got)
			}
			if !matches(normalise(got), normalise(strings.Join(want, "\n"))) {
				t.Errorf("%s prints:\n%s\nthe README says:\n%s", line, got, strings.Join(want, "\n"))
			}
		}
	}
	for sc.Scan() {
		l := sc.Text()
		switch {
		case block == "" && fileMarker.MatchString(l):
			file = fileMarker.FindStringSubmatch(l)[1]
		case block == "" && strings.HasPrefix(l, "```"):
			block, body = strings.TrimPrefix(l, "```"), nil
		case block != "" && l == "```":
			flush()
			block = ""
		case block != "":
			body = append(body, l)
		}
	}
	if ran == 0 {
		t.Fatal("the README has no console examples")
	}
	t.Logf("%d README commands ran", ran)
}

// Every example of every command's --help (and so of the man page) runs
// on docHost, except those that run until stopped or need the kernel.
func TestHelpExamples(t *testing.T) {
	h := newDocHost(t)
	if err := os.WriteFile(filepath.Join(h.etc, "policy.toml"), []byte("[[rule]]\nname = \"audio\"\naction = \"attach\"\nmatch = { id = \"0d8c:0014\" }\ntarget = { domain = \"kiosk\" }\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	os.MkdirAll(filepath.Join(h.etc, "xen"), 0o755)
	for _, n := range []string{"kiosk", "desk"} {
		cfg := "name = \"" + n + "\"\nusbdev = [ \"hostbus=1,hostaddr=3\" ]\n"
		if n == "desk" {
			cfg = "name = \"desk\"\nusbdev = [ \"hostbus=1,hostaddr=4\" ]\n"
		}
		if err := os.WriteFile(filepath.Join(h.etc, "xen", n+".cfg"), []byte(cfg), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	skip := map[string]string{"run": "runs until stopped", "xenstored": "serves until stopped",
		"status": "needs a running agent", "reload": "needs a running agent", "watch": "needs a running agent", "man": "writes under /usr/share"}
	dir := t.TempDir()
	for _, c := range commands {
		for _, e := range c.examples {
			cmd, _, _ := strings.Cut(e, "\t")
			if why, ok := skip[c.name]; ok {
				t.Logf("not run (%s): %s", why, cmd)
				continue
			}
			if strings.Contains(cmd, "--coldplug") {
				t.Logf("not run (needs the kernel's uevents): %s", cmd)
				continue
			}
			cmd = strings.NewReplacer(" my.toml", " "+filepath.Join(h.etc, "policy.toml"), " -o host.jsonl", " -o "+filepath.Join(dir, "t.jsonl"), " host.jsonl", "", " monitor.txt", " ../../internal/uevent/testdata/mouse-add.txt",
				" > /etc/bash_completion.d/usbhotplugd", "").Replace(cmd)
			if (strings.HasPrefix(cmd, "usbhotplugd explain") || strings.HasPrefix(cmd, "usbhotplugd assign") || strings.HasPrefix(cmd, "usbhotplugd unassign")) && !strings.Contains(cmd, "--policy") {
				cmd += " --policy /etc/usbhotplugd/policy.toml"
			}
			if strings.HasPrefix(cmd, "usbhotplugd replay --policy") {
				cmd = "usbhotplugd replay --policy " + filepath.Join(h.etc, "policy.toml")
			}
			out, code := h.run(t, cmd)
			if code != 0 {
				t.Errorf("%s: exit %d\n%s", cmd, code, out)
			}
		}
	}
}
