package main

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/usbhotplugd/usbhotplugd/internal/fakekernel"
	"github.com/usbhotplugd/usbhotplugd/internal/sim"
	"github.com/usbhotplugd/usbhotplugd/internal/xenstore"
	"github.com/usbhotplugd/usbhotplugd/internal/xenstore/xenstoretest"
)

// xlHost builds the host of the xl captures under a fake kernel.
func xlHost(t testing.TB) (string, *fakekernel.Kernel) {
	t.Helper()
	root := t.TempDir()
	if err := fakekernel.XL(root); err != nil {
		t.Fatal(err)
	}
	return root, fakekernel.NewKernel(root)
}

// seedXL seeds a store as the captures' host: dom0 and the PV guest kiosk.
func seedXL(t testing.TB, xs *xenstore.Conn) {
	t.Helper()
	ctx := context.Background()
	if err := sim.SeedDom0(ctx, xs); err != nil {
		t.Fatal(err)
	}
	if err := sim.SeedDomain(ctx, xs, sim.KioskDomain); err != nil {
		t.Fatal(err)
	}
}

func dump(t testing.TB, xs *xenstore.Conn) string {
	t.Helper()
	var b strings.Builder
	if err := xs.Dump(context.Background(), &b, "/"); err != nil {
		t.Fatal(err)
	}
	return b.String()
}

// tree is a dump as a store of this kind can match a capture of the C
// daemon: as it is, except from oxenstored, which lists children sorted
// and keeps @introduceDomain and @releaseDomain as nodes at the root, and
// names itself in /tool/xenstored; its dumps, and the captures they are
// compared with, are taken as sorted lines without those two nodes and
// without that value.
func tree(kind, dump string) string {
	if kind != xenstoretest.KindOxenstored {
		return dump
	}
	var keep []string
	for _, l := range strings.SplitAfter(dump, "\n") {
		if strings.HasPrefix(l, "/tool/xenstored = ") {
			l = "/tool/xenstored = \"\"   (n0)\n"
		}
		if l != "" && !strings.HasPrefix(l, "/@") {
			keep = append(keep, l)
		}
	}
	sort.Strings(keep)
	return strings.Join(keep, "")
}

func readGolden(t *testing.T, dir, name string) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(dir, name))
	if err != nil && !os.IsNotExist(err) {
		t.Fatal(err)
	}
	return string(b)
}

// Each step of the xl 4.17 captures, run as the same command of ours on
// the same host (the real C xenstored, the fake kernel over the same sysfs
// tree, the simulated backend and frontend), leaves the same tree with the
// same permissions, makes the same sysfs writes with the same bytes in the
// same order, prints the same bytes and exits with the same code.
func TestConformanceWithXL(t *testing.T) {
	golden := xlCaptures
	for _, kind := range xenstoretest.Kinds() {
		for _, scenario := range []string{"main", "extra-autoctrl", "extra-nosim"} {
			t.Run(kind+"/"+scenario, func(t *testing.T) {
				conformXL(t, xenstoretest.Start(t, kind), golden, scenario)
			})
		}
	}
}

func conformXL(t *testing.T, store xenstoretest.Store, golden, scenario string) {
	{
		{
			xs := store.Dial(t)
			seedXL(t, xs)
			steps, _ := filepath.Glob(filepath.Join(golden, scenario, "[0-9]*"))
			sort.Strings(steps)
			kind := store.Name()
			if got, want := tree(kind, dump(t, xs)), tree(kind, readGolden(t, steps[0], "xenstore.txt")); got != want {
				t.Fatalf("seeded tree differs from %s:\n%s", steps[0], got)
			}
			root, kernel := xlHost(t)
			sysfsWriter = kernel
			defer func() { sysfsWriter = nil }()
			var backends *sim.Backends
			if scenario != "extra-nosim" {
				backends = &sim.Backends{XS: store.Dial(t)}
				run, err := backends.Start(context.Background())
				if err != nil {
					t.Fatal(err)
				}
				defer run.Stop()
			}
			for _, step := range steps[1:] {
				name := filepath.Base(step)
				words := strings.Fields(readGolden(t, step, "cmd.txt"))
				if len(words) < 2 || words[0] != "xl" {
					t.Fatalf("%s: cmd.txt %q", name, words)
				}
				args := []string{words[1], "--xenstore", store.SocketPath(), "--sysfs", root}
				if words[1] == "usbctrl-attach" || words[1] == "usbctrl-detach" { // the commands that wait for a backend
					args = append(args, "--backend-timeout", "250ms")
				}
				args = append(args, words[2:]...)
				before := len(kernel.Writes())
				code, out, errs := runCmd(t, args...)
				if want := strings.TrimSpace(readGolden(t, step, "rc")); fmt.Sprint(code) != want {
					t.Fatalf("%s: %s exited %d, xl %s; stderr:\n%s", name, strings.Join(words, " "), code, want, errs)
				}
				if backends != nil {
					ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
					if err := backends.WaitIdle(ctx); err != nil {
						t.Fatalf("%s: backends did not settle: %v", name, err)
					}
					cancel()
				}
				if want, got := tree(kind, readGolden(t, step, "xenstore.txt")), tree(kind, dump(t, xs)); got != want {
					t.Errorf("%s: tree differs from xl's:\n%s", name, diffLines(want, got))
				}
				var got []string
				for _, w := range kernel.Writes()[before:] {
					got = append(got, fmt.Sprintf("WRITE /sys/%s '%s' -> ok", w.Path, w.Data))
				}
				var want []string
				for _, l := range strings.Split(strings.TrimSpace(readGolden(t, step, "sysfs-writes.txt")), "\n") {
					if _, rest, ok := strings.Cut(l, " "); ok {
						want = append(want, rest)
					}
				}
				if strings.Join(got, "\n") != strings.Join(want, "\n") {
					t.Errorf("%s: sysfs writes\n%s\nxl made\n%s", name, strings.Join(got, "\n"), strings.Join(want, "\n"))
				}
				if want := readGolden(t, step, "stdout.txt"); out != want {
					t.Errorf("%s: stdout %q, xl printed %q", name, out, want)
				}
			}
		}
	}
}

// diffLines shows the lines only one side has.
func diffLines(want, got string) string {
	w, g := map[string]bool{}, map[string]bool{}
	for _, l := range strings.Split(want, "\n") {
		w[l] = true
	}
	for _, l := range strings.Split(got, "\n") {
		g[l] = true
	}
	var b strings.Builder
	for _, l := range strings.Split(want, "\n") {
		if !g[l] {
			fmt.Fprintf(&b, "- %s\n", l)
		}
	}
	for _, l := range strings.Split(got, "\n") {
		if !w[l] {
			fmt.Fprintf(&b, "+ %s\n", l)
		}
	}
	if b.Len() == 0 {
		wl, gl := strings.Split(want, "\n"), strings.Split(got, "\n")
		for i := range wl {
			if i < len(gl) && wl[i] != gl[i] {
				return fmt.Sprintf("(same lines, different order) first at line %d: want %q, got %q", i+1, wl[i], gl[i])
			}
		}
	}
	return b.String()
}
