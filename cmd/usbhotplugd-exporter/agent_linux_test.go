package main

import (
	"bufio"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/usbhotplugd/usbhotplugd/internal/fakekernel"
	"github.com/usbhotplugd/usbhotplugd/internal/sim"
	"github.com/usbhotplugd/usbhotplugd/internal/xenstore/xenstoretest"
)

// agentBin is the agent built with the test hooks (uevents from the
// test's netlink socket, sysfs writes to the fake kernel), once per run of
// the test binary.
var agentBin string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "usbhotplugd-exporter-test")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	agentBin = filepath.Join(dir, "usbhotplugd")
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

func buildAgent(tb testing.TB) {
	tb.Helper()
	if _, err := os.Stat(agentBin); err == nil {
		return
	}
	out, err := exec.Command("go", "build", "-tags", "testhooks", "-o", agentBin, "../usbhotplugd").CombinedOutput()
	if err != nil {
		tb.Fatalf("building the agent: %v\n%s", err, out)
	}
}

// fleetHost is a dom0 on the real C xenstored: doms running guests
// (g00, g01, …) with the simulated backends, and devices USB devices in a
// fixture sysfs, each sent by its serial to a guest in turn.
type fleetHost struct {
	tb       testing.TB
	ctx      context.Context
	dir      string
	store    xenstoretest.Store
	root     string
	policy   string
	stateDir string
	port     uint32 // the netlink socket the agent takes uevents from
}

func newFleetHost(tb testing.TB, doms, devices int) *fleetHost {
	tb.Helper()
	buildAgent(tb) // before anything is timed
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	tb.Cleanup(cancel)
	s := xenstoretest.Real(tb)
	xs := s.Dial(tb)
	if err := sim.SeedDom0(ctx, xs); err != nil {
		tb.Fatal(err)
	}
	run, err := (&sim.Backends{XS: s.Dial(tb)}).Start(ctx)
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { run.Stop() })
	for i := range doms {
		d := sim.Domain{ID: uint32(i + 1), Name: fmt.Sprintf("g%02d", i), Type: "pv", UUID: fmt.Sprintf("00000000-0000-4000-8000-%012x", i+1)}
		if err := sim.SeedDomain(ctx, xs, d); err != nil {
			tb.Fatal(err)
		}
		if err := xs.Introduce(ctx, d.ID, 1, 1); err != nil {
			tb.Fatal(err)
		}
	}
	dir := tb.TempDir()
	h := &fleetHost{tb: tb, ctx: ctx, dir: dir, store: s, root: filepath.Join(dir, "sys"), policy: filepath.Join(dir, "policy.toml"),
		stateDir: filepath.Join(dir, "state")}
	if err := fakekernel.Standard(h.root); err != nil {
		tb.Fatal(err)
	}
	if err := fakekernel.AddDriver(h.root, "usbback"); err != nil {
		tb.Fatal(err)
	}
	bld := &fakekernel.Builder{Root: h.root}
	for i := range devices {
		bld.Add(fakekernel.Dev{BusID: fmt.Sprintf("1-6.%d.%d", 1+i/10, 1+i%10), DevNum: 10 + i%100, Vendor: "1234", Product: "5678", Class: "00",
			Serial: fmt.Sprintf("B%04d", i), Interfaces: []fakekernel.Intf{{Class: "03", SubClass: "00", Protocol: "00", Driver: "usbhid"}}})
	}
	if err := bld.Err(); err != nil {
		tb.Fatal(err)
	}
	if err := os.WriteFile(h.policy, []byte(sim.FleetPolicy(doms, devices)), 0o644); err != nil {
		tb.Fatal(err)
	}
	h.port = uevents(tb)
	return h
}

// uevents is a netlink socket of the test's own: the agent takes its
// datagrams as the kernel's, and it sends none, so the host's own uevents
// never reach the agent.
func uevents(tb testing.TB) uint32 {
	tb.Helper()
	fd, err := unix.Socket(unix.AF_NETLINK, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, unix.NETLINK_KOBJECT_UEVENT)
	if err != nil {
		tb.Skipf("no netlink socket: %v", err)
	}
	tb.Cleanup(func() { unix.Close(fd) })
	if err := unix.Bind(fd, &unix.SockaddrNetlink{Family: unix.AF_NETLINK}); err != nil {
		tb.Fatal(err)
	}
	sa, err := unix.Getsockname(fd)
	if err != nil {
		tb.Fatal(err)
	}
	return sa.(*unix.SockaddrNetlink).Pid
}

// startAgent runs `usbhotplugd run` as its own process (root, or root of
// a user namespace of its own) and waits until every present device is
// reconciled. extra are more flags.
func (h *fleetHost) startAgent(extra ...string) *exec.Cmd {
	h.tb.Helper()
	buildAgent(h.tb)
	args := append([]string{"run", "--policy", h.policy, "--state-dir", h.stateDir, "--xenstore", h.store.SocketPath(), "--sysfs", h.root,
		"--log-format", "json", "--backend-timeout", "5s"}, extra...)
	cmd := exec.CommandContext(h.ctx, agentBin, args...)
	cmd.Env = append(os.Environ(), "USBHOTPLUGD_TEST_UEVENT_PORT="+strconv.FormatUint(uint64(h.port), 10), "USBHOTPLUGD_TEST_FAKE_KERNEL="+h.root)
	if os.Geteuid() != 0 {
		cmd.SysProcAttr = &syscall.SysProcAttr{Cloneflags: syscall.CLONE_NEWUSER,
			UidMappings: []syscall.SysProcIDMap{{ContainerID: 0, HostID: os.Getuid(), Size: 1}},
			GidMappings: []syscall.SysProcIDMap{{ContainerID: 0, HostID: os.Getgid(), Size: 1}}}
	}
	out, err := cmd.StdoutPipe()
	if err != nil {
		h.tb.Fatal(err)
	}
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		if os.Geteuid() != 0 {
			h.tb.Skipf("the agent needs root or a user namespace: %v", err)
		}
		h.tb.Fatal(err)
	}
	ready := make(chan struct{})
	logged := make(chan struct{})
	var tail []string
	go func() {
		defer close(logged)
		sc := bufio.NewScanner(out)
		sc.Buffer(make([]byte, 1<<20), 1<<20)
		said := false
		for sc.Scan() {
			if tail = append(tail, sc.Text()); len(tail) > 20 {
				tail = tail[1:]
			}
			if !said && strings.Contains(sc.Text(), `"message":"ready`) {
				said = true
				close(ready)
			}
		}
	}()
	h.tb.Cleanup(func() {
		cmd.Process.Signal(syscall.SIGTERM)
		cmd.Wait()
	})
	select {
	case <-ready:
	case <-logged:
		cmd.Wait()
		h.tb.Fatalf("the agent ended before it was ready:\n%s", strings.Join(tail, "\n"))
	case <-h.ctx.Done():
		h.tb.Fatal("the agent was not ready in time")
	}
	return cmd
}
