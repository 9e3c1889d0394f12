package vmtest

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/usbhotplugd/usbhotplugd/internal/qmp"
	"github.com/usbhotplugd/usbhotplugd/internal/usbsysfs"
)

// Guest port names; the guest program (guest/) looks them up by name.
var guestPorts = []string{"org.usbhotplugd.xenbus", "org.usbhotplugd.tool", "org.usbhotplugd.usbback"}

// Controllers every VM has, at fixed PCI slots so that the guest's root
// hubs (whose serial is their PCI address) can be told apart.
var controllers = []struct{ id, dev, addr string }{
	{"xhci", "qemu-xhci,p2=8,p3=8", "0x4"},
	{"ehci", "usb-ehci", "0x5"},
	{"uhci", "piix3-usb-uhci", "0x6"},
}

// companionControllers are an ICH9 EHCI and its three UHCI companions
// (scenario statement "companions"): a full- or low-speed device plugged
// at EHCI port N the kernel hands to the companion that serves that port,
// at its port (N-1)%2+1. Their root hubs' serials are 0000:00:09.F.
var companionControllers = []struct{ id, dev, addr string }{
	{"ich", "ich9-usb-ehci1,multifunction=on", "0x9.7"},
	{"ich-uhci1", "ich9-usb-uhci1,masterbus=ich.0,firstport=0,multifunction=on", "0x9.0"},
	{"ich-uhci2", "ich9-usb-uhci2,masterbus=ich.0,firstport=2,multifunction=on", "0x9.1"},
	{"ich-uhci3", "ich9-usb-uhci3,masterbus=ich.0,firstport=4,multifunction=on", "0x9.2"},
}

// vmControllers are the controllers of a VM, with the companions or not.
func vmControllers(companions bool) []struct{ id, dev, addr string } {
	if companions {
		return append(slices.Clone(controllers), companionControllers...)
	}
	return controllers
}

// Drives are raw images the scenarios' storage devices use (drive=dN),
// each with a FAT partition (drive.go).
const Drives = 6

// A VM is one booted guest.
type VM struct {
	dir     string
	cmd     *exec.Cmd
	exited  chan struct{}
	qmp     *qmp.Client
	ctl     net.Conn
	ctlR    *bufio.Reader
	ctlMu   sync.Mutex
	console string
}

// VMConfig is what a VM is started with.
type VMConfig struct {
	Image    *Image
	Dir      string
	XSSocket string   // the host store's socket
	Coldplug []string // -device arguments of devices present at boot
	// Companions adds companionControllers.
	Companions bool
}

// StartVM boots a guest and waits until its control port answers.
func StartVM(ctx context.Context, c VMConfig) (*VM, error) {
	v := &VM{dir: c.Dir, exited: make(chan struct{}), console: filepath.Join(c.Dir, "console.log")}
	// no_timer_check: on a busy host TCG's timer can be too slow for the
	// kernel's IO-APIC timer check, which then panics at boot.
	args := []string{"-accel", "tcg", "-M", "q35", "-cpu", "max", "-m", "512", "-smp", "1", "-nodefaults", "-nographic",
		"-kernel", c.Image.Kernel, "-initrd", c.Image.Initrd,
		"-append", "console=ttyS0 loglevel=4 panic=-1 rdinit=/init no_timer_check",
		"-serial", "file:" + v.console, "-no-reboot",
		// S3 offered in the ACPI tables, for the scenarios that suspend dom0.
		"-global", "ICH9-LPC.disable_s3=0",
		"-qmp", "unix:" + filepath.Join(c.Dir, "qmp.sock") + ",server=on,wait=off",
		"-device", "virtio-serial-pci,id=vser,addr=0x8",
		"-chardev", "socket,id=ctl,path=" + filepath.Join(c.Dir, "ctl.sock") + ",server=on,wait=off",
		"-device", "virtserialport,chardev=ctl,name=org.usbhotplugd.control",
		// The back end a usb-serial takes (chardev=ser0): it has to have one,
		// open (QEMU attaches the device only then; a null one never opens).
		"-chardev", "ringbuf,id=ser0",
	}
	for i, p := range guestPorts {
		args = append(args, "-chardev", fmt.Sprintf("socket,id=xs%d,path=%s", i, c.XSSocket),
			"-device", fmt.Sprintf("virtserialport,chardev=xs%d,name=%s", i, p))
	}
	for _, h := range vmControllers(c.Companions) {
		args = append(args, "-device", fmt.Sprintf("%s,id=%s,addr=%s", h.dev, h.id, h.addr))
	}
	for i := 0; i < Drives; i++ {
		img := filepath.Join(c.Dir, fmt.Sprintf("d%d.img", i))
		if err := formatDrive(img); err != nil {
			return nil, err
		}
		args = append(args, "-drive", fmt.Sprintf("if=none,id=d%d,file=%s,format=raw", i, img))
	}
	for _, d := range c.Coldplug {
		args = append(args, "-device", d)
	}
	v.cmd = exec.Command("qemu-system-x86_64", args...)
	qlog, err := os.Create(filepath.Join(c.Dir, "qemu.log"))
	if err != nil {
		return nil, err
	}
	defer qlog.Close()
	v.cmd.Stdout, v.cmd.Stderr = qlog, qlog
	if err := v.cmd.Start(); err != nil {
		return nil, fmt.Errorf("qemu-system-x86_64 (apt-get install qemu-system-x86): %w", err)
	}
	go func() { v.cmd.Wait(); close(v.exited) }()
	if err := v.connect(ctx); err != nil {
		v.Close()
		return nil, err
	}
	return v, nil
}

func (v *VM) connect(ctx context.Context) error {
	deadline := time.Now().Add(30 * time.Second)
	var err error
	for {
		select {
		case <-v.exited:
			b, _ := os.ReadFile(filepath.Join(v.dir, "qemu.log"))
			return fmt.Errorf("qemu exited at start: %s", b)
		default:
		}
		v.ctl, err = net.Dial("unix", filepath.Join(v.dir, "ctl.sock"))
		if err == nil {
			break
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("qemu opened no control socket: %w", err)
		}
		time.Sleep(20 * time.Millisecond) // polling for QEMU's socket file to appear
	}
	v.ctlR = bufio.NewReaderSize(v.ctl, 1<<20)
	qc, err := qmp.Dial(ctx, filepath.Join(v.dir, "qmp.sock"))
	if err != nil {
		b, _ := os.ReadFile(filepath.Join(v.dir, "qemu.log"))
		return fmt.Errorf("%w: qemu: %s", err, b)
	}
	v.qmp = qc
	bctx, cancel := context.WithTimeout(ctx, 180*time.Second)
	defer cancel()
	if _, err := v.Call(bctx, "ping", "", nil); err != nil {
		return fmt.Errorf("the guest did not come up: %w (console: %s)", err, tail(v.Console(), 3000))
	}
	return nil
}

// Console is the guest's serial console so far.
func (v *VM) Console() string {
	b, _ := os.ReadFile(v.console)
	return string(b)
}

// ErrGuest is a failure the guest reported.
var ErrGuest = errors.New("guest")

// Call runs one operation in the guest.
func (v *VM) Call(ctx context.Context, op, data string, args []string) (string, error) {
	v.ctlMu.Lock()
	defer v.ctlMu.Unlock()
	if dl, ok := ctx.Deadline(); ok {
		v.ctl.SetDeadline(dl)
	} else {
		v.ctl.SetDeadline(time.Now().Add(120 * time.Second))
	}
	b, _ := json.Marshal(map[string]any{"op": op, "args": args, "data": data})
	if _, err := v.ctl.Write(append(b, '\n')); err != nil {
		return "", fmt.Errorf("guest %s: %w", op, err)
	}
	line, err := v.ctlR.ReadBytes('\n')
	if err != nil {
		return "", fmt.Errorf("guest %s: %w", op, err)
	}
	var rep struct {
		OK       bool
		Err, Out string
	}
	if err := json.Unmarshal(line, &rep); err != nil {
		return "", fmt.Errorf("guest %s: %w: %q", op, err, line)
	}
	if !rep.OK {
		return rep.Out, fmt.Errorf("%w: %s %s: %s", ErrGuest, op, strings.Join(args, " "), rep.Err)
	}
	return rep.Out, nil
}

// Devices reads the guest's USB devices from its sysfs.
// A device going away while it is read makes the read fail (ENODEV,
// ENOENT): the next read does not see it.
func (v *VM) Devices(ctx context.Context) ([]usbsysfs.Device, error) {
	var out string
	var err error
	for try := 0; try < 20; try++ {
		out, err = v.Call(ctx, "devices", "", nil)
		if err == nil || !errors.Is(err, ErrGuest) || !(strings.Contains(err.Error(), "ENODEV") || strings.Contains(err.Error(), "ENOENT")) {
			break
		}
	}
	if err != nil {
		return nil, err
	}
	var d []usbsysfs.Device
	return d, json.Unmarshal([]byte(out), &d)
}

// QMP runs a QMP command.
func (v *VM) QMP(ctx context.Context, cmd string, args any) error {
	return v.qmp.Run(ctx, cmd, args, nil)
}

// Close stops QEMU.
func (v *VM) Close() {
	if v.qmp != nil {
		v.qmp.Close()
	}
	if v.ctl != nil {
		v.ctl.Close()
	}
	if v.cmd.Process != nil {
		v.cmd.Process.Kill()
	}
	<-v.exited
}
