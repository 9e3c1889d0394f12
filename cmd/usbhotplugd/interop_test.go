package main

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/usbhotplugd/usbhotplugd/internal/fakekernel"
	"github.com/usbhotplugd/usbhotplugd/internal/sim"
	"github.com/usbhotplugd/usbhotplugd/internal/usbsysfs"
	"github.com/usbhotplugd/usbhotplugd/internal/xenstore"
	"github.com/usbhotplugd/usbhotplugd/internal/xenstore/xenstoretest"
)

// replayXL makes, on xs and the fake kernel, the very requests and sysfs
// writes that xl made in a captured step: xl itself, working on our tree.
// The simulated backends answer as they answered xl.
func replayXL(t *testing.T, xs *xenstore.Conn, k *fakekernel.Kernel, root, step string, backends *sim.Backends) {
	t.Helper()
	ctx := context.Background()
	var tx *xenstore.Tx
	ops := func() interface {
		Write(context.Context, string, []byte) error
		Rm(context.Context, string) error
		Mkdir(context.Context, string) error
		SetPerms(context.Context, string, xenstore.Perms) error
	} {
		if tx != nil {
			return tx
		}
		return xs
	}
	settle := func() {
		c, cancel := context.WithTimeout(ctx, 10*time.Second)
		defer cancel()
		if err := backends.WaitIdle(c); err != nil {
			t.Fatal(err)
		}
	}
	for _, line := range strings.Split(readGolden(t, step, "xs-requests.mutations.txt"), "\n") {
		f := strings.Fields(line)
		if len(f) < 3 || f[0] != "xl" {
			continue
		}
		op := f[2]
		args := line[strings.Index(line, "(")+1 : strings.LastIndex(line, ")")]
		path, value, _ := strings.Cut(args, " ")
		var err error
		switch op {
		case "TRANSACTION_START":
			tx, err = xs.Begin(ctx)
		case "TRANSACTION_END":
			err = tx.Commit(ctx)
			tx = nil
			settle()
		case "WRITE":
			err = ops().Write(ctx, path, []byte(value))
		case "RM":
			// libxl ignores a missing node here.
			if err = ops().Rm(ctx, path); errors.Is(err, syscall.ENOENT) {
				err = nil
			}
		case "MKDIR":
			err = ops().Mkdir(ctx, path)
		case "SET_PERMS":
			var ps xenstore.Perms
			if ps, err = xenstore.ParsePerms(strings.Join(strings.Fields(value), " ")); err == nil {
				err = ops().SetPerms(ctx, path, ps)
			}
		case "WATCH", "UNWATCH":
			settle()
		default:
			t.Fatalf("%s: request %s not replayed", step, op)
		}
		if err != nil {
			t.Fatalf("%s: replaying %q: %v", step, line, err)
		}
	}
	for _, line := range strings.Split(strings.TrimSpace(readGolden(t, step, "sysfs-writes.txt")), "\n") {
		f := strings.Fields(line)
		if len(f) < 4 {
			continue
		}
		p := filepath.Join(root, strings.TrimPrefix(f[2], "/sys/"))
		if err := k.WriteAttr(p, []byte(strings.Trim(f[3], "'"))); err != nil {
			t.Fatalf("%s: replaying %q: %v", step, line, err)
		}
	}
	settle()
}

// Interop both ways on one store: what our commands made, xl's own
// requests detach and remove; what xl's requests made, our commands list,
// detach and remove. Either way each tree is byte for byte xl's.
func TestInteropWithXL(t *testing.T) {
	golden := filepath.Join(xlCaptures, "main")
	step := func(n string) string { m, _ := filepath.Glob(filepath.Join(golden, n+"-*")); return m[0] }
	for _, kind := range xenstoretest.Kinds() {
		var store xenstoretest.Store
		setup := func(t *testing.T) (*xenstore.Conn, string, *fakekernel.Kernel, *sim.Backends) {
			store = xenstoretest.Start(t, kind) // a fresh store for each direction
			xs := store.Dial(t)
			seedXL(t, xs)
			root, k := xlHost(t)
			b := &sim.Backends{XS: store.Dial(t)}
			run, err := b.Start(context.Background())
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { run.Stop() })
			sysfsWriter = k
			t.Cleanup(func() { sysfsWriter = nil })
			return xs, root, k, b
		}
		ours := func(t *testing.T, root string, args ...string) string {
			t.Helper()
			full := append([]string{args[0], "--xenstore", store.SocketPath(), "--sysfs", root}, args[1:]...)
			code, out, errs := runCmd(t, full...)
			if code != 0 {
				t.Fatalf("%v: exit %d: %s", args, code, errs)
			}
			return out
		}
		same := func(t *testing.T, xs *xenstore.Conn, stepDir string) {
			t.Helper()
			if want, got := tree(kind, readGolden(t, stepDir, "xenstore.txt")), tree(kind, dump(t, xs)); got != want {
				t.Fatalf("tree differs from xl's %s:\n%s", filepath.Base(stepDir), diffLines(want, got))
			}
		}
		t.Run(kind+"/ours-then-xl", func(t *testing.T) {
			xs, root, k, b := setup(t)
			ours(t, root, "usbctrl-attach", "kiosk", "version=2", "ports=4")
			ours(t, root, "usbdev-attach", "kiosk", "hostbus=1", "hostaddr=6")
			if err := b.WaitIdle(context.Background()); err != nil {
				t.Fatal(err)
			}
			same(t, xs, step("02"))
			replayXL(t, xs, k, root, step("04"), b)
			same(t, xs, step("04"))
			replayXL(t, xs, k, root, step("05"), b)
			same(t, xs, step("05"))
			if d, _ := usbsysfs.NewFS(root).Driver("1-1.6:1.0"); d != "usbhid" {
				t.Fatalf("keyboard left on %q", d)
			}
		})
		t.Run(kind+"/xl-then-ours", func(t *testing.T) {
			xs, root, k, b := setup(t)
			replayXL(t, xs, k, root, step("01"), b)
			replayXL(t, xs, k, root, step("02"), b)
			same(t, xs, step("02"))
			if out := ours(t, root, "usb-list", "kiosk"); out != readGolden(t, step("03"), "usb-list.txt") {
				t.Fatalf("usb-list of xl's controller:\n%s", out)
			}
			before := len(k.Writes())
			ours(t, root, "usbdev-detach", "kiosk", "0", "1")
			same(t, xs, step("04"))
			var got []string
			for _, w := range k.Writes()[before:] {
				got = append(got, fmt.Sprintf("/sys/%s '%s'", w.Path, w.Data))
			}
			if strings.Join(got, " ") != "/sys/bus/usb/drivers/usbback/unbind '1-1.6:1.0' /sys/bus/usb/drivers/usbhid/bind '1-1.6:1.0'" {
				t.Fatalf("sysfs writes: %v", got)
			}
			ours(t, root, "usbctrl-detach", "kiosk", "0")
			same(t, xs, step("05"))
		})
	}
}
