// Command guest is PID 1 of the test VM: it mounts the kernel's file
// systems, loads the USB stack's modules, keeps the usbback stand-in's
// port list in step with xenstore, and serves the host's test driver on a
// virtio-serial control port (see package vmtest for the protocol).
package main

import (
	"bufio"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"

	"golang.org/x/sys/unix"
)

// Port names, as the host's QEMU command line gives them.
const (
	portControl = "org.usbhotplugd.control"
	portXenbus  = "org.usbhotplugd.xenbus" // the agent's, as dom0's /dev/xen/xenbus
	portTool    = "org.usbhotplugd.tool"   // xl-like commands
	portBackend = "org.usbhotplugd.usbback"
)

func main() {
	if err := boot(); err != nil {
		fmt.Fprintf(os.Stderr, "vmguest: %v\n", err)
	}
	ctl, err := openPort(portControl)
	if err != nil {
		fmt.Fprintf(os.Stderr, "vmguest: %v\n", err)
		halt()
	}
	serve(ctl)
	halt()
}

func halt() {
	unix.Sync()
	unix.Reboot(unix.LINUX_REBOOT_CMD_POWER_OFF)
	select {}
}

func boot() error {
	for _, m := range []struct{ src, dst, typ string }{
		{"proc", "/proc", "proc"}, {"sysfs", "/sys", "sysfs"}, {"devtmpfs", "/dev", "devtmpfs"},
		{"tmpfs", "/run", "tmpfs"}, {"tmpfs", "/tmp", "tmpfs"},
	} {
		os.MkdirAll(m.dst, 0o755)
		if err := unix.Mount(m.src, m.dst, m.typ, 0, ""); err != nil && err != unix.EBUSY {
			return fmt.Errorf("mount %s: %w", m.dst, err)
		}
	}
	os.MkdirAll("/etc/usbhotplugd", 0o755)
	startRecord() // before the modules: their coldplug events are kept too
	b, err := os.ReadFile("/modules.list")
	if err != nil {
		return err
	}
	for _, m := range strings.Fields(string(b)) {
		if err := insmod(m); err != nil {
			fmt.Fprintf(os.Stderr, "vmguest: insmod %s: %v\n", m, err)
		}
	}
	go backendPorts()
	return nil
}

func insmod(path string) error {
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	err = unix.FinitModule(int(f.Fd()), "", 0)
	if err == unix.EEXIST {
		return nil
	}
	return err
}

// portPath finds the device of the virtio-serial port with that name.
func portPath(name string) (string, error) {
	ms, _ := filepath.Glob("/sys/class/virtio-ports/*/name")
	for _, m := range ms {
		b, err := os.ReadFile(m)
		if err == nil && strings.TrimSpace(string(b)) == name {
			return "/dev/" + filepath.Base(filepath.Dir(m)), nil
		}
	}
	return "", fmt.Errorf("no virtio-serial port named %s", name)
}

func openPort(name string) (*os.File, error) {
	p, err := portPath(name)
	if err != nil {
		return nil, err
	}
	return os.OpenFile(p, os.O_RDWR, 0)
}

type request struct {
	Op   string   `json:"op"`
	Args []string `json:"args,omitempty"`
	Data string   `json:"data,omitempty"`
}

type reply struct {
	OK  bool   `json:"ok"`
	Err string `json:"err,omitempty"`
	Out string `json:"out,omitempty"`
}

func serve(ctl *os.File) {
	sc := bufio.NewScanner(ctl)
	sc.Buffer(make([]byte, 1<<20), 16<<20)
	enc := json.NewEncoder(ctl)
	for sc.Scan() {
		var req request
		var rep reply
		if err := json.Unmarshal(sc.Bytes(), &req); err != nil {
			rep.Err = err.Error()
		} else if req.Op == "poweroff" {
			enc.Encode(reply{OK: true})
			return
		} else {
			out, err := handle(req)
			rep.Out = out
			if err != nil {
				rep.Err = errText(err)
			} else {
				rep.OK = true
			}
		}
		enc.Encode(rep)
	}
}

// errText names an errno by its symbol (ENODEV), as scenarios expect.
func errText(err error) string {
	var en syscall.Errno
	for e := err; e != nil; {
		if x, ok := e.(syscall.Errno); ok {
			en = x
			break
		}
		u, ok := e.(interface{ Unwrap() error })
		if !ok {
			break
		}
		e = u.Unwrap()
	}
	if en != 0 {
		return unix.ErrnoName(en) + ": " + err.Error()
	}
	return err.Error()
}
