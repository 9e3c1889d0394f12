package main

import (
	"context"
	"os/exec"
	"testing"
	"time"

	"github.com/usbhotplugd/usbhotplugd/internal/fakekernel"
	"github.com/usbhotplugd/usbhotplugd/internal/sim"
	"github.com/usbhotplugd/usbhotplugd/internal/xenstore/xenstoretest"
)

// The usbdev-attach command as a whole process (fork, exec, dial, work,
// exit) against the real C xenstored, to set beside the 6.04 ms median of
// xl usbdev-attach in the captures' timings. The sysfs writes go to the
// fixture's plain files, as they did for xl.
func BenchmarkUsbdevAttachProcess(b *testing.B) {
	s := xenstoretest.Real(b)
	ctx := context.Background()
	xs := s.Dial(b)
	seedXL(b, xs)
	root := b.TempDir()
	if err := fakekernel.XL(root); err != nil {
		b.Fatal(err)
	}
	backends := &sim.Backends{XS: s.Dial(b)}
	run, err := backends.Start(ctx)
	if err != nil {
		b.Fatal(err)
	}
	defer run.Stop()
	common := []string{"--xenstore", s.SocketPath(), "--sysfs", root}
	cmd := func(args ...string) {
		out, err := exec.Command(binary, append([]string{args[0]}, append(common, args[1:]...)...)...).CombinedOutput()
		if err != nil {
			b.Fatalf("%v: %v\n%s", args, err, out)
		}
	}
	cmd("usbctrl-attach", "kiosk", "version=2", "ports=4")
	var attach time.Duration
	for b.Loop() {
		t0 := time.Now()
		cmd("usbdev-attach", "kiosk", "hostbus=1", "hostaddr=6")
		attach += time.Since(t0)
		cmd("usbdev-detach", "kiosk", "0", "1")
	}
	b.ReportMetric(float64(attach.Microseconds())/float64(b.N)/1000, "attach-ms")
}
