package replay_test

import (
	"context"
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/usbhotplugd/usbhotplugd/internal/replay"
	"github.com/usbhotplugd/usbhotplugd/internal/uevent"
	"github.com/usbhotplugd/usbhotplugd/internal/xenstore"
	"github.com/usbhotplugd/usbhotplugd/internal/xenstore/xenstoretest"
	"github.com/usbhotplugd/usbhotplugd/policy"
)

// captureRecords are the events of steps of the real kernel's captures,
// as trace records; without bind and unbind when binds is false.
func captureRecords(t *testing.T, binds bool, steps ...string) []uevent.Record {
	var out []uevent.Record
	for _, s := range steps {
		b, err := os.ReadFile(filepath.Join("../uevent/testdata/real-kernel", s, "uevents.bin"))
		if err != nil {
			t.Fatal(err)
		}
		dgs, err := uevent.ReadRecords(b)
		if err != nil {
			t.Fatal(err)
		}
		for _, d := range dgs {
			e, err := uevent.Parse(d)
			if err != nil {
				t.Fatal(err)
			}
			if !binds && (e.Action == "bind" || e.Action == "unbind") {
				continue
			}
			out = append(out, uevent.Record{Event: &e})
		}
	}
	return out
}

// A kernel before 4.14 sends no bind or unbind event: its trace is the
// adds and removes alone. Replayed, its devices are decided as a newer
// kernel's are, each once its interfaces are all there (the storage
// stick by its interface, which a decision at its device's add could
// not see), and before it leaves, as the agent decides them live on such
// a kernel, where sysfs shows the device bound all the same.
func TestTraceOfAKernelWithoutBindEvents(t *testing.T) {
	p, err := policy.Parse("p.toml", []byte(`
[[rule]]
name = "no-storage"
action = "deny"
match = { interface = "storage" }

[[rule]]
name = "qemu"
action = "attach"
match = { id = "46f4:*" }
target = { domain = "kiosk" }

[[rule]]
name = "mouse"
action = "attach"
match = { id = "0627:0001" }
target = { domain = "kiosk" }
`), nil)
	if err != nil {
		t.Fatal(err)
	}
	// The mouse is unplugged right after its plug: no event of another
	// device comes between.
	steps := []string{"060-hotplug_mouse-add-xhci-p6", "061-hotplug_mouse-del-xhci-p6", "064-hotplug_storage-add-xhci-p7", "068-hotplug_audio-add-multi-interface"}
	xenstoretest.ForEach(t, func(t *testing.T, s xenstoretest.Store) {
		var got [2][]string
		for i, binds := range []bool{true, false} {
			ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
			defer cancel()
			res, err := replay.Run(ctx, captureRecords(t, binds, steps...), replay.Options{Policy: p, Root: t.TempDir(),
				Dial: func(ctx context.Context) (*xenstore.Conn, error) { return s.Dial(t), nil }})
			if err != nil {
				t.Fatal(err)
			}
			got[i] = decisions(res)
		}
		if len(got[0]) != 4 || !slices.Equal(got[0], got[1]) {
			t.Errorf("decisions with bind events:\n%q\nwithout:\n%q", got[0], got[1])
		}
	})
}
