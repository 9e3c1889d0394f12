package vmtest

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/usbhotplugd/usbhotplugd/internal/usbsysfs"
)

// A machine is where a scenario's steps happen: a VM with the real
// kernel (vmMachine), or the fake kernel in this process (fakeMachine).
// The store, the simulated backends and domains, the conditions and the
// invariants are the runner's, the same for both.
type machine interface {
	// Devices reads the USB devices from the machine's sysfs.
	Devices(ctx context.Context) ([]usbsysfs.Device, error)
	// AgentLog is the agent's log so far (one JSON line a record), "" if
	// no agent has run.
	AgentLog(ctx context.Context) (string, error)
	// Status is the agent's status file.
	Status(ctx context.Context) (string, error)
	// KernelLog is the kernel's log as /dev/kmsg gives it ("" when the
	// machine has none).
	KernelLog(ctx context.Context) (string, error)
	// Trace is the kernel's uevents so far, as `usbhotplugd record`
	// writes them.
	Trace(ctx context.Context) (string, error)
	StartAgent(ctx context.Context, policy string) error
	// StopAgent stops the agent: with kill, as kill -9 does.
	StopAgent(ctx context.Context, kill bool) error
	Reload(ctx context.Context, policy string) error
	XL(ctx context.Context, args []string) error
	// Destroy is what `xl destroy` does for USB in dom0.
	Destroy(ctx context.Context, domid uint32) error
	// WriteSys writes an attribute, path relative to /sys.
	WriteSys(ctx context.Context, path, value string) error
	// DeviceModel starts (up) or stops an HVM guest's device model, the
	// simulated QEMU on the QMP socket libxl's QEMU has in dom0.
	DeviceModel(ctx context.Context, domid uint32, up bool) error
	Plug(ctx context.Context, p Plug) error
	Unplug(ctx context.Context, id string) error
	// Mount mounts the first partition of the disk of the USB device
	// busid on dir, in dom0; Umount unmounts dir.
	Mount(ctx context.Context, busid, dir string) error
	Umount(ctx context.Context, dir string) error
	// Suspend suspends dom0 to state (as /sys/power/state takes it) and
	// wakes it by wake (qmp), returning once it has resumed, with what
	// woke it.
	Suspend(ctx context.Context, state, wake string) (string, error)
	Close()
}

// vmMachine is a VM: the guest program does the steps.
type vmMachine struct{ *VM }

func (v vmMachine) cat(ctx context.Context, path string) (string, error) {
	return v.Call(ctx, "cat", "", []string{path})
}

func (v vmMachine) AgentLog(ctx context.Context) (string, error) {
	lg, err := v.cat(ctx, "/run/agent.log")
	if errors.Is(err, ErrGuest) {
		return "", nil // no agent started yet
	}
	return lg, err
}

func (v vmMachine) Status(ctx context.Context) (string, error) {
	return v.cat(ctx, "/run/usbhotplugd/status.json")
}

func (v vmMachine) KernelLog(ctx context.Context) (string, error) {
	return v.Call(ctx, "kmsg", "", nil)
}

func (v vmMachine) Trace(ctx context.Context) (string, error) {
	return v.cat(ctx, "/run/uevents.jsonl")
}

func (v vmMachine) StartAgent(ctx context.Context, policy string) error {
	_, err := v.Call(ctx, "start", policy, nil)
	return err
}

func (v vmMachine) StopAgent(ctx context.Context, kill bool) error {
	var args []string
	if kill {
		args = []string{"9"}
	}
	_, err := v.Call(ctx, "kill", "", args)
	return err
}

func (v vmMachine) Reload(ctx context.Context, policy string) error {
	_, err := v.Call(ctx, "reload", policy, nil)
	return err
}

func (v vmMachine) XL(ctx context.Context, args []string) error {
	_, err := v.Call(ctx, "xl", "", args)
	return err
}

func (v vmMachine) Destroy(ctx context.Context, domid uint32) error {
	_, err := v.Call(ctx, "destroy", "", []string{strconv.Itoa(int(domid))})
	return err
}

func (v vmMachine) WriteSys(ctx context.Context, path, value string) error {
	_, err := v.Call(ctx, "write", "", []string{"/sys/" + path, value})
	return err
}

func (v vmMachine) DeviceModel(ctx context.Context, domid uint32, up bool) error {
	op := "dm"
	if !up {
		op = "dm-stop"
	}
	_, err := v.Call(ctx, op, "", []string{strconv.Itoa(int(domid))})
	return err
}

func (v vmMachine) Plug(ctx context.Context, p Plug) error {
	id := p.Get("id")
	if err := v.QMP(ctx, "device_add", qmpArgs(p)); err != nil {
		return err
	}
	if p.Driver != "usb-uas" {
		return nil
	}
	disk := p.Get("disk")
	if disk == "" {
		return errors.New("usb-uas needs disk=dN")
	}
	if err := v.QMP(ctx, "device_add", map[string]any{"driver": "scsi-hd", "id": id + "-disk", "drive": disk, "bus": id + ".0"}); err != nil {
		return err
	}
	return v.QMP(ctx, "qom-set", map[string]any{"path": "/machine/peripheral/" + id, "property": "attached", "value": true})
}

func (v vmMachine) Unplug(ctx context.Context, id string) error {
	return v.QMP(ctx, "device_del", map[string]any{"id": id})
}

func (v vmMachine) Mount(ctx context.Context, busid, dir string) error {
	_, err := v.Call(ctx, "mount", "", []string{busid, dir})
	return err
}

// s3Woken is what the kernel logs on each resume from S3.
const s3Woken = "ACPI: PM: Waking up from system sleep state S3"

// Suspend has the guest write state to /sys/power/state, which returns
// once the kernel has resumed; system_wakeup is sent once QEMU reports
// the machine suspended. A wake event inside QEMU (seen: a second
// suspend's, before the host had looked) may resume it first: that is
// still a resume from S3, as the kernel's log says, and passes.
func (v vmMachine) Suspend(ctx context.Context, state, wake string) (string, error) {
	before, err := v.KernelLog(ctx)
	if err != nil {
		return "", err
	}
	done := make(chan error, 1)
	go func() {
		_, err := v.Call(ctx, "suspend", "", []string{state, wake})
		done <- err
	}()
	early, err := v.wakeWhenSuspended(ctx, done)
	if err != nil {
		return "", err
	}
	select {
	case err := <-done:
		if err != nil {
			return "", err
		}
		if !early {
			return "woken by system_wakeup", nil
		}
	case <-ctx.Done():
		return "", fmt.Errorf("suspend %s: the guest did not resume: %w", state, ctx.Err())
	}
	after, err := v.KernelLog(ctx)
	if err != nil {
		return "", err
	}
	if strings.Count(after, s3Woken) <= strings.Count(before, s3Woken) {
		return "", fmt.Errorf("suspend %s: the guest returned, but QEMU never reported it suspended and its kernel logged no %q", state, s3Woken)
	}
	return "woken inside QEMU before system_wakeup was sent", nil
}

// wakeWhenSuspended sends system_wakeup once QEMU's run state is
// "suspended"; early when the guest answered before that (its answer is
// put back in done).
func (v vmMachine) wakeWhenSuspended(ctx context.Context, done chan error) (early bool, err error) {
	for {
		var st struct{ Status string }
		if err := v.qmp.Run(ctx, "query-status", nil, &st); err != nil {
			return false, err
		}
		if st.Status == "suspended" {
			return false, v.QMP(ctx, "system_wakeup", nil)
		}
		select {
		case err := <-done:
			done <- err
			return true, nil
		case <-ctx.Done():
			return false, fmt.Errorf("QEMU did not report the machine suspended (run state %q): %w", st.Status, ctx.Err())
		case <-time.After(20 * time.Millisecond): // the next look at QEMU's run state
		}
	}
}

func (v vmMachine) Umount(ctx context.Context, dir string) error {
	_, err := v.Call(ctx, "umount", "", []string{dir})
	return err
}
