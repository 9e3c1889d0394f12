package main

import (
	"context"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"testing"

	"github.com/usbhotplugd/usbhotplugd/internal/fakekernel"
	"github.com/usbhotplugd/usbhotplugd/internal/sim"
	"github.com/usbhotplugd/usbhotplugd/internal/xenstore/xenstoretest"
	"github.com/usbhotplugd/usbhotplugd/internal/xltest"
)

// BenchmarkVersusXL runs the real xl 4.17 and usbhotplugd side by side in
// one hyperfine run, as whole processes on the same host: the real C
// xenstored, the captures' guest and devices, the simulated backends, and
// the fixture tree mounted over /sys in a private mount namespace (xl has
// no sysfs option). It reports each command's median in ms and xl's time
// over ours. Needs root, hyperfine, xl and gcc; it measures, it asserts
// nothing about time. Beside them run two yardsticks: a Go hello-world
// built as usbhotplugd is (no Go command can start faster) and a dynamic C
// one (as xl starts); and `usbhotplugd --version`, our binary's start.
func BenchmarkVersusXL(b *testing.B) {
	if _, err := exec.LookPath("hyperfine"); err != nil {
		b.Skip("hyperfine not found")
	}
	s := xenstoretest.Real(b)
	seedXL(b, s.Dial(b))
	root := b.TempDir()
	if err := fakekernel.XL(root); err != nil {
		b.Fatal(err)
	}
	backends := &sim.Backends{XS: s.Dial(b)}
	run, err := backends.Start(context.Background())
	if err != nil {
		b.Fatal(err)
	}
	defer run.Stop()
	x := xltest.Start(b, s.SocketPath(), root, sim.KioskDomain)
	xl := xltest.Path
	dir := b.TempDir()
	// The shipped build: static, as `make package` makes it.
	uhd := filepath.Join(dir, "usbhotplugd")
	build := exec.Command("go", "build", "-trimpath", "-o", uhd, ".")
	build.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := build.CombinedOutput(); err != nil {
		b.Fatalf("building usbhotplugd: %v\n%s", err, out)
	}
	// The yardsticks: a Go hello-world built the same way, the floor of
	// any Go command on this host, and a dynamic C one, as xl starts.
	goHello := filepath.Join(dir, "go-hello")
	build = exec.Command("go", "build", "-trimpath", "-o", goHello, "./testdata/hello")
	build.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := build.CombinedOutput(); err != nil {
		b.Fatalf("building the Go hello-world: %v\n%s", err, out)
	}
	cHello := filepath.Join(dir, "c-hello")
	if out, err := exec.Command("gcc", "-O2", "-o", cHello, "testdata/hello.c").CombinedOutput(); err != nil {
		b.Fatalf("building the C hello-world: %v\n%s", err, out)
	}
	sh := func(args ...string) {
		b.Helper()
		// xl's sysfs writes go to the fixture's plain files, as in the
		// captures, not to a fake kernel: the measure is of xl alone.
		cmd := x.Command(args...)
		cmd.Env = append(cmd.Env, "XLSHIM_SYSFS_SOCK=")
		if out, err := cmd.CombinedOutput(); err != nil {
			b.Fatalf("%v: %v\n%s", args, err, out)
		}
	}
	sh(uhd, "usbctrl-attach", "1", "version=2", "ports=4")
	sh(uhd, "usbdev-attach", "1", "hostbus=1", "hostaddr=6")
	// Rounds of a few runs each, the median of their medians: the load of
	// a shared machine drifts, and one long run per command would charge
	// the drift to whichever ran during it.
	report := filepath.Join(dir, "hyperfine.json")
	rounds := map[string][]float64{}
	for b.Loop() {
		for range 8 {
			// A detach before each attach; a prepare per command, in order.
			sh("hyperfine", "-N", "--warmup", "3", "--runs", "25", "--export-json", report,
				"--prepare", "/bin/true", "--prepare", "/bin/true",
				"--prepare", xl+" usbdev-detach 1 0 1", "--prepare", uhd+" usbdev-detach 1 0 1",
				"--prepare", "/bin/true", "--prepare", "/bin/true", "--prepare", "/bin/true",
				"--command-name", "xl usb-list", "--command-name", "usbhotplugd usb-list",
				"--command-name", "xl usbdev-attach", "--command-name", "usbhotplugd usbdev-attach",
				"--command-name", "go hello", "--command-name", "c hello", "--command-name", "usbhotplugd version",
				xl+" usb-list 1", uhd+" usb-list 1",
				xl+" usbdev-attach 1 hostbus=1 hostaddr=6", uhd+" usbdev-attach 1 hostbus=1 hostaddr=6",
				goHello, cHello, uhd+" --version")
			var res struct {
				Results []struct {
					Command string  `json:"command"`
					Median  float64 `json:"median"`
				} `json:"results"`
			}
			raw, err := os.ReadFile(report)
			if err != nil || json.Unmarshal(raw, &res) != nil || len(res.Results) != 7 {
				b.Fatalf("hyperfine's report: %v\n%s", err, raw)
			}
			for _, r := range res.Results {
				rounds[r.Command] = append(rounds[r.Command], r.Median*1000)
			}
		}
	}
	med := map[string]float64{}
	for name, ms := range rounds {
		sort.Float64s(ms)
		med[name] = ms[len(ms)/2]
		b.ReportMetric(med[name], strings.ReplaceAll(name, " ", "-")+"-ms")
	}
	b.ReportMetric(med["xl usb-list"]/med["usbhotplugd usb-list"], "usb-list-xl/ours")
	b.ReportMetric(med["xl usbdev-attach"]/med["usbhotplugd usbdev-attach"], "usbdev-attach-xl/ours")
	// The most any Go command could reach against xl on this host, and
	// what our commands spend beyond a Go process's bare start.
	b.ReportMetric(med["xl usb-list"]/med["go hello"], "usb-list-xl/go-hello")
	b.ReportMetric(med["xl usbdev-attach"]/med["go hello"], "usbdev-attach-xl/go-hello")
	// How that splits: our binary's start (doing nothing, as --version)
	// and each command's own work.
	b.ReportMetric(med["usbhotplugd version"]-med["go hello"], "version-beyond-go-hello-ms")
	b.ReportMetric(med["usbhotplugd usb-list"]-med["go hello"], "usb-list-beyond-go-hello-ms")
	b.ReportMetric(med["usbhotplugd usbdev-attach"]-med["go hello"], "usbdev-attach-beyond-go-hello-ms")
}
