package main

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/usbhotplugd/usbhotplugd/internal/agent"
	"github.com/usbhotplugd/usbhotplugd/internal/daemon"
	"github.com/usbhotplugd/usbhotplugd/internal/fakekernel"
	"github.com/usbhotplugd/usbhotplugd/internal/xenstore/xenstoretest"
)

// assignHost is a standard host with a policy that names nothing.
func assignHost(t *testing.T) (root, pol string) {
	t.Helper()
	dir := t.TempDir()
	root = filepath.Join(dir, "sys")
	if err := fakekernel.Standard(root); err != nil {
		t.Fatal(err)
	}
	pol = writeFile(t, dir, "policy.toml", "[[rule]]\nname = \"no-storage\"\naction = \"deny\"\nmatch = { interface = \"storage\" }\n")
	return root, pol
}

func dropIns(t *testing.T, pol string) []string {
	t.Helper()
	m, _ := filepath.Glob(filepath.Join(filepath.Dir(pol), "rules.d", "*"))
	for i := range m {
		m[i] = filepath.Base(m[i])
	}
	return m
}

// decision is what explain says of one device.
func decision(t *testing.T, pol, root, busid string) explained {
	t.Helper()
	for _, e := range explainAll(t, pol, root) {
		if e.Device.BusID == busid {
			return e
		}
	}
	t.Fatalf("explain has no %s", busid)
	return explained{}
}

// assign writes one drop-in per device, by its stable identity; a second
// assign of the device replaces it; unassign removes it. With no agent
// running, nothing is reloaded and that is no error.
func TestAssignUnassign(t *testing.T) {
	root, pol := assignHost(t)
	base := []string{"--policy", pol, "--sysfs", root, "--state-dir", t.TempDir()}
	code, out, errs := runCmd(t, append([]string{"assign", "--mountinfo", "/dev/null", "1-2", "kiosk"}, base...)...)
	if code != 0 || !strings.Contains(out, "1-2 (0d8c:0014) goes to kiosk, named by its port_path pci-0000:00:14.0-usb-0:2") || !strings.Contains(out, "no agent is running") {
		t.Fatalf("assign: exit %d\n%s%s", code, out, errs)
	}
	files := dropIns(t, pol)
	if len(files) != 1 || !strings.HasPrefix(files[0], "assign-0d8c_0014-port_path-") {
		t.Fatalf("drop-ins %v", files)
	}
	if e := decision(t, pol, root, "1-2"); e.Action != "attach" || e.Target.Domain != "kiosk" {
		t.Errorf("1-2 after assign: %+v", e)
	}
	if code, out, _ := runCmd(t, "check", pol); code != 0 || !strings.Contains(out, "valid: 2 rules") {
		t.Errorf("check: %d %s", code, out)
	}
	// Again, to another guest: the same file, now for desk.
	if code, out, errs := runCmd(t, append([]string{"assign", "--mountinfo", "/dev/null", "1-2", "desk"}, base...)...); code != 0 || !strings.Contains(out, "replaced "+filepath.Join(filepath.Dir(pol), "rules.d", files[0])+", which named it before") {
		t.Fatalf("assign again: exit %d\n%s%s", code, out, errs)
	}
	if got := dropIns(t, pol); len(got) != 1 || got[0] != files[0] {
		t.Errorf("drop-ins after a second assign: %v", got)
	}
	if e := decision(t, pol, root, "1-2"); e.Action != "attach" || e.Target.Domain != "desk" {
		t.Errorf("1-2 after the second assign: %+v", e)
	}
	// A device with a serial of its own is named by it.
	if code, out, _ := runCmd(t, append([]string{"assign", "--mountinfo", "/dev/null", "1-4", "desk"}, base...)...); code != 0 || !strings.Contains(out, "named by its serial MOUSE-A") {
		t.Errorf("assign 1-4: %d %s", code, out)
	}
	code, out, _ = runCmd(t, append([]string{"unassign", "1-2"}, base...)...)
	if code != 0 || !strings.Contains(out, "removed ") || !strings.Contains(out, files[0]) {
		t.Fatalf("unassign: %d %s", code, out)
	}
	if e := decision(t, pol, root, "1-2"); e.Action != "none" {
		t.Errorf("1-2 after unassign: %+v", e)
	}
	if code, _, errs := runCmd(t, append([]string{"unassign", "1-2"}, base...)...); code != exitFailure || !strings.Contains(errs, "no drop-in of usbhotplugd assign") {
		t.Errorf("unassign twice: %d %s", code, errs)
	}
	// A device that is not plugged in is unassigned by its drop-in's name.
	left := dropIns(t, pol)
	if len(left) != 1 {
		t.Fatalf("drop-ins %v", left)
	}
	if code, out, errs := runCmd(t, append([]string{"unassign", left[0]}, base...)...); code != 0 || len(dropIns(t, pol)) != 0 {
		t.Errorf("unassign by name: %d %s%s", code, out, errs)
	}
}

// What assign refuses leaves rules.d as it was.
func TestAssignRefusals(t *testing.T) {
	root, pol := assignHost(t)
	base := []string{"--policy", pol, "--sysfs", root, "--state-dir", t.TempDir()}
	if code, _, errs := runCmd(t, append([]string{"assign", "--mountinfo", "/dev/null", "1-4", "kiosk"}, base...)...); code != 0 {
		t.Fatalf("assign 1-4: %s", errs)
	}
	before := dropIns(t, pol)
	for _, c := range []struct {
		args []string
		code int
		want string
	}{
		{[]string{"assign", "--mountinfo", "/dev/null", "1-3", "kiosk"}, exitFailure, `the drop-in would never decide: rule 1 "no-storage"`},
		{[]string{"assign", "--mountinfo", "/dev/null", "1-1", "kiosk"}, exitFailure, "is a hub"},
		{[]string{"assign", "--mountinfo", "/dev/null", "1-9", "kiosk"}, exitFailure, "assign: no USB device 1-9 on this host (usbhotplugd devices lists them)\n"},
		{[]string{"assign", "--mountinfo", "/dev/null", "1-2", "7"}, exitUsage, "is a domid"},
		{[]string{"assign", "1-2"}, exitUsage, "usage"},
		{[]string{"assign", "--mountinfo", "/dev/null", "../x", "kiosk"}, exitUsage, "busid"},
		{[]string{"unassign", "../policy.toml"}, exitFailure, "neither a busid"},
		{[]string{"unassign", "1-9"}, exitFailure, "no USB device 1-9 on this host (usbhotplugd devices lists them); for a device that is not plugged in, give its drop-in's name"},
	} {
		code, out, errs := runCmd(t, append(c.args, base...)...)
		// The system's words for a missing file are no part of it.
		if code != c.code || !strings.Contains(out+errs, c.want) || strings.Contains(out+errs, "file does not exist") {
			t.Errorf("%v: exit %d\n%s%s", c.args, code, out, errs)
		}
	}
	// A refused re-assign puts the device's drop-in back as it was.
	old, _ := os.ReadFile(filepath.Join(filepath.Dir(pol), "rules.d", before[0]))
	os.WriteFile(pol, []byte("[[rule]]\nname = \"mice\"\naction = \"deny\"\nmatch = { id = \"046d:c077\" }\n"), 0o644)
	if code, _, errs := runCmd(t, append([]string{"assign", "--mountinfo", "/dev/null", "1-4", "desk"}, base...)...); code != exitFailure || !strings.Contains(errs, `rule 1 "mice"`) {
		t.Errorf("assign under a deny: %d %s", code, errs)
	}
	now, _ := os.ReadFile(filepath.Join(filepath.Dir(pol), "rules.d", before[0]))
	if got := dropIns(t, pol); len(got) != 1 || got[0] != before[0] || string(now) != string(old) {
		t.Errorf("rules.d after refusals: %v\n%s", got, now)
	}
}

// With the agent running, assign reloads it and the device goes to its
// guest; unassign gives it back; on each real xenstored.
func TestAssignReloadsTheAgent(t *testing.T) {
	for _, kind := range []string{xenstoretest.KindXenstored, xenstoretest.KindOxenstored} {
		t.Run(kind, func(t *testing.T) { assignReloadsTheAgent(t, kind) })
	}
}

func assignReloadsTheAgent(t *testing.T, kind string) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	s := kioskStore(ctx, t, kind)
	root, pol := assignHost(t)
	if err := fakekernel.AddDriver(root, "usbback"); err != nil {
		t.Fatal(err)
	}
	state := filepath.Join(t.TempDir(), "state")
	noUevents(t)
	fakeKernelWrites(t, root)
	runCtx, stop := context.WithCancel(ctx)
	done := make(chan int, 1)
	log := &lineWatch{want: "ready: every present device reconciled", seen: make(chan struct{})}
	go func() {
		done <- run(runCtx, []string{"run", "--policy", pol, "--state-dir", state, "--xenstore", s.SocketPath(), "--sysfs", root, "--log-format", "json"}, log, log)
	}()
	defer func() { stop(); <-done }()
	watch := waitWatch(ctx, t, state, log)
	base := []string{"--policy", pol, "--sysfs", root, "--state-dir", state}
	code, out, errs := runCmd(t, append([]string{"assign", "--mountinfo", "/dev/null", "1-2", "kiosk"}, base...)...)
	if code != 0 || !strings.Contains(out, "usbhotplugd reloaded") {
		t.Fatalf("assign: exit %d\n%s%s\nagent: %s", code, out, errs, log.String())
	}
	awaitDecision(t, watch, "1-2", agent.ActAttached)
	code, out, errs = runCmd(t, append([]string{"unassign", "1-2"}, base...)...)
	if code != 0 || !strings.Contains(out, "usbhotplugd reloaded") {
		t.Fatalf("unassign: exit %d\n%s%s", code, out, errs)
	}
	awaitDecision(t, watch, "1-2", agent.ActDetached)
}

// waitWatch waits until the agent answers on its control socket, and
// starts watching its decisions.
func waitWatch(ctx context.Context, t *testing.T, state string, log *lineWatch) *daemon.Client {
	t.Helper()
	select {
	case <-log.seen:
	case <-ctx.Done():
		t.Fatalf("the agent never became ready:\n%s", log.String())
	}
	c, err := daemon.Dial(ctx, state)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	if _, err := c.Call(daemon.Request{Request: daemon.ReqWatch}); err != nil {
		t.Fatal(err)
	}
	return c
}

func awaitDecision(t *testing.T, c *daemon.Client, busid string, action agent.Action) {
	t.Helper()
	for {
		r, err := c.Next()
		if err != nil {
			t.Fatalf("no %s decision for %s: %v", action, busid, err)
		}
		if r.Decision != nil && r.Decision.BusID == busid && r.Decision.Action == action {
			return
		}
	}
}

// An earlier rule that already sends the device to the same guest is no
// refusal: the drop-in stands behind it, and assign says so.
func TestAssignBehindARule(t *testing.T) {
	root, pol := assignHost(t)
	os.WriteFile(pol, []byte("[[rule]]\nname = \"audio\"\naction = \"attach\"\nmatch = { id = \"0d8c:0014\" }\ntarget = { domain = \"kiosk\" }\n"), 0o644)
	code, out, errs := runCmd(t, "assign", "--policy", pol, "--sysfs", root, "--state-dir", t.TempDir(), "--no-reload", "1-2", "kiosk")
	if code != 0 || !strings.Contains(out, `note: rule 1 "audio" (`+pol+`:1) sends it to kiosk already`) || !strings.Contains(out, "not reloaded (--no-reload)") {
		t.Errorf("assign behind a rule: %d\n%s%s", code, out, errs)
	}
	if code, _, errs := runCmd(t, "assign", "--policy", pol, "--sysfs", root, "--state-dir", t.TempDir(), "1-2", "desk"); code != exitFailure || !strings.Contains(errs, "would never decide") {
		t.Errorf("assign to another guest behind a rule: %d %s", code, errs)
	}
}

// The README's first assign works on the policy the package ships, and a
// refused first assign leaves no rules.d behind.
func TestAssignOnTheShippedPolicy(t *testing.T) {
	root, pol := assignHost(t)
	shipped, err := os.ReadFile("../../packaging/policy.toml")
	if err != nil {
		t.Fatal(err)
	}
	base := []string{"--policy", pol, "--sysfs", root, "--state-dir", t.TempDir(), "--mountinfo", "/dev/null"}
	if code, _, errs := runCmd(t, append([]string{"assign", "1-3", "kiosk"}, base...)...); code != exitFailure || !strings.Contains(errs, "narrow or remove that rule") {
		t.Fatalf("assign under no-storage: %d %s", code, errs)
	}
	if _, err := os.Stat(filepath.Join(filepath.Dir(pol), "rules.d")); err == nil {
		t.Error("a refused first assign left rules.d behind")
	}
	if err := os.WriteFile(pol, shipped, 0o644); err != nil {
		t.Fatal(err)
	}
	if code, out, errs := runCmd(t, append([]string{"assign", "1-2", "kiosk"}, base...)...); code != 0 || !strings.Contains(out, "goes to kiosk") {
		t.Errorf("assign on the shipped policy: %d %s%s", code, out, errs)
	}
}
