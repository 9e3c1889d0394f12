package replay_test

import (
	"bytes"
	"context"
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/usbhotplugd/usbhotplugd/internal/replay"
	"github.com/usbhotplugd/usbhotplugd/internal/uevent"
	"github.com/usbhotplugd/usbhotplugd/internal/xenstore"
	"github.com/usbhotplugd/usbhotplugd/internal/xenstore/xenstoretest"
	"github.com/usbhotplugd/usbhotplugd/policy"
	"github.com/usbhotplugd/usbhotplugd/rules"
)

var update = flag.Bool("update", false, "rewrite the golden timelines")

// traces are the recorded days: each with the shipped policy it runs
// under, and its expected timeline and final usb-lists in NAME.golden.
var traces = []struct{ name, trace, policy string }{
	{"kiosk-day", "rules:demo/kiosk-day.jsonl", "examples/kiosk.toml"},
	{"vdi-storm", "testdata/traces/vdi-storm.jsonl", "examples/vdi.toml"},
	{"hvm-desk", "testdata/traces/hvm-desk.jsonl", "testdata/traces/hvm-desk.toml"},
}

func readTrace(t *testing.T, name string) []uevent.Record {
	var b []byte
	var err error
	if rest, ok := strings.CutPrefix(name, "rules:"); ok {
		b, err = rules.Read(rest)
	} else {
		b, err = os.ReadFile(name)
	}
	if err != nil {
		t.Fatal(err)
	}
	recs, err := uevent.ReadTrace(bytes.NewReader(b), name)
	if err != nil {
		t.Fatal(err)
	}
	return recs
}

func TestTraces(t *testing.T) {
	for _, tr := range traces {
		t.Run(tr.name, func(t *testing.T) {
			recs := readTrace(t, tr.trace)
			var p *policy.Policy
			var err error
			if strings.HasPrefix(tr.policy, "testdata/") {
				p, err = policy.ParseFile(tr.policy)
			} else {
				p, err = rules.Parse(tr.policy)
			}
			if err != nil {
				t.Fatal(err)
			}
			golden := filepath.Join("testdata/traces", tr.name+".golden")
			xenstoretest.ForEach(t, func(t *testing.T, s xenstoretest.Store) {
				ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
				defer cancel()
				res, err := replay.Run(ctx, recs, replay.Options{Policy: p, Root: t.TempDir(),
					Dial: func(ctx context.Context) (*xenstore.Conn, error) { return s.Dial(t), nil }})
				if err != nil {
					t.Fatal(err)
				}
				var got bytes.Buffer
				if err := res.WriteText(&got); err != nil {
					t.Fatal(err)
				}
				if *update && s.Name() == "embedded" {
					if err := os.WriteFile(golden, got.Bytes(), 0o644); err != nil {
						t.Fatal(err)
					}
					return
				}
				want, err := os.ReadFile(golden)
				if err != nil {
					t.Fatalf("%v (run go test ./internal/replay -update)", err)
				}
				if got.String() != string(want) {
					t.Errorf("timeline differs from %s:\n--- got\n%s\n--- want\n%s", golden, got.String(), want)
				}
			})
		})
	}
}

// A replay is a pure function of its trace and policy: twice the same.
func TestReplayIsDeterministic(t *testing.T) {
	recs := readTrace(t, "testdata/traces/vdi-storm.jsonl")
	p, err := rules.Parse("examples/vdi.toml")
	if err != nil {
		t.Fatal(err)
	}
	var outs []string
	for range 3 {
		s := xenstoretest.Embedded(t)
		res, err := replay.Run(context.Background(), recs, replay.Options{Policy: p, Root: t.TempDir(),
			Dial: func(ctx context.Context) (*xenstore.Conn, error) { return s.Dial(t), nil }})
		if err != nil {
			t.Fatal(err)
		}
		var b bytes.Buffer
		res.WriteText(&b)
		outs = append(outs, b.String())
	}
	if outs[0] != outs[1] || outs[1] != outs[2] {
		t.Errorf("replays differ:\n%s\n---\n%s\n---\n%s", outs[0], outs[1], outs[2])
	}
}

func TestReplayRefusesBadTraces(t *testing.T) {
	p, err := rules.Parse("examples/kiosk.toml")
	if err != nil {
		t.Fatal(err)
	}
	bad := `{"time":"2026-11-24T08:00:00Z","domain":{"action":"destroy","name":"kiosk"}}` + "\n"
	recs, err := uevent.ReadTrace(strings.NewReader(bad), "bad.jsonl")
	if err != nil {
		t.Fatal(err)
	}
	s := xenstoretest.Embedded(t)
	_, err = replay.Run(context.Background(), recs, replay.Options{Policy: p, Root: t.TempDir(),
		Dial: func(ctx context.Context) (*xenstore.Conn, error) { return s.Dial(t), nil }})
	if err == nil || !strings.Contains(err.Error(), "record 1 destroys kiosk, which is not running") {
		t.Fatalf("err = %v", err)
	}
}
