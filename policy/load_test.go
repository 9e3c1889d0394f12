package policy_test

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"github.com/usbhotplugd/usbhotplugd/policy"
)

func write(t *testing.T, path, src string) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, []byte(src), 0o644); err != nil {
		t.Fatal(err)
	}
}

func deny(name string) string {
	return "[[rule]]\nname = \"" + name + "\"\naction = \"deny\"\nmatch = { id = \"1234:" + "5678\", serial = \"" + name + "\" }\n"
}

// An include, or the policy itself, that is not a regular file is refused
// with its path, at once: a FIFO with no writer and /dev/zero would
// otherwise be read forever.
func TestNotRegularFile(t *testing.T) {
	dir := t.TempDir()
	fifo := filepath.Join(dir, "fifo.toml")
	if err := syscall.Mkfifo(fifo, 0o644); err != nil {
		t.Skipf("no FIFO here: %v", err)
	}
	for _, inc := range []string{fifo, "/dev/zero", dir} {
		main := filepath.Join(dir, "policy.toml")
		write(t, main, "[[rule]]\ninclude = \""+inc+"\"\n")
		_, err := policy.ParseFile(main)
		if !errors.Is(err, policy.ErrInclude) || !strings.Contains(err.Error(), inc) || !strings.Contains(err.Error(), "not a regular file") {
			t.Errorf("include %s: want a refusal naming it, got %v", inc, err)
		}
		if _, err := policy.ParseFile(inc); !errors.Is(err, policy.ErrNotRegular) || !strings.Contains(err.Error(), inc) {
			t.Errorf("policy %s: want a refusal naming it, got %v", inc, err)
		}
	}
}

// A drop-in that is a FIFO is refused too, and names itself.
func TestDropInNotRegular(t *testing.T) {
	dir := t.TempDir()
	main := filepath.Join(dir, "policy.toml")
	write(t, main, deny("main"))
	fifo := filepath.Join(dir, "rules.d", "10-fifo.toml")
	write(t, filepath.Join(dir, "rules.d", "05-ok.toml"), deny("ok"))
	if err := syscall.Mkfifo(fifo, 0o644); err != nil {
		t.Skipf("no FIFO here: %v", err)
	}
	_, err := policy.ParseFile(main)
	if !errors.Is(err, policy.ErrNotRegular) || !strings.Contains(err.Error(), fifo+": not a regular file (a named pipe)") {
		t.Fatalf("want an error naming %s, got %v", fifo, err)
	}
}

// A done context stops a parse, with an error that says so.
func TestParseCancelled(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	_, err := policy.ParseContext(ctx, "big.toml", manyRules(5000), nil)
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("want context.Canceled, got %v", err)
	}
	dir := t.TempDir()
	write(t, filepath.Join(dir, "policy.toml"), deny("a"))
	if _, err := policy.Load(ctx, filepath.Join(dir, "policy.toml"), policy.Options{Host: "h"}); !errors.Is(err, context.Canceled) {
		t.Fatalf("Load: want context.Canceled, got %v", err)
	}
}

// The policy is the main file, then rules.d/*.toml in lexical order; a
// drop-in with hosts applies only on the hosts it names.
func TestDropIns(t *testing.T) {
	dir := t.TempDir()
	main := filepath.Join(dir, "policy.toml")
	write(t, main, deny("main")+"[domain.vm]\nusbctrl = [\"version=2\"]\n")
	d := filepath.Join(dir, "rules.d")
	write(t, filepath.Join(d, "20-b.toml"), deny("b"))
	write(t, filepath.Join(d, "10-a.toml"), deny("a"))
	write(t, filepath.Join(d, "30-vdi.toml"), "hosts = [\"vdi-*\", \"lab1\"]\n"+deny("vdi"))
	write(t, filepath.Join(d, "40-lab.toml"), "hosts = \"LAB?\"\n"+deny("lab"))
	write(t, filepath.Join(d, ".50-hidden.toml"), "not toml")
	write(t, filepath.Join(d, "60-notes.txt"), "not toml")
	names := func(p *policy.Policy) string {
		var s []string
		for _, r := range p.Rules {
			s = append(s, r.Name+"@"+filepath.Base(r.File))
		}
		return strings.Join(s, " ")
	}
	for host, want := range map[string]string{
		"vdi-07": "main@policy.toml a@10-a.toml b@20-b.toml vdi@30-vdi.toml",
		"lab1":   "main@policy.toml a@10-a.toml b@20-b.toml vdi@30-vdi.toml lab@40-lab.toml",
		"desk":   "main@policy.toml a@10-a.toml b@20-b.toml",
	} {
		p, err := policy.Load(context.Background(), main, policy.Options{Host: host})
		if err != nil {
			t.Fatalf("%s: %v", host, err)
		}
		if got := names(p); got != want {
			t.Errorf("%s loads %s, want %s", host, got, want)
		}
		if len(p.DropIns) != 4 || p.Host != host {
			t.Errorf("%s: drop-ins %v, host %q", host, p.DropIns, p.Host)
		}
	}
	p, err := policy.Load(context.Background(), main, policy.Options{Host: "desk"})
	if err != nil || len(p.Skipped) != 2 || p.Skipped[0].Hosts[0] != "vdi-*" {
		t.Errorf("skipped %+v, %v", p.Skipped, err)
	}
	if p, err := policy.Load(context.Background(), main, policy.Options{Host: "desk", NoDropIns: true}); err != nil || len(p.Rules) != 1 {
		t.Errorf("NoDropIns: %v", err)
	}
}

// Mistakes in drop-ins name the drop-in; names and domains are unique
// across files; hosts is for drop-ins only.
func TestDropInErrors(t *testing.T) {
	dir := t.TempDir()
	main := filepath.Join(dir, "policy.toml")
	write(t, main, deny("main")+"[domain.vm]\nusbctrl = [\"version=2\"]\n")
	d := filepath.Join(dir, "rules.d")
	write(t, filepath.Join(d, "10-a.toml"), deny("main"))
	write(t, filepath.Join(d, "20-b.toml"), "[domain.vm]\nusbctrl = [\"version=1\"]\n")
	write(t, filepath.Join(d, "30-c.toml"), "hosts = [\"bad/host\"]\n"+deny("c"))
	write(t, filepath.Join(d, "40-d.toml"), "hosts = [\"other\"]\n[[rule]]\nname = 1\n")
	_, err := policy.Load(context.Background(), main, policy.Options{Host: "h"})
	for _, want := range []string{
		"10-a.toml:1: rule 2 \"main\": name: rule 1 at " + main + ":1 has the same name",
		"20-b.toml:1: domain.vm: also declared at " + main,
		"30-c.toml:1: hosts[0]: \"bad/host\" is not a host name pattern",
	} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("want %q in:\n%v", want, err)
		}
	}
	if strings.Contains(err.Error(), "40-d.toml") {
		t.Errorf("a drop-in for another host is checked only for that host:\n%v", err)
	}
	write(t, main, "hosts = [\"x\"]\n"+deny("main"))
	os.RemoveAll(d)
	if _, err := policy.Load(context.Background(), main, policy.Options{Host: "x"}); err == nil || !strings.Contains(err.Error(), "hosts selects a drop-in") {
		t.Errorf("hosts in the main file: %v", err)
	}
}
