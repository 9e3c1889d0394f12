package replay_test

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/usbhotplugd/usbhotplugd/internal/fakekernel"
	"github.com/usbhotplugd/usbhotplugd/internal/replay"
	"github.com/usbhotplugd/usbhotplugd/internal/uevent"
	"github.com/usbhotplugd/usbhotplugd/internal/usbsysfs"
	"github.com/usbhotplugd/usbhotplugd/internal/xenstore"
	"github.com/usbhotplugd/usbhotplugd/internal/xenstore/xenstoretest"
	"github.com/usbhotplugd/usbhotplugd/policy"
)

// deskPolicy passes a real kernel's keyboard (1-1), its high-speed stick
// on EHCI (3-1) and a SuperSpeed stick (2-4, which usbback refuses) to
// the guest desk; the rest stays in dom0.
const deskPolicy = `
[domain.desk]
usbctrl = ["version=2, ports=4"]

[[rule]]
name = "desk-devices"
action = "attach"
match = { port = ["1-1", "3-1", "2-4"] }
target = { domain = "desk" }

[[rule]]
name = "rest"
action = "deny"
`

var desk = uevent.DomainChange{Action: "start", Name: "desk", Domid: 1}

// realHost copies a real kernel's sysfs after coldplug (with usbback
// loaded) into a new directory.
func realHost(t *testing.T) string {
	root := filepath.Join(fakekernel.TempDir(t), "sys")
	if err := fakekernel.Copy("../usbsysfs/testdata/real/sys", root); err != nil {
		t.Fatal(err)
	}
	if err := fakekernel.AddDriver(root, "usbback"); err != nil {
		t.Fatal(err)
	}
	// The capture kept no authorization attributes; a kernel has them.
	des, err := os.ReadDir(filepath.Join(root, "bus/usb/devices"))
	if err != nil {
		t.Fatal(err)
	}
	for _, de := range des {
		dir := filepath.Join(root, "bus/usb/devices", de.Name())
		attrs := []string{"authorized"}
		if strings.HasPrefix(de.Name(), "usb") {
			attrs = append(attrs, "interface_authorized_default")
		}
		for _, a := range attrs {
			if err := os.WriteFile(filepath.Join(dir, a), []byte("1\n"), 0o644); err != nil {
				t.Fatal(err)
			}
		}
	}
	return root
}

type eof struct{}

func (eof) Receive(context.Context) (uevent.Message, error) { return uevent.Message{}, io.EOF }

// recordColdplug is `usbhotplugd record --coldplug` on the host at root,
// stopped after the scan, read back as replay reads a trace file.
func recordColdplug(t *testing.T, root string, extra ...uevent.Record) []uevent.Record {
	ctx := context.Background()
	sys := usbsysfs.NewFS(root)
	s, err := uevent.Coldplug(ctx, eof{}, func() ([]uevent.Event, error) { return uevent.Scan(sys) })
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	var b bytes.Buffer
	tw := uevent.NewTraceWriter(&b)
	if err := tw.Write(uevent.Record{Domain: &desk}); err != nil {
		t.Fatal(err)
	}
	at := time.Date(2026, 11, 24, 8, 0, 0, 0, time.UTC)
	rec := &uevent.Recorder{Src: s, W: tw, Attrs: sys.Attrs, Now: func() time.Time { at = at.Add(time.Millisecond); return at }}
	if _, err := rec.Run(ctx); err != io.EOF {
		t.Fatalf("record: %v", err)
	}
	for _, r := range extra {
		tw.Write(r)
	}
	if err := tw.Flush(); err != nil {
		t.Fatal(err)
	}
	recs, err := uevent.ReadTrace(&b, "coldplug.jsonl")
	if err != nil {
		t.Fatal(err)
	}
	return recs
}

// decisions are the distinct audit records of a result, without what
// depends on timing (the trigger, the time, how often a pass was made).
func decisions(r *replay.Result) []string {
	var out []string
	for _, l := range r.Timeline {
		if a := l.Audit; a != nil {
			reason := a.Reason
			if i := strings.Index(reason, ": write /"); i >= 0 {
				reason = reason[:i] // the path names the tree
			}
			out = append(out, fmt.Sprintf("%s %s %s %d:%d %s", a.BusID, a.Action, a.Domain, a.Ctrl, a.Port, reason))
		}
	}
	slices.Sort(out)
	return slices.Compact(out)
}

// drivers lists every interface of the tree with its driver, and "!"
// after those deauthorized.
func drivers(t *testing.T, root string) []string {
	devs, err := usbsysfs.NewFS(root).Devices()
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, d := range devs {
		for _, in := range d.Interfaces {
			s := in.Name + "=" + in.Driver
			if !in.Authorized {
				s += "!"
			}
			out = append(out, s)
		}
	}
	return out
}

// runBoth runs the agent live on a real kernel's host (prepared by prep),
// and on a replay of recs.
func runBoth(t *testing.T, recs []uevent.Record, prep ...func(root string)) (live, replayed *replay.Result, liveRoot, replayRoot string) {
	p, err := policy.Parse("desk.toml", []byte(deskPolicy), nil)
	if err != nil {
		t.Fatal(err)
	}
	s := xenstoretest.Embedded(t)
	dial := func(ctx context.Context) (*xenstore.Conn, error) { return s.Dial(t), nil }
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	liveRoot = realHost(t)
	for _, p := range prep {
		p(liveRoot)
	}
	live, err = replay.Live(ctx, replay.Options{Policy: p, Root: liveRoot, Dial: dial}, []uevent.DomainChange{desk})
	if err != nil {
		t.Fatal(err)
	}
	s2 := xenstoretest.Embedded(t)
	replayRoot = t.TempDir()
	replayed, err = replay.Run(ctx, recs, replay.Options{Policy: p, Root: replayRoot,
		Dial: func(ctx context.Context) (*xenstore.Conn, error) { return s2.Dial(t), nil }})
	if err != nil {
		t.Fatal(err)
	}
	return live, replayed, liveRoot, replayRoot
}

// A trace recorded with --coldplug on a real host replays to the
// decisions the agent makes live on that host, and leaves every interface
// with the driver the live agent left it with: the recorded devices were
// bound already, and the trace says to what.
func TestColdplugTraceReplaysAsLive(t *testing.T) {
	recs := recordColdplug(t, realHost(t))
	live, replayed, liveRoot, replayRoot := runBoth(t, recs)
	ld, rd := decisions(live), decisions(replayed)
	if !slices.Equal(ld, rd) {
		t.Errorf("decisions differ\nlive:\n%s\nreplayed:\n%s", strings.Join(ld, "\n"), strings.Join(rd, "\n"))
	}
	if l, r := drivers(t, liveRoot), drivers(t, replayRoot); !slices.Equal(l, r) {
		t.Errorf("drivers differ\nlive:     %v\nreplayed: %v", l, r)
	}
	if live.ListText["desk"] != replayed.ListText["desk"] {
		t.Errorf("usb-list differs\nlive:\n%s\nreplayed:\n%s", live.ListText["desk"], replayed.ListText["desk"])
	}
	// What the real kernel's usbback would do: the keyboard and the
	// high-speed stick attached, the SuperSpeed stick refused (once, not retried); no
	// decision about the root hubs' interfaces (1-0:1.0 is usb1's).
	for _, want := range []string{"1-1 attached desk", "3-1 attached desk", "2-4 refused desk"} {
		if !slices.ContainsFunc(rd, func(s string) bool { return strings.HasPrefix(s, want) }) {
			t.Errorf("no decision %q in\n%s", want, strings.Join(rd, "\n"))
		}
	}
	for _, d := range rd {
		if strings.HasPrefix(d, "1-0 ") || strings.HasPrefix(d, "usb") {
			t.Errorf("a decision about a root hub: %s", d)
		}
	}
}

// synthetic makes the event written to a uevent file: the kernel's keys,
// as they are now, with SYNTH_UUID.
func synthetic(e uevent.Event, action string) uevent.Record {
	e.Action = action
	e.Env = maps.Clone(e.Env)
	e.Env["ACTION"] = action
	e.Env["SYNTH_UUID"] = "0b7fd2b9-c76c-4b2a-8e3a-5e9b6f3c2d10"
	return uevent.Record{Event: &e}
}

// Synthetic events change nothing: a synthetic remove of an attached
// keyboard, a synthetic unbind of the tablet and a synthetic add of a
// device already there leave the host, and the decisions, as they were.
func TestSyntheticEventsChangeNothing(t *testing.T) {
	root := realHost(t)
	evs, err := uevent.Scan(usbsysfs.NewFS(root))
	if err != nil {
		t.Fatal(err)
	}
	byName := map[string]uevent.Event{}
	for _, e := range evs {
		byName[e.Name()] = e
	}
	recs := recordColdplug(t, root, synthetic(byName["1-1"], "remove"), synthetic(byName["1-1:1.0"], "remove"),
		synthetic(byName["1-2:1.0"], "unbind"), synthetic(byName["1-2"], "add"), synthetic(byName["4-2"], "remove"))
	live, replayed, liveRoot, replayRoot := runBoth(t, recs)
	if l, r := drivers(t, liveRoot), drivers(t, replayRoot); !slices.Equal(l, r) {
		t.Errorf("drivers differ\nlive:     %v\nreplayed: %v", l, r)
	}
	if live.ListText["desk"] != replayed.ListText["desk"] || !strings.Contains(replayed.ListText["desk"], "Port 1: Bus 001 Device 002") {
		t.Errorf("usb-list differs\nlive:\n%s\nreplayed:\n%s", live.ListText["desk"], replayed.ListText["desk"])
	}
	if ld, rd := decisions(live), decisions(replayed); !slices.Equal(ld, rd) {
		t.Errorf("decisions differ\nlive:\n%s\nreplayed:\n%s", strings.Join(ld, "\n"), strings.Join(rd, "\n"))
	}
	for _, d := range decisions(replayed) {
		if f := strings.Fields(d); f[1] == "cleared" || f[1] == "left" || f[1] == "gone" {
			t.Errorf("a synthetic event taken for a change: %s", d)
		}
	}
}

// A trace that begins with synthetic adds (udevadm trigger, recorded)
// finds its devices as they were: present, bound.
func TestSyntheticAddOfAnAbsentDevice(t *testing.T) {
	root := realHost(t)
	evs, err := uevent.Scan(usbsysfs.NewFS(root))
	if err != nil {
		t.Fatal(err)
	}
	var recs []uevent.Record
	for _, e := range evs {
		if e.Name() == "usb1" || e.Name() == "1-0:1.0" || e.Name() == "1-2" || e.Name() == "1-2:1.0" {
			recs = append(recs, synthetic(e, "add"))
		}
	}
	p, err := policy.Parse("desk.toml", []byte(deskPolicy), nil)
	if err != nil {
		t.Fatal(err)
	}
	s := xenstoretest.Embedded(t)
	out := t.TempDir()
	if _, err := replay.Run(context.Background(), recs, replay.Options{Policy: p, Root: out,
		Dial: func(ctx context.Context) (*xenstore.Conn, error) { return s.Dial(t), nil }}); err != nil {
		t.Fatal(err)
	}
	if got := drivers(t, out); !slices.Equal(got, []string{"1-0:1.0=hub", "1-2:1.0=usbhid"}) {
		t.Errorf("drivers %v", got)
	}
}

// A host whose root hub makes new interfaces deauthorized (a device
// plugged since is inert), recorded with --coldplug, replays as the live
// agent sees it: the interfaces made before keep their drivers, the inert
// one stays inert.
func TestColdplugTraceKeepsAuthorization(t *testing.T) {
	root := realHost(t)
	k := fakekernel.NewKernel(root)
	for _, w := range [][2]string{{"usb1/interface_authorized_default", "0"}, {"1-2/authorized", "0"}, {"1-2/authorized", "1"}} {
		if err := k.WriteAttr(filepath.Join(root, "bus/usb/devices", w[0]), []byte(w[1])); err != nil {
			t.Fatal(err)
		}
	}
	recs := recordColdplug(t, root)
	// The live agent's host is the same one.
	_, _, liveRoot, replayRoot := runBoth(t, recs, func(live string) {
		k := fakekernel.NewKernel(live)
		for _, w := range [][2]string{{"usb1/interface_authorized_default", "0"}, {"1-2/authorized", "0"}, {"1-2/authorized", "1"}} {
			if err := k.WriteAttr(filepath.Join(live, "bus/usb/devices", w[0]), []byte(w[1])); err != nil {
				t.Fatal(err)
			}
		}
	})
	l, r := drivers(t, liveRoot), drivers(t, replayRoot)
	if !slices.Equal(l, r) {
		t.Errorf("drivers differ\nlive:     %v\nreplayed: %v", l, r)
	}
	if !slices.Contains(r, "1-2:1.0=!") || !slices.Contains(r, "1-1:1.0=usbback") {
		t.Errorf("replayed %v: want the tablet inert, the keyboard attached", r)
	}
}

// A device's add without BUSNUM (an older kernel's, or a capture that
// dropped it) still gives the device its bus, the busid's.
func TestAddWithoutBusnum(t *testing.T) {
	root := t.TempDir()
	h, err := replay.NewHost(root)
	if err != nil {
		t.Fatal(err)
	}
	const p = "/devices/pci0000:00/0000:00:14.0/usb3/3-4"
	e, err := uevent.Parse([]byte("add@" + p + "\x00ACTION=add\x00DEVPATH=" + p + "\x00SUBSYSTEM=usb\x00DEVTYPE=usb_device\x00PRODUCT=46d/c31c/6400\x00TYPE=0/0/0\x00DEVNUM=005\x00SEQNUM=7\x00"))
	if err != nil {
		t.Fatal(err)
	}
	if err := h.Apply(e, nil); err != nil {
		t.Fatal(err)
	}
	if bus, dev, err := usbsysfs.NewFS(root).Addr("3-4"); err != nil || bus != 3 || dev != 5 {
		t.Errorf("bus %d addr %d, %v; want 3 and 5", bus, dev, err)
	}
}
