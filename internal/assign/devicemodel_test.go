package assign_test

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/usbhotplugd/usbhotplugd/internal/assign"
	"github.com/usbhotplugd/usbhotplugd/internal/fakekernel"
	"github.com/usbhotplugd/usbhotplugd/internal/qmp"
	"github.com/usbhotplugd/usbhotplugd/internal/sim"
	"github.com/usbhotplugd/usbhotplugd/internal/usbsysfs"
	"github.com/usbhotplugd/usbhotplugd/internal/xenstore"
	"github.com/usbhotplugd/usbhotplugd/internal/xenstore/xenstoretest"
	"github.com/usbhotplugd/usbhotplugd/policy"
)

var winDesk = sim.Domain{ID: 7, Name: "win-desk", UUID: "3f0c7a1e-2b4d-4e6f-8a9b-0c1d2e3f4a5b", Type: "hvm"}

// startQEMU runs a real QEMU, paused, with no disk and a QMP socket: the
// device model of an HVM guest.
func startQEMU(t testing.TB) string {
	t.Helper()
	bin, err := exec.LookPath("qemu-system-x86_64")
	if err != nil {
		if os.Getenv("CI") != "" {
			t.Fatal("qemu-system-x86_64 is missing (apt-get install qemu-system-x86); CI must have it")
		}
		t.Skip("skipping the devicemodel tests: qemu-system-x86_64 is missing (apt-get install qemu-system-x86)")
	}
	dir, err := os.MkdirTemp("", "qmp")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	sock := filepath.Join(dir, "qmp")
	cmd := exec.Command(bin, "-S", "-display", "none", "-nodefaults", "-no-user-config", "-machine", "pc", "-accel", "tcg",
		"-qmp", "unix:"+sock+",server=on,wait=off")
	out, _ := os.Create(filepath.Join(dir, "qemu.log"))
	cmd.Stdout, cmd.Stderr = out, out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	// Wait for QEMU's socket: it appears once QEMU listens.
	deadline := time.Now().Add(20 * time.Second)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		c, err := qmp.Dial(ctx, sock)
		cancel()
		if err == nil {
			c.Close()
			return sock
		}
		if time.Now().After(deadline) {
			b, _ := os.ReadFile(filepath.Join(dir, "qemu.log"))
			t.Fatalf("QEMU's QMP socket did not answer: %v\n%s", err, b)
		}
		time.Sleep(20 * time.Millisecond) // polling a socket another process creates
	}
}

func peripherals(t *testing.T, sock string) []string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c, err := qmp.Dial(ctx, sock)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	var props []struct{ Name string }
	if err := c.Run(ctx, "qom-list", map[string]any{"path": "/machine/peripheral"}, &props); err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, p := range props {
		if strings.HasPrefix(p.Name, "xenusb") {
			out = append(out, p.Name)
		}
	}
	slices.Sort(out)
	return out
}

// hostless stands in for the one thing this machine lacks, a host USB
// device for QEMU to open: a usb-host device_add goes to QEMU as an
// emulated usb-tablet with the same id, bus and port, so QEMU's buses,
// ports, ids and errors stay real. What was asked for is kept in sent.
type hostless struct {
	c    *qmp.Client
	sent *[]map[string]any
}

func (h *hostless) Run(ctx context.Context, command string, args, out any) error {
	m, _ := args.(map[string]any)
	if command == "device_add" && m != nil {
		if h.sent != nil {
			*h.sent = append(*h.sent, m)
		}
		if m["driver"] == "usb-host" {
			m2 := map[string]any{"driver": "usb-tablet"}
			for _, k := range []string{"id", "bus", "port"} {
				m2[k] = m[k]
			}
			args = m2
		}
	}
	return h.c.Run(ctx, command, args, out)
}

// Emulated controllers and usb-host devices on a real QEMU, with libxl's
// layout under /libxl only; QEMU's refusals come back verbatim and leave
// nothing behind in xenstore; on each real xenstored.
func TestDeviceModelWithRealQEMU(t *testing.T) {
	for _, kind := range []string{xenstoretest.KindXenstored, xenstoretest.KindOxenstored} {
		t.Run(kind, func(t *testing.T) { deviceModelWithRealQEMU(t, kind) })
	}
}

func deviceModelWithRealQEMU(t *testing.T, kind string) {
	sock := startQEMU(t)
	s := xenstoretest.Start(t, kind)
	e := newEnv(t, s, false)
	ctx := context.Background()
	if err := sim.SeedDomain(ctx, e.xs, winDesk); err != nil {
		t.Fatal(err)
	}
	var sent []map[string]any
	e.h.DialQMP = func(ctx context.Context, domid uint32) (assign.QMP, func(), error) {
		if domid != winDesk.ID {
			return nil, nil, errors.New("no device model for this domain")
		}
		c, err := qmp.Dial(ctx, sock)
		if err != nil {
			return nil, nil, err
		}
		return &hostless{c: c, sent: &sent}, func() { c.Close() }, nil
	}

	// auto is devicemodel for an HVM guest: usb-ehci, 6 ports.
	c, err := e.h.AddController(ctx, winDesk.ID, policy.CtrlSpec{Type: policy.TypeAuto}, true)
	if err != nil {
		t.Fatal(err)
	}
	if c.Type != policy.TypeDeviceModel || c.Version != 2 || c.Ports != 6 {
		t.Errorf("controller: %+v", c)
	}
	if got := peripherals(t, sock); !slices.Equal(got, []string{"xenusb-0"}) {
		t.Errorf("QEMU's peripherals: %v", got)
	}
	lp := "/libxl/7/device/vusb/0"
	if v, _ := e.read(t, lp+"/type"); v != "devicemodel" {
		t.Errorf("type: %q", v)
	}
	for _, p := range []string{lp + "/backend", lp + "/frontend", "/local/domain/0/backend/vusb/7", "/local/domain/7/device/vusb"} {
		if _, ok := e.read(t, p); ok {
			t.Errorf("%s exists: a devicemodel controller has only the /libxl keys", p)
		}
	}

	// A device: port written in the /libxl path, usb-host added.
	a, err := e.h.Attach(ctx, winDesk.ID, policy.DevSpec{HostBus: 1, HostAddr: 6, Controller: -1})
	if err != nil {
		t.Fatal(err)
	}
	if a.Controller != 0 || a.Port != 1 || a.BusID != "1-1.6" {
		t.Errorf("attach: %+v", a)
	}
	if v, _ := e.read(t, lp+"/port/1"); v != "1-1.6" {
		t.Errorf("port/1 = %q", v)
	}
	if got := peripherals(t, sock); !slices.Equal(got, []string{"xenusb-0", "xenusb-1-6"}) {
		t.Errorf("QEMU's peripherals after the attach: %v", got)
	}
	want := map[string]any{"driver": "usb-host", "id": "xenusb-1-6", "bus": "xenusb-0.0", "port": "1", "hostbus": "1", "hostaddr": "6"}
	if len(sent) < 2 || fmt.Sprint(sent[1]) != fmt.Sprint(want) {
		t.Errorf("device_add sent %v, want libxl's %v", sent, want)
	}
	if e.driver(t, "1-1.6:1.0") != "usbhid" {
		t.Error("an emulated attach touched the host driver (QEMU opens the device itself)")
	}
	list, err := e.h.List(ctx, winDesk.ID)
	if err != nil {
		t.Fatal(err)
	}
	var b strings.Builder
	assign.WriteList(&b, list)
	// As xl prints it: BE and state are 0 for an emulated controller.
	wantList := "Devid  Type         BE  state usb-ver ports\n0      devicemodel  0   0     2       6    \n  Port 1: Bus 001 Device 006\n  Port 2:\n  Port 3:\n  Port 4:\n  Port 5:\n  Port 6:\n"
	if b.String() != wantList {
		t.Errorf("usb-list:\n%s", b.String())
	}

	// QEMU refuses a duplicate id: the error is QEMU's, the port is
	// cleared again.
	if _, err := e.h.Attach(ctx, winDesk.ID, policy.DevSpec{BusID: "1-2", Controller: -1}); err != nil {
		t.Fatal(err)
	}
	// A device that left the host is found in QEMU by its port (its bus
	// and address are gone with it) and removed.
	if err := e.k.Unplug("1-2"); err != nil {
		t.Fatal(err)
	}
	if err := e.h.Detach(ctx, winDesk.ID, 0, 2); err != nil {
		t.Fatal(err)
	}
	if got := peripherals(t, sock); slices.Contains(got, "xenusb-1-10") {
		t.Errorf("the emulated device of a gone host device stayed in QEMU: %v", got)
	}
	// QEMU refuses a bus that does not exist: a controller in xenstore
	// without its QEMU part.
	if err := e.xs.Write(ctx, "/libxl/7/device/vusb/5/type", []byte("devicemodel")); err != nil {
		t.Fatal(err)
	}
	for k, v := range map[string]string{"usb-ver": "2", "num-ports": "6", "port": "", "port/1": "", "port/2": "", "port/3": "", "port/4": "", "port/5": "", "port/6": ""} {
		if err := e.xs.Write(ctx, "/libxl/7/device/vusb/5/"+k, []byte(v)); err != nil {
			t.Fatal(err)
		}
	}
	_, err = e.h.Attach(ctx, winDesk.ID, policy.DevSpec{BusID: "1-3", Controller: 5, Port: 2})
	var qe *qmp.Error
	if !errors.As(err, &qe) || !strings.Contains(qe.Desc, "xenusb-5.0") {
		t.Errorf("attach to a bus QEMU lacks: %v", err)
	}
	if v, _ := e.read(t, "/libxl/7/device/vusb/5/port/2"); v != "" {
		t.Errorf("the refused attach left port 5:2 = %q", v)
	}
	if err := e.xs.Rm(ctx, "/libxl/7/device/vusb/5"); err != nil {
		t.Fatal(err)
	}
	// A controller whose QEMU id is taken: QEMU says so, nothing stays.
	c2 := func() error {
		ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		defer cancel()
		q, err := qmp.Dial(ctx, sock)
		if err != nil {
			return err
		}
		defer q.Close()
		return q.Run(ctx, "device_add", map[string]any{"driver": "usb-ehci", "id": "xenusb-1"}, nil)
	}
	if err := c2(); err != nil {
		t.Fatal(err)
	}
	_, err = e.h.AddController(ctx, winDesk.ID, policy.CtrlSpec{Type: policy.TypeDeviceModel, Version: 1}, true)
	if !errors.As(err, &qe) || !strings.Contains(strings.ToLower(qe.Desc), "duplicate") {
		t.Errorf("controller with a taken id: %v", err)
	}
	if _, ok := e.read(t, "/libxl/7/device/vusb/1"); ok {
		t.Error("the refused controller left its keys")
	}

	// Detach: the port is cleared and usb-host goes from QEMU.
	if err := e.h.Detach(ctx, winDesk.ID, 0, 1); err != nil {
		t.Fatal(err)
	}
	if v, _ := e.read(t, lp+"/port/1"); v != "" {
		t.Errorf("port/1 after detach = %q", v)
	}
	if got := peripherals(t, sock); slices.Contains(got, "xenusb-1-6") {
		t.Errorf("usb-host still in QEMU: %v", got)
	}
	// Controller removal: its devices detached, QEMU asked, /libxl gone.
	if err := e.h.RemoveController(ctx, winDesk.ID, 0); err != nil {
		t.Fatal(err)
	}
	if _, ok := e.read(t, lp); ok {
		t.Error("the controller's keys are still there")
	}
}

// BenchmarkDeviceModelAttach: attach and detach of one device to an
// emulated controller over QMP on a real QEMU.
func BenchmarkDeviceModelAttach(b *testing.B) {
	sock := startQEMU(b)
	s := xenstoretest.Real(b)
	ctx := context.Background()
	xs := s.Dial(b)
	if err := sim.SeedDom0(ctx, xs); err != nil {
		b.Fatal(err)
	}
	if err := sim.SeedDomain(ctx, xs, winDesk); err != nil {
		b.Fatal(err)
	}
	e := benchHost(b, xs)
	e.DialQMP = func(ctx context.Context, domid uint32) (assign.QMP, func(), error) {
		c, err := qmp.Dial(ctx, sock)
		if err != nil {
			return nil, nil, err
		}
		return &hostless{c: c}, func() { c.Close() }, nil
	}
	if _, err := e.AddController(ctx, winDesk.ID, policy.CtrlSpec{Type: policy.TypeDeviceModel}, true); err != nil {
		b.Fatal(err)
	}
	var attach time.Duration
	for b.Loop() {
		t0 := time.Now()
		a, err := e.Attach(ctx, winDesk.ID, policy.DevSpec{BusID: "1-1.6", Controller: -1})
		if err != nil {
			b.Fatal(err)
		}
		attach += time.Since(t0)
		if err := e.Detach(ctx, winDesk.ID, a.Controller, a.Port); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(attach.Microseconds())/float64(b.N), "attach-µs")
}

func benchHost(b *testing.B, xs *xenstore.Conn) *assign.Host {
	root := fakekernel.TempDir(b)
	if err := fakekernel.XL(root); err != nil {
		b.Fatal(err)
	}
	return &assign.Host{XS: xs, Sys: usbsysfs.NewFS(root).WithWriter(fakekernel.NewKernel(root))}
}
