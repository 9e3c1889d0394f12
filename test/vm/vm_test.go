package vmtest

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// The shipped scenarios parse (this runs in every `go test`).
func TestScenariosParse(t *testing.T) {
	files, err := filepath.Glob("scenarios/*.scn")
	if err != nil || len(files) == 0 {
		t.Fatalf("no scenarios: %v", err)
	}
	for _, f := range files {
		sc, err := ParseFile(f)
		if err != nil {
			t.Error(err)
			continue
		}
		if len(sc.Steps) == 0 || sc.Policies["main"] == "" {
			t.Errorf("%s: no steps or no policy main", f)
		}
	}
}

func TestParseErrors(t *testing.T) {
	for _, c := range []struct{ text, want string }{
		{"frobnicate x", "x.scn:1: unknown statement \"frobnicate\""},
		{"policy main\nx = 1\n", "x.scn:1: policy without end"},
		{"plug usb-kbd id=k1", "x.scn:1: usb-kbd: id=, bus= and port= are needed"},
		{"\nwait port k1", "x.scn:2: condition port: wrong number of arguments"},
		{"wait port k1 kiosk within soon", "x.scn:1: within \"soon\""},
		{"expect colour k1 blue", "x.scn:1: unknown condition \"colour\""},
		{"repeat many\nend", "x.scn:1: repeat \"many\""},
		{"mount s1", "x.scn:1: mount: wrong number of arguments"},
		{"umount", "x.scn:1: umount: wrong number of arguments"},
		{"suspend mem", "x.scn:1: suspend: wrong number of arguments"},
		{"suspend freeze rtc", "x.scn:1: suspend mem qmp, not \"freeze\" \"rtc\""},
		{"persist k1 maybe", "x.scn:1: persist ID on|off, not \"maybe\""},
		{"sysfs k1 ../../x 1", "x.scn:1: sysfs ID[:INTF] ATTR VALUE: \"../../x\" is not one attribute"},
	} {
		_, err := Parse("x.scn", c.text)
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("Parse(%q) = %v, want %q", c.text, err, c.want)
		}
	}
}

func FuzzParse(f *testing.F) {
	files, _ := filepath.Glob("scenarios/*.scn")
	for _, p := range files {
		b, _ := os.ReadFile(p)
		f.Add(string(b))
	}
	f.Add("repeat 2\nplug usb-kbd id=a bus=xhci.0 port=1\nend\n")
	f.Fuzz(func(t *testing.T, s string) {
		sc, err := Parse("fuzz.scn", s)
		if err == nil && sc == nil {
			t.Fatal("no scenario and no error")
		}
	})
}

// TestVM runs the scenarios in VMs. It needs root, apt, QEMU and the
// kernel headers, and minutes: set USBHOTPLUGD_VMTEST=1 (make vmtest does).
func TestVM(t *testing.T) {
	if os.Getenv("USBHOTPLUGD_VMTEST") == "" {
		t.Skip("VM scenarios skipped: set USBHOTPLUGD_VMTEST=1 or run `make vmtest`")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Minute)
	defer cancel()
	img, err := Prepare(ctx, "../..", t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	files, _ := filepath.Glob("scenarios/*.scn")
	env := &Env{Image: img, Logf: t.Logf}
	for _, f := range files {
		sc, err := ParseFile(f)
		if err != nil {
			t.Fatal(err)
		}
		t.Run(sc.Name, func(t *testing.T) {
			res := env.Run(ctx, sc)
			if res.Retried != "" {
				t.Logf("on a second VM: the first %s", res.Retried)
			}
			if res.Err != nil {
				t.Fatalf("%v (logs in %s)", res.Err, res.Dir)
			}
		})
	}
}

func TestParseAudit(t *testing.T) {
	for _, l := range []string{
		`{"level":"info","busid":"1-1","action":"attached","controller":0,"port":1,"audit":true,"duration_ms":270.2,"trigger":"add","message":"rule 1 attaches 1-1"}`,
		`{"level":"info","busid":"1-1","action":"attached","port":"0:1","audit":true,"duration":270.2,"trigger":"add","message":"rule 1 attaches 1-1"}`,
	} {
		a, ok := parseAudit(l)
		if !ok || a.BusID != "1-1" || a.Action != "attached" || a.Duration != 270.2 || a.Message != "rule 1 attaches 1-1" || a.Trigger != "add" {
			t.Errorf("parseAudit(%s) = %+v, %v", l, a, ok)
		}
	}
	if _, ok := parseAudit(`{"level":"info","message":"ready"}`); ok {
		t.Error("a line that is no audit record was taken for one")
	}
}

func TestSummaryEndsWithCounts(t *testing.T) {
	var b strings.Builder
	ms := func(n ...int) []time.Duration {
		var d []time.Duration
		for _, x := range n {
			d = append(d, time.Duration(x)*time.Millisecond)
		}
		return d
	}
	code := Summary(&b, []Result{
		{Name: "a", PortWritten: ms(100, 300, 200), Bound: ms(150, 350, 250)},
		{Name: "b", Err: &StepError{File: "b.scn", Line: 3, Step: "wait ready", Expected: "ready", Found: "not"}},
	})
	lines := strings.Split(strings.TrimSpace(b.String()), "\n")
	if code != 1 || lines[len(lines)-1] != "1 passed, 1 failed" {
		t.Fatalf("code %d, output:\n%s", code, b.String())
	}
	if !strings.Contains(lines[0], "port written: p50 200ms p90 300ms") {
		t.Errorf("percentiles: %s", lines[0])
	}
}
