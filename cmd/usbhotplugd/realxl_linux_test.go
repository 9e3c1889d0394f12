package main

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/usbhotplugd/usbhotplugd/internal/sim"
	"github.com/usbhotplugd/usbhotplugd/internal/xenstore/xenstoretest"
	"github.com/usbhotplugd/usbhotplugd/internal/xltest"
)

// The real xl 4.17 and our commands, interleaved on one guest on each
// store: each reads and undoes what the other did, and at every step
// `xl usb-list` and ours print the same bytes.
func TestRealXLBesideOurCommands(t *testing.T) {
	// On the embedded server too: xl's own client library talks to it.
	for _, kind := range xenstoretest.Kinds() {
		t.Run(kind, func(t *testing.T) {
			store := xenstoretest.Start(t, kind)
			xs := store.Dial(t)
			seedXL(t, xs)
			root, k := xlHost(t)
			xl := xltest.Start(t, store.SocketPath(), root, sim.KioskDomain)
			xl.SetKernel(k)
			sysfsWriter = k
			defer func() { sysfsWriter = nil }()
			b := &sim.Backends{XS: store.Dial(t)}
			sims, err := b.Start(t.Context())
			if err != nil {
				t.Fatal(err)
			}
			defer sims.Stop()
			ours := func(args ...string) string {
				t.Helper()
				full := append([]string{args[0], "--xenstore", store.SocketPath(), "--sysfs", root}, args[1:]...)
				code, out, errs := runCmd(t, full...)
				if code != 0 {
					t.Fatalf("usbhotplugd %v: exit %d: %s", args, code, errs)
				}
				if err := b.WaitIdle(t.Context()); err != nil {
					t.Fatal(err)
				}
				return out
			}
			theirs := func(args ...string) []string {
				t.Helper()
				// libxl waits for a new controller's backend to be at
				// InitWait exactly, and times out when the guest's
				// frontend took it on before libxl read it: the guest
				// reacts only once xl is done, as a guest slower than xl
				// does.
				b.Hold()
				code, _, errs := xl.Run(t, args...)
				b.Release()
				if code != 0 {
					t.Fatalf("xl %v: exit %d: %s", args, code, errs)
				}
				writes := xl.Writes()
				if err := b.WaitIdle(t.Context()); err != nil {
					t.Fatal(err)
				}
				return writes
			}
			// same compares the two listings and returns ours.
			same := func(after string) string {
				t.Helper()
				code, want, errs := xl.Run(t, "usb-list", "1")
				if code != 0 {
					t.Fatalf("after %s: xl usb-list: exit %d: %s", after, code, errs)
				}
				got := ours("usb-list", "1")
				if got != want {
					t.Fatalf("after %s: usb-list differs from xl's:\n%s", after, diffLines(want, got))
				}
				return got
			}
			driver := func(after, want string) {
				t.Helper()
				l, err := os.Readlink(filepath.Join(root, "bus/usb/devices/1-1.6:1.0/driver"))
				if err != nil || filepath.Base(l) != want {
					t.Fatalf("after %s: 1-1.6:1.0 is bound to %q (%v), want %s", after, l, err, want)
				}
			}

			ours("usbctrl-attach", "kiosk", "version=2", "ports=4")
			same("our usbctrl-attach")
			w := theirs("usbdev-attach", "1", "hostbus=1", "hostaddr=6")
			if want := []string{"bus/usb/drivers/usbhid/unbind 1-1.6:1.0", "bus/usb/drivers/usbback/bind 1-1.6:1.0"}; !slices.Equal(w, want) {
				t.Fatalf("xl's usbdev-attach wrote %q, want %q", w, want)
			}
			driver("xl's usbdev-attach", "usbback")
			if out := same("xl's usbdev-attach"); !strings.Contains(out, "Port 1: Bus 001 Device 006") {
				t.Fatalf("xl's attach is not listed:\n%s", out)
			}
			ours("usbdev-detach", "kiosk", "0", "1")
			driver("our usbdev-detach", "usbhid")
			same("our usbdev-detach of xl's device")
			ours("usbdev-attach", "kiosk", "hostbus=1", "hostaddr=6")
			same("our usbdev-attach")
			theirs("usbdev-detach", "1", "0", "1")
			driver("xl's usbdev-detach", "usbhid")
			same("xl's usbdev-detach of our device")
			theirs("usbctrl-attach", "1", "version=1", "ports=2")
			if out := same("xl's usbctrl-attach"); !strings.Contains(out, "\n1      pv           0   4     1       2") {
				t.Fatalf("xl's controller is not listed:\n%s", out)
			}
			ours("usbdev-attach", "kiosk", "hostbus=1", "hostaddr=6", "controller=1")
			same("our usbdev-attach to xl's controller")
			theirs("usbctrl-detach", "1", "1")
			driver("xl's usbctrl-detach", "usbhid")
			same("xl's usbctrl-detach of the controller our device was at")
			theirs("usbdev-attach", "1", "hostbus=1", "hostaddr=6")
			ours("usbctrl-detach", "kiosk", "0")
			driver("our usbctrl-detach", "usbhid")
			if out := same("our usbctrl-detach of the controller xl's device was at"); out != "" {
				t.Fatalf("a controller is left:\n%s", out)
			}

			// A qusb controller (the guest's QEMU serving PVUSB): xl lists
			// and detaches what ours attached there.
			if err := sim.SeedQEMU(t.Context(), xs, 1); err != nil {
				t.Fatal(err)
			}
			ours("usbctrl-attach", "kiosk", "type=qusb", "version=2", "ports=2")
			ours("usbdev-attach", "kiosk", "hostbus=1", "hostaddr=6")
			if out := same("our attach to a qusb controller"); !strings.Contains(out, "qusb") || !strings.Contains(out, "Port 1: Bus 001 Device 006") {
				t.Fatalf("the qusb controller and its device are not listed:\n%s", out)
			}
			theirs("usbdev-detach", "1", "0", "1")
			same("xl's detach from a qusb controller")
			theirs("usbctrl-detach", "1", "0")
			if out := same("xl's usbctrl-detach of a qusb controller"); out != "" {
				t.Fatalf("a controller is left:\n%s", out)
			}
		})
	}
}
