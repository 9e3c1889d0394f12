package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/usbhotplugd/usbhotplugd/internal/assign"
	"github.com/usbhotplugd/usbhotplugd/internal/usbsysfs"
	"github.com/usbhotplugd/usbhotplugd/internal/xenstore"
	"golang.org/x/sys/unix"
)

const (
	policyPath = "/etc/usbhotplugd/policy.toml"
	stateDir   = "/run/usbhotplugd"
	agentLog   = "/run/agent.log"
	agentBin   = "/bin/usbhotplugd"
)

// The agent process, when one runs.
var agent struct {
	mu   sync.Mutex
	cmd  *exec.Cmd
	done chan struct{}
}

func handle(req request) (string, error) {
	switch req.Op {
	case "ping":
		return "pong", nil
	case "start":
		return startAgent(req.Data, req.Args)
	case "kill":
		return killAgent(req.Args)
	case "reload":
		if err := os.WriteFile(policyPath, []byte(req.Data), 0o644); err != nil {
			return "", err
		}
		return command(nil, agentBin, "reload", "--policy", policyPath, "--state-dir", stateDir)
	case "devices":
		devs, err := devices()
		if err != nil {
			return "", err
		}
		b, err := json.Marshal(devs)
		return string(b), err
	case "write":
		if len(req.Args) != 2 {
			return "", fmt.Errorf("write PATH VALUE")
		}
		return "", os.WriteFile(req.Args[0], []byte(req.Args[1]), 0)
	case "xl":
		return xl(req.Args)
	case "destroy":
		return "", destroy(req.Args)
	case "cat":
		if len(req.Args) != 1 {
			return "", fmt.Errorf("cat PATH")
		}
		b, err := os.ReadFile(req.Args[0])
		return string(b), err
	case "kmsg":
		return kmsg()
	case "dm":
		return "", startDM(req.Args)
	case "dm-stop":
		return "", stopDM(req.Args)
	case "record-stop":
		return stopRecord()
	case "mount":
		if len(req.Args) != 2 {
			return "", fmt.Errorf("mount BUSID DIR")
		}
		return mountDisk(req.Args[0], req.Args[1])
	case "umount":
		if len(req.Args) != 1 {
			return "", fmt.Errorf("umount DIR")
		}
		if err := unix.Unmount(req.Args[0], 0); err != nil {
			return "", fmt.Errorf("umount %s: %w", req.Args[0], err)
		}
		return "", nil
	case "suspend":
		if len(req.Args) != 2 {
			return "", fmt.Errorf("suspend mem qmp")
		}
		return suspend(req.Args[0], req.Args[1])
	}
	return "", fmt.Errorf("unknown op %q", req.Op)
}

func startAgent(pol string, extra []string) (string, error) {
	agent.mu.Lock()
	defer agent.mu.Unlock()
	if agent.cmd != nil {
		return "", fmt.Errorf("an agent runs already (pid %d)", agent.cmd.Process.Pid)
	}
	if pol != "" {
		if err := os.WriteFile(policyPath, []byte(pol), 0o644); err != nil {
			return "", err
		}
	}
	xb, err := portPath(portXenbus)
	if err != nil {
		return "", err
	}
	// The port's store connection outlives the process that had it open:
	// what the kernel's xenbus device does on close is done here.
	if err := resetPort(portXenbus); err != nil {
		return "", err
	}
	logf, err := os.OpenFile(agentLog, os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o644)
	if err != nil {
		return "", err
	}
	args := append([]string{"run", "--policy", policyPath, "--state-dir", stateDir, "--xenstore", xb, "--log-format", "json"}, extra...)
	cmd := exec.Command(agentBin, args...)
	cmd.Stdout, cmd.Stderr = logf, logf
	if err := cmd.Start(); err != nil {
		logf.Close()
		return "", err
	}
	logf.Close()
	done := make(chan struct{})
	agent.cmd, agent.done = cmd, done
	go func() {
		cmd.Wait()
		close(done)
	}()
	// Until the new agent holds the state directory, its status file may
	// be a killed one's, which says "ready": the steps after this one
	// read it. An agent that ends before is left to them too.
	pid := cmd.Process.Pid
	deadline := time.After(30 * time.Second)
	for statusPID() != pid {
		select {
		case <-done:
			return strconv.Itoa(pid), nil
		case <-deadline:
			return "", fmt.Errorf("agent %d: its status file does not name it after 30 s", pid)
		case <-time.After(5 * time.Millisecond): // look again
		}
	}
	return strconv.Itoa(pid), nil
}

// statusPID is the pid the agent's status file names; 0 without one.
func statusPID() int {
	b, err := os.ReadFile(stateDir + "/status.json")
	if err != nil {
		return 0
	}
	var st struct {
		PID int `json:"pid"`
	}
	json.Unmarshal(b, &st)
	return st.PID
}

func killAgent(args []string) (string, error) {
	sig := syscall.SIGTERM
	if len(args) == 1 && args[0] == "9" {
		sig = syscall.SIGKILL
	}
	agent.mu.Lock()
	defer agent.mu.Unlock()
	if agent.cmd == nil {
		return "", fmt.Errorf("no agent runs")
	}
	agent.cmd.Process.Signal(sig)
	select {
	case <-agent.done:
	case <-time.After(60 * time.Second):
		return "", fmt.Errorf("the agent did not exit within 60s of %v", sig)
	}
	st := agent.cmd.ProcessState.String()
	agent.cmd = nil
	// A pid file left by a killed agent is released with its lock.
	return st, nil
}

func command(extraEnv []string, argv ...string) (string, error) {
	cmd := exec.Command(argv[0], argv[1:]...)
	cmd.Env = append(os.Environ(), extraEnv...)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	err := cmd.Run()
	if err != nil {
		return out.String(), fmt.Errorf("%v: %s", err, out.Bytes())
	}
	return out.String(), nil
}

// xl runs one of the agent binary's xl-like commands on the tool port.
func xl(args []string) (string, error) {
	if len(args) == 0 {
		return "", fmt.Errorf("xl SUBCOMMAND ARGS")
	}
	p, err := portPath(portTool)
	if err != nil {
		return "", err
	}
	if err := resetPort(portTool); err != nil {
		return "", err
	}
	argv := append([]string{agentBin, args[0], "--xenstore", p}, args[1:]...)
	return command(nil, argv...)
}

// destroy does what `xl destroy` does for USB, on the tool port: every
// controller of the domain is removed and its devices given back to dom0.
// The host removes the domain's nodes afterwards.
func destroy(args []string) error {
	if len(args) != 1 {
		return fmt.Errorf("destroy DOMID")
	}
	domid, err := strconv.ParseUint(args[0], 10, 32)
	if err != nil {
		return err
	}
	if err := resetPort(portTool); err != nil {
		return err
	}
	f, err := openPort(portTool)
	if err != nil {
		return err
	}
	xs := xenstore.NewConn(f)
	defer xs.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	h := &assign.Host{XS: xs, Sys: usbsysfs.NewFS("/sys")}
	ctrls, err := h.Controllers(ctx, uint32(domid))
	if err != nil {
		return err
	}
	for _, c := range ctrls {
		if err := h.RemoveController(ctx, uint32(domid), c.DevID); err != nil {
			return fmt.Errorf("removing controller %d: %w", c.DevID, err)
		}
	}
	return nil
}

// kmsg reads the kernel's whole log buffer.
func kmsg() (string, error) {
	f, err := os.OpenFile("/dev/kmsg", os.O_RDONLY|syscall.O_NONBLOCK, 0)
	if err != nil {
		return "", err
	}
	defer f.Close()
	var out bytes.Buffer
	buf := make([]byte, 8192)
	for {
		n, err := syscall.Read(int(f.Fd()), buf)
		if err == syscall.EPIPE {
			continue // overwritten records
		}
		if err != nil || n == 0 {
			break
		}
		out.Write(buf[:n])
	}
	return out.String(), nil
}

// The kernel's uevents, recorded for the whole run by the agent binary's
// own recorder into a trace that `usbhotplugd replay` takes.
var recorder struct {
	cmd  *exec.Cmd
	done chan struct{}
}

const tracePath = "/run/uevents.jsonl"

func startRecord() {
	cmd := exec.Command(agentBin, "record", "-o", tracePath)
	logf, err := os.Create("/run/record.log")
	if err != nil {
		return
	}
	defer logf.Close()
	cmd.Stdout, cmd.Stderr = logf, logf
	if err := cmd.Start(); err != nil {
		fmt.Fprintf(os.Stderr, "vmguest: record: %v\n", err)
		return
	}
	recorder.cmd, recorder.done = cmd, make(chan struct{})
	go func() { cmd.Wait(); close(recorder.done) }()
}

func stopRecord() (string, error) {
	if recorder.cmd == nil {
		return "", fmt.Errorf("no recorder runs")
	}
	recorder.cmd.Process.Signal(syscall.SIGINT)
	select {
	case <-recorder.done:
	case <-time.After(30 * time.Second):
		return "", fmt.Errorf("the recorder did not stop within 30s")
	}
	return tracePath, nil
}

// mountDisk mounts the first partition of the USB disk busid on dir, as
// dom0's admin mounts a stick, and says which it mounted. The disk and
// its partitions come a second or so after usb-storage binds (its SCSI
// scan), and the device node just after the sysfs entry: both are waited
// for.
func mountDisk(busid, dir string) (string, error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", err
	}
	sys := usbsysfs.NewFS("/sys")
	deadline := time.Now().Add(60 * time.Second)
	for {
		part, err := firstPartition(sys, busid)
		if err == nil && part != "" {
			err = unix.Mount("/dev/"+part, dir, "vfat", 0, "")
			if err == nil {
				return "/dev/" + part, nil
			}
			err = fmt.Errorf("mount /dev/%s on %s: %w", part, dir, err)
		}
		if err != nil && !errors.Is(err, fs.ErrNotExist) {
			return "", err
		}
		if time.Now().After(deadline) {
			return "", fmt.Errorf("%s: no partition to mount within 60s (%v)", busid, err)
		}
		time.Sleep(50 * time.Millisecond) // the next look at sysfs
	}
}

// firstPartition is the first partition of busid's first disk, "" when
// there is none yet.
func firstPartition(sys *usbsysfs.FS, busid string) (string, error) {
	blocks, err := sys.BlockDevs(busid)
	if err != nil || len(blocks) == 0 {
		return "", err
	}
	disk := blocks[0].Name // disks come before their partitions
	for _, b := range blocks[1:] {
		if strings.HasPrefix(b.Name, disk) && b.Name != disk {
			return b.Name, nil
		}
	}
	return "", nil
}

// suspend suspends the kernel to S3, as a dom0's power management does,
// and returns once the host has woken it. mem_sleep is set to deep first
// (mem would otherwise be s2idle where the kernel prefers it), and without
// deep (no S3 in the firmware) the suspend fails.
func suspend(state, wake string) (string, error) {
	if state != "mem" || wake != "qmp" {
		return "", fmt.Errorf("suspend %s %s: only mem qmp", state, wake)
	}
	b, err := os.ReadFile("/sys/power/mem_sleep")
	if err != nil {
		return "", fmt.Errorf("suspend: %w", err)
	}
	if !strings.Contains(string(b), "deep") {
		return "", fmt.Errorf("suspend: no S3 in this machine (/sys/power/mem_sleep: %s)", strings.TrimSpace(string(b)))
	}
	if err := os.WriteFile("/sys/power/mem_sleep", []byte("deep"), 0); err != nil {
		return "", fmt.Errorf("suspend: mem_sleep: %w", err)
	}
	start := time.Now()
	if err := os.WriteFile("/sys/power/state", []byte(state), 0); err != nil {
		return "", fmt.Errorf("suspend: /sys/power/state %s: %w", state, err)
	}
	return fmt.Sprintf("%s: resumed after %v", state, time.Since(start).Round(time.Millisecond)), nil
}
