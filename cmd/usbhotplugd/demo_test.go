package main

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// xlCaptures holds the captures of the real xl 4.17 (testdata/README.md).
const xlCaptures = "testdata/xl-4.17"

// The demo's seeded tree is the tree the captures of the real xl start from.
func TestDemoMatchesCapturedInitialTree(t *testing.T) {
	want, err := os.ReadFile(filepath.Join(xlCaptures, "main/00-initial/xenstore.txt"))
	if err != nil {
		t.Fatal(err)
	}
	var out, errb bytes.Buffer
	if code := run(context.Background(), []string{"demo"}, &out, &errb); code != 0 {
		t.Fatalf("demo exited %d: %s", code, errb.String())
	}
	_, tree, _ := strings.Cut(out.String(), "\n")
	if tree != string(want) {
		t.Fatalf("demo tree differs from the capture:\n%s", tree)
	}
}

func TestUsageAndExitCodes(t *testing.T) {
	var out, errb bytes.Buffer
	if code := run(context.Background(), nil, &out, &errb); code != exitUsage {
		t.Fatalf("no args: exit %d", code)
	}
	if code := run(context.Background(), []string{"nope"}, &out, &errb); code != exitUsage || !strings.Contains(errb.String(), `unknown command "nope"`) {
		t.Fatalf("unknown command: exit %d, %q", code, errb.String())
	}
	errb.Reset()
	if code := run(context.Background(), []string{"demo", "--bogus"}, &out, &errb); code != exitUsage {
		t.Fatalf("bad flag: exit %d", code)
	}
	out.Reset()
	if code := run(context.Background(), []string{"version"}, &out, &errb); code != 0 || !strings.HasPrefix(out.String(), "usbhotplugd ") {
		t.Fatalf("version: exit %d, %q", code, out.String())
	}
	// What cobra would take silently: a help topic that is none, words
	// after --version, an empty directory for the man pages.
	for _, args := range [][]string{{"help", "bogus"}, {"--version", "extra"}, {"-v", "x"}, {"man", ""},
		{"check", "--host", "", "x.toml"}, {"explain", "--host", ""}, {"record", "--coldplug", "--import-udevadm", "x.txt"}} {
		errb.Reset()
		if code := run(context.Background(), args, &out, &errb); code != exitUsage {
			t.Errorf("%q: exit %d, %q", args, code, errb.String())
		}
	}
	out.Reset()
	if code := run(context.Background(), []string{"help", "usb-list"}, &out, &errb); code != 0 || !strings.Contains(out.String(), "usb-list") {
		t.Errorf("help usb-list: exit %d, %q", code, out.String())
	}
}

// The README's first command: the shipped kiosk day, without root or Xen.
func TestReplayDefault(t *testing.T) {
	var out, errb bytes.Buffer
	if code := run(context.Background(), []string{"replay"}, &out, &errb); code != 0 {
		t.Fatalf("replay exited %d: %s", code, errb.String())
	}
	for _, want := range []string{
		"1-1.3   0c27:3bfa refused",
		"domain kiosk started (domid 2)",
		"13:00:00  1-1.3   0c27:3bfa attached → kiosk (domid 2) port 0:1",
		"$ xl usb-list kiosk",
	} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("replay output lacks %q:\n%s", want, out.String())
		}
	}
	out.Reset()
	if code := run(context.Background(), []string{"replay", "--json"}, &out, &errb); code != 0 || !strings.Contains(out.String(), `"timeline"`) {
		t.Fatalf("replay --json exited %d: %s", code, out.String())
	}
	if code := run(context.Background(), []string{"replay", "/nonexistent.jsonl"}, &out, &errb); code == 0 {
		t.Fatal("replay of a missing trace succeeded")
	}
}

// The README shows the demo's whole output: what a new admin runs first
// prints exactly that.
func TestReadmeShowsTheDemo(t *testing.T) {
	readme, err := os.ReadFile("../../README.md")
	if err != nil {
		t.Fatal(err)
	}
	_, block, ok := strings.Cut(string(readme), "```\n# replay of ")
	if !ok {
		t.Fatal("the README shows no demo output")
	}
	block, _, _ = strings.Cut("# replay of "+block, "```\n")
	var out, errb bytes.Buffer
	if code := run(context.Background(), []string{"replay"}, &out, &errb); code != 0 {
		t.Fatalf("replay exited %d: %s", code, errb.String())
	}
	var got []string
	for _, l := range strings.Split(strings.TrimRight(out.String(), "\n"), "\n") {
		got = append(got, strings.TrimRight(l, " "))
	}
	if want := strings.TrimRight(block, "\n"); strings.Join(got, "\n") != want {
		t.Errorf("the demo prints:\n%s\n\nthe README shows:\n%s", strings.Join(got, "\n"), want)
	}
}
