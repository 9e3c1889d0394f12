package assign_test

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/usbhotplugd/usbhotplugd/internal/assign"
	"github.com/usbhotplugd/usbhotplugd/internal/fakekernel"
	"github.com/usbhotplugd/usbhotplugd/internal/sim"
	"github.com/usbhotplugd/usbhotplugd/internal/usbsysfs"
	"github.com/usbhotplugd/usbhotplugd/internal/xenstore"
	"github.com/usbhotplugd/usbhotplugd/internal/xenstore/xenstoretest"
	"github.com/usbhotplugd/usbhotplugd/policy"
)

var desk = sim.Domain{ID: 2, Name: "desk", UUID: "8b0e6a52-77c1-4d2e-9a0f-3c5d1e2f4a61", Type: "pv"}

// env is a dom0 with the guests kiosk (1) and desk (2), the xl captures'
// host plus four more keyboards (1-2 … 1-5), a fake kernel, and the
// simulated backends unless noBackend.
type env struct {
	xs       *xenstore.Conn
	h        *assign.Host
	k        *fakekernel.Kernel
	backends *sim.Backends
	initial  string
	warnings []string
	mu       sync.Mutex
}

func keyboards(n int) []fakekernel.Dev {
	var out []fakekernel.Dev
	for i := range n {
		out = append(out, fakekernel.Dev{BusID: fmt.Sprintf("1-%d", i+2), DevNum: 10 + i, Vendor: "046d", Product: "c31c", Class: "00",
			Interfaces: []fakekernel.Intf{{Class: "03", SubClass: "01", Protocol: "01", Driver: "usbhid"}}})
	}
	return out
}

func newEnv(t *testing.T, s xenstoretest.Store, noBackend bool) *env {
	t.Helper()
	ctx := context.Background()
	xs := s.Dial(t)
	for _, f := range []func() error{
		func() error { return sim.SeedDom0(ctx, xs) },
		func() error { return sim.SeedDomain(ctx, xs, sim.KioskDomain) },
		func() error { return sim.SeedDomain(ctx, xs, desk) },
	} {
		if err := f(); err != nil {
			t.Fatal(err)
		}
	}
	root := t.TempDir()
	if err := fakekernel.XL(root, keyboards(4)...); err != nil {
		t.Fatal(err)
	}
	k := fakekernel.NewKernel(root)
	e := &env{xs: xs, k: k}
	e.h = &assign.Host{XS: xs, Sys: usbsysfs.NewFS(root).WithWriter(k), InitTimeout: 300 * time.Millisecond, DestroyTimeout: 300 * time.Millisecond,
		Warn: func(m string) { e.mu.Lock(); e.warnings = append(e.warnings, m); e.mu.Unlock() }}
	if !noBackend {
		e.backends = &sim.Backends{XS: s.Dial(t)}
		run, err := e.backends.Start(ctx)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { run.Stop() })
	}
	// Removing the last controller also removes /libxl/<domid>/device,
	// left empty, as libxl's path cleanup does.
	e.initial = strings.Replace(e.dump(t), "/libxl/1/device = \"\"   (n0)\n", "", 1)
	return e
}

func (e *env) dump(t *testing.T) string {
	t.Helper()
	var b strings.Builder
	if err := e.xs.Dump(context.Background(), &b, "/"); err != nil {
		t.Fatal(err)
	}
	return b.String()
}

func (e *env) read(t *testing.T, p string) (string, bool) {
	t.Helper()
	v, err := e.xs.Read(context.Background(), p)
	if errors.Is(err, syscall.ENOENT) {
		return "", false
	}
	if err != nil {
		t.Fatal(err)
	}
	return string(v), true
}

func (e *env) driver(t *testing.T, intf string) string {
	t.Helper()
	d, err := e.h.Sys.Driver(intf)
	if err != nil {
		t.Fatal(err)
	}
	return d
}

func (e *env) idle(t *testing.T) {
	t.Helper()
	if e.backends == nil {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := e.backends.WaitIdle(ctx); err != nil {
		t.Fatal(err)
	}
}

func (e *env) writes() string {
	var s []string
	for _, w := range e.k.Writes() {
		s = append(s, w.Path+"="+w.Data)
	}
	return strings.Join(s, " ")
}

func dev(busid string) policy.DevSpec { return policy.DevSpec{BusID: busid, Controller: -1} }

// Add, attach, list, detach, remove: the device goes back to usbhid, the
// records go, and the tree is as it was.
func TestRoundTrip(t *testing.T) {
	xenstoretest.ForEach(t, func(t *testing.T, s xenstoretest.Store) {
		ctx := context.Background()
		e := newEnv(t, s, false)
		if _, err := e.h.AddController(ctx, 1, policy.CtrlSpec{Version: 2, Ports: 4}, true); err != nil {
			t.Fatal(err)
		}
		a, err := e.h.Attach(ctx, 1, policy.DevSpec{HostBus: 1, HostAddr: 6, Controller: -1})
		if err != nil || a.Controller != 0 || a.Port != 1 || a.BusID != "1-1.6" || a.Type != "pv" {
			t.Fatalf("attach: %+v %v", a, err)
		}
		if d := e.driver(t, "1-1.6:1.0"); d != "usbback" {
			t.Fatalf("interface driver %q", d)
		}
		if v, _ := e.read(t, "/libxl/usbback/1-1_6/1-1_6@1_0/driver_path"); v != "/sys/bus/usb/drivers/usbhid" {
			t.Fatalf("driver record %q", v)
		}
		e.idle(t)
		l, err := e.h.List(ctx, 1)
		if err != nil {
			t.Fatal(err)
		}
		var b strings.Builder
		assign.WriteList(&b, l)
		if want := "Devid  Type         BE  state usb-ver ports\n0      pv           0   4     2       4    \n  Port 1: Bus 001 Device 006\n  Port 2:\n  Port 3:\n  Port 4:\n"; b.String() != want {
			t.Fatalf("usb-list:\n%q\nwant\n%q", b.String(), want)
		}
		if err := e.h.Detach(ctx, 1, 0, 1); err != nil {
			t.Fatal(err)
		}
		if d := e.driver(t, "1-1.6:1.0"); d != "usbhid" {
			t.Fatalf("after detach: driver %q", d)
		}
		if _, ok := e.read(t, "/libxl/usbback/1-1_6"); ok {
			t.Fatal("driver record left behind")
		}
		if err := e.h.Detach(ctx, 1, 0, 1); !errors.Is(err, assign.ErrPortEmpty) {
			t.Fatalf("detach of an empty port: %v", err)
		}
		if err := e.h.RemoveController(ctx, 1, 0); err != nil {
			t.Fatal(err)
		}
		// What xl leaves too: the emptied /libxl/usbback.
		if got := strings.Replace(e.dump(t), "/libxl/usbback = \"\"   (n0)\n", "", 1); got != e.initial {
			t.Fatalf("tree after removal differs from the start:\n%s", got)
		}
	})
}

// usbbackRefuses is usbback's probe refusing every interface.
func usbbackRefuses(w fakekernel.Write) error {
	if w.Path == "bus/usb/drivers/usbback/bind" {
		return syscall.ENODEV
	}
	return nil
}

// pvEnv is an env whose guest 1 has a pv controller of 2 ports, its
// frontend connected (usbback serves a controller's ports only then).
func pvEnv(t *testing.T, s xenstoretest.Store) *env {
	t.Helper()
	e := newEnv(t, s, false)
	if _, err := e.h.AddController(context.Background(), 1, policy.CtrlSpec{Ports: 2}, true); err != nil {
		t.Fatal(err)
	}
	e.idle(t)
	return e
}

// usbback refuses the interface: libxl's rollback, exactly.
func TestBindRefusedRollsBack(t *testing.T) {
	xenstoretest.ForEach(t, func(t *testing.T, s xenstoretest.Store) {
		ctx, e := context.Background(), pvEnv(t, s)
		e.k.Fail = usbbackRefuses
		_, err := e.h.Attach(ctx, 1, dev("1-1.6"))
		if !errors.Is(err, syscall.ENODEV) || !strings.Contains(err.Error(), "rolled back") {
			t.Fatalf("attach: %v", err)
		}
		if v, _ := e.read(t, "/local/domain/0/backend/vusb/1/0/port/1"); v != "" {
			t.Fatalf("port left at %q", v)
		}
		if _, ok := e.read(t, "/libxl/usbback/1-1_6"); ok {
			t.Fatal("record left")
		}
		if d := e.driver(t, "1-1.6:1.0"); d != "usbhid" {
			t.Fatalf("driver %q", d)
		}
		// The bind is tried again while usbback may not know the port
		// yet (see TestBindWaitsForUsbbacksPort), then rolled back.
		want := `^bus/usb/drivers/usbhid/unbind=1-1\.6:1\.0 (bus/usb/drivers/usbback/bind=1-1\.6:1\.0 )+bus/usb/drivers/usbhid/bind=1-1\.6:1\.0$`
		if got := e.writes(); !regexp.MustCompile(want).MatchString(got) {
			t.Fatalf("writes:\n%s\nwant\n%s", got, want)
		}
	})
}

// usbback learns a port through its watch on the store, so the bind right
// after the port's write can find its table behind and be refused as a
// device in no port: the bind is tried again until usbback knows it.
func TestBindWaitsForUsbbacksPort(t *testing.T) {
	xenstoretest.ForEach(t, func(t *testing.T, s xenstoretest.Store) {
		ctx, e := context.Background(), pvEnv(t, s)
		table, behind := fakekernel.StorePorts(ctx, s.Dial(t)), 3
		e.k.UsbbackPorts = func() ([]fakekernel.UsbbackPort, error) {
			if behind > 0 {
				behind--
				return nil, nil
			}
			return table()
		}
		a, err := e.h.Attach(ctx, 1, dev("1-1.6"))
		if err != nil || a.Port != 1 {
			t.Fatalf("attach: %+v %v", a, err)
		}
		if d := e.driver(t, "1-1.6:1.0"); d != "usbback" {
			t.Fatalf("driver %q", d)
		}
		if got := strings.Count(e.writes(), "usbback/bind="); got != 4 {
			t.Fatalf("%d binds to usbback, want 4 (3 refused while its table was behind): %s", got, e.writes())
		}
	})
}

// onWrite is a fake kernel with a hand that acts just before one write.
type onWrite struct {
	k    *fakekernel.Kernel
	path string // the write's path under the root
	do   func()
}

func (w *onWrite) WriteAttr(path string, data []byte) error {
	if w.do != nil && strings.HasSuffix(path, "/"+w.path) {
		do := w.do
		w.do = nil
		do()
	}
	return w.k.WriteAttr(path, data)
}

// An interface that another hand moves between the attach's look and its
// unbind: usbhid is named in the unbind, so the driver that has it now is
// not the one unbound. Put in usbback meanwhile, it is left there; taken
// by another driver, the attach fails and is rolled back.
func TestDriverChangedDuringAttach(t *testing.T) {
	xenstoretest.ForEach(t, func(t *testing.T, s xenstoretest.Store) {
		ctx, e := context.Background(), pvEnv(t, s)
		root := e.h.Sys.Root()
		w := &onWrite{k: e.k, path: "bus/usb/drivers/usbhid/unbind", do: func() {
			for _, a := range [][2]string{{"bus/usb/drivers/usbhid/unbind", "1-1.6:1.0"}, {"bus/usb/drivers/usbback/bind", "1-1.6:1.0"}} {
				if err := e.k.WriteAttr(filepath.Join(root, a[0]), []byte(a[1])); err != nil {
					t.Error(err)
				}
			}
		}}
		e.h.Sys = usbsysfs.NewFS(root).WithWriter(w)
		a, err := e.h.Attach(ctx, 1, dev("1-1.6"))
		if err != nil || a.Port != 1 {
			t.Fatalf("attach: %+v %v", a, err)
		}
		if d := e.driver(t, "1-1.6:1.0"); d != "usbback" {
			t.Fatalf("driver %q", d)
		}
		if got := e.writes(); strings.Contains(got, "usbback/unbind") {
			t.Fatalf("usbback was unbound: %s", got)
		}
	})
}

// A SuperSpeed device is refused by usbback whatever its ports: no wait.
func TestUsbbackRefusalOfSuperSpeedIsFinal(t *testing.T) {
	xenstoretest.ForEach(t, func(t *testing.T, s xenstoretest.Store) {
		ctx, e := context.Background(), pvEnv(t, s)
		speed := filepath.Join(e.h.Sys.Root(), "bus/usb/devices/1-1.6/speed")
		if err := os.WriteFile(speed, []byte("5000\n"), 0o644); err != nil {
			t.Fatal(err)
		}
		e.k.Fail = usbbackRefuses
		_, err := e.h.Attach(ctx, 1, dev("1-1.6"))
		if !errors.Is(err, assign.ErrUsbbackRefused) {
			t.Fatalf("attach: %v", err)
		}
		if got := strings.Count(e.writes(), "usbback/bind="); got != 1 {
			t.Fatalf("%d binds to usbback, want 1: %s", got, e.writes())
		}
	})
}

// A device pulled out while attached: the port keeps its busid (as with
// libxl), but later attaches still work, detach clears it, and Repair
// clears such ports in one go.
func TestUnpluggedBetweenSteps(t *testing.T) {
	xenstoretest.ForEach(t, func(t *testing.T, s xenstoretest.Store) {
		ctx := context.Background()
		e := newEnv(t, s, false)
		if _, err := e.h.AddController(ctx, 1, policy.CtrlSpec{Ports: 4}, true); err != nil {
			t.Fatal(err)
		}
		for _, b := range []string{"1-2", "1-3"} {
			if _, err := e.h.Attach(ctx, 1, dev(b)); err != nil {
				t.Fatal(err)
			}
			if err := e.k.Unplug(b); err != nil {
				t.Fatal(err)
			}
		}
		all, err := e.h.Assigned(ctx)
		if err != nil || len(all) != 2 || !all[0].Stale || !all[1].Stale {
			t.Fatalf("assigned: %+v %v", all, err)
		}
		// libxl refuses every attach here; we do not.
		if a, err := e.h.Attach(ctx, 1, dev("1-4")); err != nil || a.Port != 3 {
			t.Fatalf("attach beside stale ports: %+v %v", a, err)
		}
		if err := e.h.Detach(ctx, 1, 0, 1); err != nil {
			t.Fatalf("detach of an unplugged device: %v", err)
		}
		if v, _ := e.read(t, "/local/domain/0/backend/vusb/1/0/port/1"); v != "" {
			t.Fatalf("port 1 = %q", v)
		}
		if _, ok := e.read(t, "/libxl/usbback/1-2"); ok {
			t.Fatal("record of 1-2 left")
		}
		fixed, err := e.h.Repair(ctx)
		if err != nil || len(fixed) != 1 || fixed[0].BusID != "1-3" || fixed[0].Port != 2 {
			t.Fatalf("repair: %+v %v", fixed, err)
		}
		if v, _ := e.read(t, "/local/domain/0/backend/vusb/1/0/port/2"); v != "" {
			t.Fatalf("port 2 = %q after repair", v)
		}
		if v, _ := e.read(t, "/local/domain/0/backend/vusb/1/0/port/3"); v != "1-4" {
			t.Fatalf("port 3 = %q: repair touched a live device", v)
		}
	})
}

// No backend: the add times out and leaves its nodes (as libxl); the
// removal times out twice, removes everything anyway, and says so.
func TestBackendNeverAnswers(t *testing.T) {
	xenstoretest.ForEach(t, func(t *testing.T, s xenstoretest.Store) {
		ctx := context.Background()
		e := newEnv(t, s, true)
		_, err := e.h.AddController(ctx, 1, policy.CtrlSpec{Ports: 4}, true)
		if !errors.Is(err, assign.ErrTimeout) {
			t.Fatalf("add: %v", err)
		}
		if v, ok := e.read(t, "/local/domain/0/backend/vusb/1/0/state"); !ok || v != "1" {
			t.Fatalf("backend state %q %v", v, ok)
		}
		err = e.h.RemoveController(ctx, 1, 0)
		if !errors.Is(err, assign.ErrTimeout) || !strings.Contains(err.Error(), "removed, but its backend never closed") {
			t.Fatalf("remove: %v", err)
		}
		if got := e.dump(t); got != e.initial {
			t.Fatalf("tree after forced removal:\n%s", got)
		}
	})
}

// Five devices attached at once to one domain: transactions conflict and
// retry, and no port is given twice.
func TestConcurrentAttaches(t *testing.T) {
	xenstoretest.ForEach(t, func(t *testing.T, s xenstoretest.Store) {
		ctx := context.Background()
		e := newEnv(t, s, false)
		if _, err := e.h.AddController(ctx, 1, policy.CtrlSpec{Ports: 8}, true); err != nil {
			t.Fatal(err)
		}
		busids := []string{"1-1.6", "1-2", "1-3", "1-4", "1-5"}
		var wg sync.WaitGroup
		res := make([]assign.Assignment, len(busids))
		errs := make([]error, len(busids))
		for i, b := range busids {
			wg.Go(func() { res[i], errs[i] = e.h.Attach(ctx, 1, dev(b)) })
		}
		wg.Wait()
		ports := map[int]string{}
		for i, a := range res {
			if errs[i] != nil {
				t.Fatalf("%s: %v", busids[i], errs[i])
			}
			if prev, dup := ports[a.Port]; dup {
				t.Fatalf("port %d given to %s and %s", a.Port, prev, a.BusID)
			}
			ports[a.Port] = a.BusID
			if v, _ := e.read(t, fmt.Sprintf("/local/domain/0/backend/vusb/1/0/port/%d", a.Port)); v != a.BusID {
				t.Fatalf("port %d holds %q, want %s", a.Port, v, a.BusID)
			}
		}
	})
}

// Hubs, devices attached elsewhere, and bad controller:port choices are
// refused with errors a caller can tell apart, and leave nothing behind.
func TestRefusals(t *testing.T) {
	xenstoretest.ForEach(t, func(t *testing.T, s xenstoretest.Store) {
		ctx, e := context.Background(), pvEnv(t, s)
		if _, err := e.h.Attach(ctx, 1, policy.DevSpec{HostBus: 1, HostAddr: 2, Controller: -1}); !errors.Is(err, assign.ErrNotAssignable) {
			t.Errorf("hub 1-1: %v", err)
		}
		if _, err := e.h.Attach(ctx, 1, dev("usb1")); !errors.Is(err, assign.ErrNoDevice) {
			t.Errorf("root hub: %v", err)
		}
		if _, err := e.h.Attach(ctx, 1, policy.DevSpec{HostBus: 1, HostAddr: 99, Controller: -1}); !errors.Is(err, assign.ErrNoDevice) {
			t.Errorf("absent bus/addr: %v", err)
		}
		if _, err := e.h.Attach(ctx, 1, dev("1-9")); !errors.Is(err, assign.ErrNoDevice) {
			t.Errorf("absent busid: %v", err)
		}
		if _, err := e.h.Attach(ctx, 1, dev("1-1.6")); err != nil {
			t.Fatal(err)
		}
		if _, err := e.h.Attach(ctx, 2, dev("1-1.6")); !errors.Is(err, assign.ErrAssigned) || !strings.Contains(err.Error(), "domain 1 controller 0 port 1") {
			t.Errorf("already assigned: %v", err)
		}
		for _, port := range []int{3, 9, 31, 32} { // the controller has 2 ports
			if _, err := e.h.Attach(ctx, 1, policy.DevSpec{BusID: "1-2", Controller: 0, Port: port}); !errors.Is(err, assign.ErrNoPort) || !strings.Contains(err.Error(), "has ports 1 to 2") {
				t.Errorf("port %d of a 2-port controller: %v", port, err)
			}
		}
		if _, err := e.h.Attach(ctx, 1, policy.DevSpec{BusID: "1-2", Controller: 0, Port: 1}); !errors.Is(err, assign.ErrPortBusy) {
			t.Errorf("busy port: %v", err)
		}
		if _, err := e.h.Attach(ctx, 1, policy.DevSpec{BusID: "1-2", Controller: 3}); !errors.Is(err, assign.ErrNoController) {
			t.Errorf("no controller 3: %v", err)
		}
		if a, err := e.h.Attach(ctx, 1, policy.DevSpec{BusID: "1-2", Controller: 0, Port: 2}); err != nil || a.Port != 2 {
			t.Errorf("explicit port: %+v %v", a, err)
		}
		if _, err := e.h.Attach(ctx, 1, policy.DevSpec{BusID: "1-3", Controller: 0}); !errors.Is(err, assign.ErrNoFreePort) {
			t.Errorf("full controller: %v", err)
		}
		// No free port anywhere: a controller is added, as libxl does.
		if a, err := e.h.Attach(ctx, 1, dev("1-3")); err != nil || a.Controller != 1 || a.Port != 1 {
			t.Errorf("auto controller: %+v %v", a, err)
		}
		if _, err := e.h.Domain(ctx, "nobody"); !errors.Is(err, assign.ErrNoDomain) {
			t.Errorf("unknown domain: %v", err)
		}
		if d, err := e.h.Domain(ctx, "desk"); err != nil || d.ID != 2 || d.Type != "pv" {
			t.Errorf("desk: %+v %v", d, err)
		}
	})
}

// A busid or path that xenstore holds is never used on sysfs unchecked.
func TestUntrustedStoreValues(t *testing.T) {
	xenstoretest.ForEach(t, func(t *testing.T, s xenstoretest.Store) {
		ctx, e := context.Background(), pvEnv(t, s)
		if err := e.xs.Write(ctx, "/local/domain/0/backend/vusb/1/0/port/1", []byte("../../../x")); err != nil {
			t.Fatal(err)
		}
		if err := e.h.Detach(ctx, 1, 0, 1); err != nil {
			t.Fatalf("detach of a garbage port: %v", err)
		}
		if v, _ := e.read(t, "/local/domain/0/backend/vusb/1/0/port/1"); v != "" {
			t.Fatalf("garbage port left: %q", v)
		}
		if _, err := e.h.Attach(ctx, 1, dev("1-1.6")); err != nil {
			t.Fatal(err)
		}
		e.xs.Write(ctx, "/libxl/usbback/1-1_6/1-1_6@1_0/driver_path", []byte("/tmp/evil"))
		if err := e.h.Detach(ctx, 1, 0, 1); err != nil {
			t.Fatal(err)
		}
		// The forged record's driver is not used; the interface, with no
		// record to go back to, is offered to the kernel's own matching.
		if d := e.driver(t, "1-1.6:1.0"); d != "usbhid" {
			t.Fatalf("after a forged record the interface is with %q, not with what the kernel matches", d)
		}
		if len(e.warnings) < 2 {
			t.Fatalf("warnings: %q", e.warnings)
		}
		e.xs.Write(ctx, "/libxl/1/device/vusb/0/backend", []byte("/local/domain/1/evil"))
		if _, err := e.h.Controllers(ctx, 1); !errors.Is(err, assign.ErrBadStore) {
			t.Fatalf("forged backend path: %v", err)
		}
	})
}

// Without usbback, auto means qusb (QEMU's backend): only the port is
// written, no interface moves; the guest's QEMU must offer the backend.
func TestQUSB(t *testing.T) {
	xenstoretest.ForEach(t, func(t *testing.T, s xenstoretest.Store) {
		ctx := context.Background()
		e := newEnv(t, s, false)
		if err := os.RemoveAll(filepath.Join(e.h.Sys.Root(), "bus/usb/drivers/usbback")); err != nil {
			t.Fatal(err)
		}
		if _, err := e.h.AddController(ctx, 1, policy.CtrlSpec{}, true); !errors.Is(err, assign.ErrUnsupported) || !strings.Contains(err.Error(), "backends/qusb is missing") {
			t.Fatalf("qusb without QEMU: %v", err)
		}
		if err := sim.SeedQEMU(ctx, e.xs, 1); err != nil {
			t.Fatal(err)
		}
		c, err := e.h.AddController(ctx, 1, policy.CtrlSpec{Ports: 2}, true)
		if err != nil || c.Type != "qusb" {
			t.Fatalf("add: %+v %v", c, err)
		}
		if v, _ := e.read(t, "/libxl/1/device/vusb/0/backend"); v != "/local/domain/0/backend/qusb/1/0" {
			t.Fatalf("backend path %q", v)
		}
		a, err := e.h.Attach(ctx, 1, dev("1-1.6"))
		if err != nil || a.Type != "qusb" {
			t.Fatalf("attach: %+v %v", a, err)
		}
		if v, _ := e.read(t, "/local/domain/0/backend/qusb/1/0/port/1"); v != "1-1.6" {
			t.Fatalf("port %q", v)
		}
		if err := e.h.Detach(ctx, 1, 0, 1); err != nil {
			t.Fatal(err)
		}
		if w := e.writes(); w != "" {
			t.Fatalf("qusb moved interfaces: %s", w)
		}
		if err := e.h.RemoveController(ctx, 1, 0); err != nil {
			t.Fatal(err)
		}
	})
}

// A backend that refuses the controller (closes at probe) fails the add at
// once, without waiting out the timeout.
func TestBackendRefuses(t *testing.T) {
	xenstoretest.ForEach(t, func(t *testing.T, s xenstoretest.Store) {
		ctx := context.Background()
		e := newEnv(t, s, true)
		b := &sim.Backends{XS: s.Dial(t), FailProbe: true}
		run, err := b.Start(ctx)
		if err != nil {
			t.Fatal(err)
		}
		defer run.Stop()
		e.h.InitTimeout = time.Minute
		if _, err := e.h.AddController(ctx, 1, policy.CtrlSpec{}, true); !errors.Is(err, assign.ErrBackendRefused) {
			t.Fatalf("add: %v", err)
		}
	})
}

// A driver record left for a device that went, with another device in the
// same socket now: giving it back binds nothing (the interface is with its
// own dom0 driver) and removes the record.
func TestReleaseOfAnotherDevicesRecord(t *testing.T) {
	xenstoretest.ForEach(t, func(t *testing.T, s xenstoretest.Store) {
		ctx := context.Background()
		e := newEnv(t, s, true)
		if err := e.xs.Write(ctx, "/libxl/usbback/1-1_6/1-1_6@1_0/driver_path", []byte("/sys/bus/usb/drivers/usblp")); err != nil {
			t.Fatal(err)
		}
		if err := e.h.Release(ctx, "1-1.6"); err != nil {
			t.Fatalf("release: %v", err)
		}
		if d := e.driver(t, "1-1.6:1.0"); d != "usbhid" {
			t.Errorf("the keyboard's interface is with %q", d)
		}
		if has, err := e.h.HasRecord(ctx, "1-1.6"); err != nil || has {
			t.Errorf("the record stays: %v %v", has, err)
		}
	})
}

// An attach tells the caller's record the drivers it recorded, and
// WriteRecords writes those records again, for the interfaces present.
func TestAttachTellsItsDriversAndTheyAreWrittenAgain(t *testing.T) {
	xenstoretest.ForEach(t, func(t *testing.T, s xenstoretest.Store) {
		ctx := context.Background()
		e := pvEnv(t, s)
		var told map[string]string
		opts := assign.AttachOptions{PreferController: -1, Record: func(a assign.Assignment, drivers map[string]string) [][2]string {
			if drivers != nil {
				told = drivers
			}
			return nil
		}}
		if _, err := e.h.AttachWith(ctx, 1, dev("1-1.6"), opts); err != nil {
			t.Fatal(err)
		}
		if len(told) != 1 || told["1-1.6:1.0"] != "usbhid" {
			t.Fatalf("the drivers told: %v", told)
		}
		const rec = "/libxl/usbback/1-1_6/1-1_6@1_0/driver_path"
		if err := e.xs.Rm(ctx, "/libxl/usbback/1-1_6"); err != nil {
			t.Fatal(err)
		}
		if err := e.h.WriteRecords(ctx, "1-1.6", map[string]string{"1-1.6:1.0": "usbhid", "1-1.6:1.1": "usbhid"}); err != nil {
			t.Fatal(err)
		}
		if v, ok := e.read(t, rec); !ok || v != "/sys/bus/usb/drivers/usbhid" {
			t.Errorf("the record written again: %q %v", v, ok)
		}
		if _, ok := e.read(t, "/libxl/usbback/1-1_6/1-1_6@1_1"); ok {
			t.Error("a record for an interface the device does not have")
		}
		if err := e.h.WriteRecords(ctx, "1-1.6", map[string]string{"1-1.6:1.0": "../usbhid"}); !errors.Is(err, usbsysfs.ErrInvalidName) {
			t.Errorf("a driver that is a path: %v", err)
		}
	})
}

// A detach of the device a pass saw at a port touches nothing when the
// port holds another by now, and clears nothing when xl swaps the
// port's device while this one leaves usbback: the other stays where xl
// put it, with the records of the one asked for.
func TestDetachOwnedOfAPortThatChanged(t *testing.T) {
	xenstoretest.ForEach(t, func(t *testing.T, s xenstoretest.Store) {
		ctx, e := context.Background(), pvEnv(t, s)
		a, err := e.h.Attach(ctx, 1, dev("1-1.6"))
		if err != nil {
			t.Fatal(err)
		}
		const owned = "/tool/test/owned/1-1_6"
		if err := e.xs.Write(ctx, owned, []byte("x")); err != nil {
			t.Fatal(err)
		}
		port := fmt.Sprintf("/local/domain/0/backend/vusb/1/%d/port/%d", a.Controller, a.Port)
		other := a
		other.BusID = "1-1.5"
		if err := e.h.DetachOwned(ctx, other, owned); !errors.Is(err, assign.ErrPortChanged) {
			t.Fatalf("detach of 1-1.5 at 1-1.6's port: %v", err)
		}
		if d := e.driver(t, "1-1.6:1.0"); d != "usbback" {
			t.Fatalf("1-1.6:1.0 is with %q", d)
		}
		root := e.h.Sys.Root()
		e.h.Sys = usbsysfs.NewFS(root).WithWriter(&onWrite{k: e.k, path: "bus/usb/drivers/usbback/unbind", do: func() {
			if err := e.xs.Write(ctx, port, []byte("1-1.5")); err != nil {
				t.Error(err)
			}
		}})
		if err := e.h.DetachOwned(ctx, a, owned); !errors.Is(err, assign.ErrPortChanged) {
			t.Fatalf("detach while xl swapped the port: %v", err)
		}
		if v, _ := e.read(t, port); v != "1-1.5" {
			t.Errorf("the port holds %q, not xl's 1-1.5", v)
		}
		if _, ok := e.read(t, owned); !ok {
			t.Error("the ownership record went though the port was not cleared")
		}
		// Out of usbback, at no port now: given back, not left driverless.
		if d := e.driver(t, "1-1.6:1.0"); d != "usbhid" {
			t.Errorf("1-1.6:1.0 is with %q after the aborted detach", d)
		}
	})
}

// An interface usbback bound by itself (no driver record: one the device
// gained at the port, after a reset or a configuration change) is offered
// to the kernel's own matching at the detach, as Release does, rather than
// left with no driver in dom0 (where libxl leaves it).
func TestDetachOffersWhatUsbbackBoundByItself(t *testing.T) {
	xenstoretest.ForEach(t, func(t *testing.T, s xenstoretest.Store) {
		ctx, e := context.Background(), pvEnv(t, s)
		a, err := e.h.Attach(ctx, 1, dev("1-1.6"))
		if err != nil {
			t.Fatal(err)
		}
		if err := e.xs.Rm(ctx, "/libxl/usbback/1-1_6"); err != nil {
			t.Fatal(err)
		}
		if d := e.driver(t, "1-1.6:1.0"); d != "usbback" {
			t.Fatalf("attached, the interface is with %q", d)
		}
		if err := e.h.Detach(ctx, 1, a.Controller, a.Port); err != nil {
			t.Fatalf("detach: %v", err)
		}
		if d := e.driver(t, "1-1.6:1.0"); d != "usbhid" {
			t.Errorf("after the detach the interface is with %q, not offered to usbhid", d)
		}

		// The same when the detach finds its port changed by xl while the
		// device left usbback, and gives it back to dom0 itself.
		if a, err = e.h.Attach(ctx, 1, dev("1-1.6")); err != nil {
			t.Fatal(err)
		}
		if err := e.xs.Rm(ctx, "/libxl/usbback/1-1_6"); err != nil {
			t.Fatal(err)
		}
		port := fmt.Sprintf("/local/domain/0/backend/vusb/1/%d/port/%d", a.Controller, a.Port)
		e.h.Sys = usbsysfs.NewFS(e.h.Sys.Root()).WithWriter(&onWrite{k: e.k, path: "bus/usb/drivers/usbback/unbind", do: func() {
			if err := e.xs.Write(ctx, port, []byte("1-1.5")); err != nil {
				t.Error(err)
			}
		}})
		if err := e.h.DetachOwned(ctx, a, "/tool/test/owned/1-1_6"); !errors.Is(err, assign.ErrPortChanged) {
			t.Fatalf("detach while xl swapped the port: %v", err)
		}
		if d := e.driver(t, "1-1.6:1.0"); d != "usbhid" {
			t.Errorf("after the aborted detach the interface is with %q, not offered to usbhid", d)
		}
	})
}

// A device the caller read a moment ago that is another device now (its
// address changed: a replug, a mode switch) is not attached: the new one
// was never looked at, and nothing is written for it.
func TestAttachReadDeviceReplugged(t *testing.T) {
	xenstoretest.ForEach(t, func(t *testing.T, s xenstoretest.Store) {
		ctx, e := context.Background(), pvEnv(t, s)
		d, err := e.h.Sys.Device("1-1.6")
		if err != nil {
			t.Fatal(err)
		}
		e.idle(t)
		before := e.dump(t)
		d.DevNum++
		res := e.h.AttachMany(ctx, 1, []assign.AttachItem{{BusID: "1-1.6", Controller: -1, Opts: assign.AttachOptions{Device: &d}}})
		if err := res[0].Err; !errors.Is(err, assign.ErrNoDevice) || !strings.Contains(err.Error(), "another device since it was read") {
			t.Errorf("attach of a replugged device: %v", err)
		}
		if after := e.dump(t); after != before {
			t.Errorf("the store changed:\n%s", after)
		}
		if drv := e.driver(t, "1-1.6:1.0"); drv != "usbhid" {
			t.Errorf("1-1.6:1.0 is with %q", drv)
		}
	})
}

// A high-speed device goes to a controller that can carry it: a USB 1.1
// controller, where usbback refuses it, is passed over while another has
// a free port. A full-speed device takes the first free port, as libxl
// picks it.
func TestAttachPassesOverAControllerTooSlowForTheDevice(t *testing.T) {
	xenstoretest.ForEach(t, func(t *testing.T, s xenstoretest.Store) {
		ctx, e := context.Background(), newEnv(t, s, false)
		e.k.UsbbackPorts = fakekernel.StorePorts(ctx, s.Dial(t))
		for _, v := range []int{1, 2} {
			if _, err := e.h.AddController(ctx, 1, policy.CtrlSpec{Version: v, Ports: 2}, true); err != nil {
				t.Fatal(err)
			}
		}
		e.idle(t)
		for busid, speed := range map[string]string{"1-2": "480", "1-3": "12", "1-4": "480", "1-5": "480"} {
			if err := os.WriteFile(filepath.Join(e.h.Sys.Root(), "bus/usb/devices", busid, "speed"), []byte(speed+"\n"), 0o644); err != nil {
				t.Fatal(err)
			}
		}
		for _, tc := range []struct {
			busid      string
			ctrl, port int
		}{{"1-2", 1, 1}, {"1-3", 0, 1}, {"1-4", 1, 2}} {
			a, err := e.h.Attach(ctx, 1, dev(tc.busid))
			if err != nil || a.Controller != tc.ctrl || a.Port != tc.port {
				t.Fatalf("%s: at %d:%d (%v), want %d:%d", tc.busid, a.Controller, a.Port, err, tc.ctrl, tc.port)
			}
			if d := e.driver(t, tc.busid+":1.0"); d != "usbback" {
				t.Errorf("%s:1.0 has driver %q, want usbback", tc.busid, d)
			}
		}
		// Only the USB 1.1 controller has a free port: the controller a
		// full domain gets (libxl's default, USB 2.0) is added instead,
		// as when no controller has a free port.
		if a, err := e.h.Attach(ctx, 1, dev("1-5")); err != nil || a.Controller != 2 || a.Port != 1 {
			t.Fatalf("1-5 with only a USB 1.1 port free: at %d:%d (%v), want 2:1, at a new controller", a.Controller, a.Port, err)
		}
		if v, _ := e.read(t, "/local/domain/0/backend/vusb/1/2/usb-ver"); v != "2" {
			t.Errorf("the controller added for 1-5 has usb-ver %q, want 2", v)
		}
	})
}

// With only a USB 1.1 port free and a USB 1.1 controller as the one to
// add, no controller could carry a high-speed device: libxl's pick is
// tried, and usbback's refusal is told (no controller is added for it).
func TestAttachToOnlyUSB11PortsIsRefused(t *testing.T) {
	xenstoretest.ForEach(t, func(t *testing.T, s xenstoretest.Store) {
		ctx, e := context.Background(), newEnv(t, s, false)
		e.k.UsbbackPorts = fakekernel.StorePorts(ctx, s.Dial(t))
		if _, err := e.h.AddController(ctx, 1, policy.CtrlSpec{Version: 1, Ports: 2}, true); err != nil {
			t.Fatal(err)
		}
		e.idle(t)
		if err := os.WriteFile(filepath.Join(e.h.Sys.Root(), "bus/usb/devices/1-5/speed"), []byte("480\n"), 0o644); err != nil {
			t.Fatal(err)
		}
		opts := assign.AttachOptions{NewController: policy.CtrlSpec{Version: 1, Ports: 2}}
		if _, err := e.h.AttachWith(ctx, 1, dev("1-5"), opts); !errors.Is(err, assign.ErrUsbbackRefused) {
			t.Fatalf("1-5 with only USB 1.1 ports: %v, want usbback's refusal", err)
		}
		if v, _ := e.read(t, "/local/domain/0/backend/vusb/1/0/port/1"); v != "" {
			t.Errorf("the refused attach left port 0:1 = %q", v)
		}
		if _, ok := e.read(t, "/local/domain/0/backend/vusb/1/1/usb-ver"); ok {
			t.Error("a controller was added for a device no controller could carry")
		}
	})
}

// EnsureBoundHeld moves back to usbback an interface a dom0 driver took,
// and leaves one that someone else unbound from usbback without a
// driver; EnsureBound binds both.
func TestEnsureBoundHeldLeavesUnbound(t *testing.T) {
	s := xenstoretest.Embedded(t)
	e := newEnv(t, s, false)
	ctx := context.Background()
	for _, b := range []string{"1-2", "1-3"} {
		if _, err := e.h.Attach(ctx, sim.KioskDomain.ID, policy.DevSpec{BusID: b, Controller: -1}); err != nil {
			t.Fatal(err)
		}
		if err := e.h.Sys.Unbind(b + ":1.0"); err != nil {
			t.Fatal(err)
		}
	}
	if err := e.h.Sys.Bind("1-2:1.0", "usbhid"); err != nil { // dom0's driver took it
		t.Fatal(err)
	}
	for _, b := range []string{"1-2", "1-3"} {
		if err := e.h.EnsureBoundHeld(ctx, b); err != nil {
			t.Fatal(err)
		}
	}
	if d1, d2 := e.driver(t, "1-2:1.0"), e.driver(t, "1-3:1.0"); d1 != "usbback" || d2 != "" {
		t.Errorf("after EnsureBoundHeld: 1-2:1.0 with %q (want usbback), 1-3:1.0 with %q (want none)", d1, d2)
	}
	if err := e.h.EnsureBound(ctx, "1-3"); err != nil {
		t.Fatal(err)
	}
	if d := e.driver(t, "1-3:1.0"); d != "usbback" {
		t.Errorf("after EnsureBound: 1-3:1.0 with %q, want usbback", d)
	}
}
