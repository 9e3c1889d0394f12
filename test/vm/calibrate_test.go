package vmtest

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/usbhotplugd/usbhotplugd/internal/xenstore/xenstoretest"
)

// The fake kernel behaves as the real one: each scenario calibrated on the
// real kernel (testdata/calibration, written by `make vmtest-calibrate`)
// runs on the fake kernel, with the real agent and the real xenstored, and
// gives the same uevents of each device and the same final drivers and
// ports.
func TestFakeKernelCalibrated(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("the agent runs as root: run the test as root")
	}
	if _, err := xenstoretest.XenstoredBinary(); err != nil {
		t.Skipf("the real xenstored is needed (apt-get install xenstored or xen-utils-4.17): %v", err)
	}
	files, err := filepath.Glob("testdata/calibration/*.txt")
	if err != nil || len(files) == 0 {
		t.Fatalf("no calibrations: %v", err)
	}
	for _, f := range files {
		name := strings.TrimSuffix(filepath.Base(f), ".txt")
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			want, err := ReadCalibration(f)
			if err != nil {
				t.Fatal(err)
			}
			sc, err := ParseFile(filepath.Join("scenarios", name+".scn"))
			if err != nil {
				t.Fatal(err)
			}
			if sc.Mounts() {
				t.Fatalf("%s mounts a disk, which the fake kernel cannot (calibrate.go): remove %s", sc.File, f)
			}
			if sc.Suspends() {
				t.Fatalf("%s suspends dom0, which the fake kernel cannot (calibrate.go): remove %s", sc.File, f)
			}
			if sc.ProbesSlowly() {
				t.Fatalf("%s has a slow probe, whose events the fake kernel orders otherwise (calibrate.go): remove %s", sc.File, f)
			}
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
			defer cancel()
			res := (&Env{Fake: true}).Run(ctx, sc)
			if res.Err != nil {
				t.Fatalf("on the fake kernel: %v (logs in %s)", res.Err, res.Dir)
			}
			if d := diffLines(want, res.Calibration); d != "" {
				t.Errorf("the fake kernel differs from the real one (- real, + fake); fix the fake kernel, or, if the real "+
					"kernel's behaviour changed, record it again with `make vmtest-calibrate SCENARIO=%s`:\n%s", sc.File, d)
			}
		})
	}
}

func TestDiffLines(t *testing.T) {
	if d := diffLines([]string{"a", "b"}, []string{"a", "b"}); d != "" {
		t.Errorf("equal lines differ: %q", d)
	}
	want := "  a\n- b\n+ x\n  c\n+ d\n"
	if d := diffLines([]string{"a", "b", "c"}, []string{"a", "x", "c", "d"}); d != want {
		t.Errorf("diff:\n%s\nwant:\n%s", d, want)
	}
}

// A scenario that mounts a disk or suspends dom0 stops at that step on
// the fake kernel, saying why, rather than passing on a faked mount table
// or resume.
func TestFakeKernelDoesNotMountOrSuspend(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("the agent runs as root: run the test as root")
	}
	if _, err := xenstoretest.XenstoredBinary(); err != nil {
		t.Skipf("the real xenstored is needed (apt-get install xenstored or xen-utils-4.17): %v", err)
	}
	for _, c := range []struct {
		file, step string
		want       error
	}{
		{"scenarios/inuse.scn", "mount ", errNoMount},
		{"scenarios/suspend.scn", "suspend ", errNoSuspend},
	} {
		t.Run(c.file, func(t *testing.T) {
			sc, err := ParseFile(c.file)
			if err != nil {
				t.Fatal(err)
			}
			ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
			defer cancel()
			res := (&Env{Fake: true}).Run(ctx, sc)
			var se *StepError
			if !errors.As(res.Err, &se) || !strings.HasPrefix(se.Step, c.step) || !strings.Contains(se.Found, c.want.Error()) {
				t.Fatalf("on the fake kernel: %v, want the %sstep to fail with %q", res.Err, c.step, c.want)
			}
			os.RemoveAll(res.Dir)
		})
	}
}

// slowprobe.scn and slowbind.scn pass on the fake kernel too, which holds
// the slow device's lock as the real one does (fakeMachine.probeSlowly):
// the agent is not stalled by a device whose reads wait. (The fake kernel
// holds it from the plug, where under slowbind.scn's authorization before
// probe the real one holds it through the agent's drivers_probe; the
// agent, waiting for the lock either way, reads no difference.)
func TestFakeKernelSlowProbe(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("the agent runs as root: run the test as root")
	}
	if _, err := xenstoretest.XenstoredBinary(); err != nil {
		t.Skipf("the real xenstored is needed (apt-get install xenstored or xen-utils-4.17): %v", err)
	}
	for _, f := range []string{"scenarios/slowprobe.scn", "scenarios/slowbind.scn"} {
		t.Run(filepath.Base(f), func(t *testing.T) {
			t.Parallel()
			sc, err := ParseFile(f)
			if err != nil {
				t.Fatal(err)
			}
			if !sc.ProbesSlowly() {
				t.Fatalf("%s plugs no %s", sc.File, SlowProbeDriver)
			}
			ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
			defer cancel()
			res := (&Env{Fake: true}).Run(ctx, sc)
			if res.Err != nil {
				t.Fatalf("on the fake kernel: %v (logs in %s)", res.Err, res.Dir)
			}
			os.RemoveAll(res.Dir)
		})
	}
}
