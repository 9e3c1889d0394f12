package usbsysfs_test

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/usbhotplugd/usbhotplugd/internal/fakekernel"
	"github.com/usbhotplugd/usbhotplugd/internal/usbsysfs"
)

// heldFS is the standard tree read with a short lock wait, busid's lock
// held; release lets it go.
func heldFS(t *testing.T, busid string) (sys *usbsysfs.FS, release func()) {
	t.Helper()
	sys, _ = standard(t)
	sys = sys.WithLockWait(20 * time.Millisecond)
	release, err := fakekernel.HoldDevice(sys.Root(), busid)
	if err != nil {
		t.Fatal(err)
	}
	return sys, release
}

// A device whose lock the kernel holds (a driver probing it) reads as
// busy once the wait is over, and the rest of the bus reads on; when the
// kernel lets go, Unlocked says so and the device reads whole.
func TestLockWaitBusy(t *testing.T) {
	sys, release := heldFS(t, "1-3")
	_, err := sys.Device("1-3")
	if !errors.Is(err, usbsysfs.ErrBusy) {
		t.Fatalf("held device: %v, want ErrBusy", err)
	}
	// Read as busy at once while its first read still waits.
	if _, err := sys.Device("1-3"); !errors.Is(err, usbsysfs.ErrBusy) {
		t.Fatalf("held device, again: %v, want ErrBusy", err)
	}
	devs, err := sys.Devices()
	unread, rest := usbsysfs.Partial(err)
	if rest != nil || len(unread) != 1 || unread[0].BusID != "1-3" || !errors.Is(unread[0].Err, usbsysfs.ErrBusy) {
		t.Fatalf("scan: unread %v, err %v", unread, rest)
	}
	if len(devs) != 8 {
		t.Fatalf("scan read %d devices, want the 8 others", len(devs))
	}
	select {
	case <-sys.Unlocked():
		t.Fatal("told unlocked while held")
	default:
	}
	release()
	select {
	case <-sys.Unlocked():
	case <-time.After(10 * time.Second):
		t.Fatal("not told when the kernel let go")
	}
	if got := sys.TakeUnlocked(); !slices.Equal(got, []string{"1-3"}) {
		t.Fatalf("unlocked %v, want [1-3]", got)
	}
	d, err := sys.Device("1-3")
	if err != nil || d.Serial != "4C530001230517117244" || d.NumInterfaces != 1 {
		t.Fatalf("after release: %+v, %v", d, err)
	}
}

// A hub's lock is held while a child of it is probed: its other children
// wait for their parent's hash.
func TestLockWaitParent(t *testing.T) {
	sys, release := heldFS(t, "1-1")
	if _, err := sys.Device("1-1.6"); !errors.Is(err, usbsysfs.ErrBusy) || !strings.Contains(err.Error(), "its hub 1-1") {
		t.Fatalf("child of a held hub: %v, want ErrBusy naming the hub", err)
	}
	if _, err := sys.Device("1-4"); err != nil {
		t.Fatalf("a device under another hub: %v", err)
	}
	release()
	<-sys.Unlocked()
	want, err := sys.Device("1-1.2")
	if err != nil {
		t.Fatal(err)
	}
	// Read once, the hub's hash is kept (while it is that hub): its children
	// read while it is held again.
	release, err = fakekernel.HoldDevice(sys.Root(), "1-1")
	if err != nil {
		t.Fatal(err)
	}
	defer release()
	for _, b := range []string{"1-1.2", "1-1.3"} {
		d, err := sys.Device(b)
		if err != nil || d.ParentHash != want.ParentHash {
			t.Errorf("%s under the held hub read once: %v, parent hash %q, want %q", b, err, d.ParentHash, want.ParentHash)
		}
	}
	if _, err := sys.Device("1-1"); !errors.Is(err, usbsysfs.ErrBusy) {
		t.Errorf("the held hub itself: %v, want ErrBusy", err)
	}
}

// Without a wait (the commands), a read waits for the kernel as long as
// it holds the lock.
func TestNoLockWaitWaits(t *testing.T) {
	sys, _ := standard(t)
	release, err := fakekernel.HoldDevice(sys.Root(), "1-3")
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { _, err := sys.Device("1-3"); done <- err }()
	select {
	case err := <-done:
		t.Fatalf("read while held ended: %v", err)
	case <-time.After(50 * time.Millisecond):
	}
	release()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
}

// A hub replaced by another at its busid and address (another controller
// taking the bus number of one removed: a root hub's address is always 1)
// is hashed anew for its children: a rule naming the first by its hash
// must not match behind the second.
func TestLockWaitHubReplaced(t *testing.T) {
	plain, _ := realTree(t)
	sys := plain.WithLockWait(time.Second)
	before, err := sys.Device("1-1")
	if err != nil {
		t.Fatal(err)
	}
	// The controller goes and another comes at bus 1: its directory is
	// made anew, its serial (its PCI address) differs.
	dir, err := filepath.EvalSymlinks(filepath.Join(sys.Root(), "bus/usb/devices/usb1"))
	if err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(dir, dir+".gone"); err != nil {
		t.Fatal(err)
	}
	if err := fakekernel.Copy(dir+".gone", dir); err != nil {
		t.Fatal(err)
	}
	if err := os.RemoveAll(dir + ".gone"); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "serial"), []byte("0000:3d:00.0\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	truth, err := plain.Device("1-1")
	if err != nil {
		t.Fatal(err)
	}
	if truth.ParentHash == before.ParentHash {
		t.Fatalf("the new controller hashes as the old one: %q", truth.ParentHash)
	}
	after, err := sys.Device("1-1")
	if err != nil || after.ParentHash != truth.ParentHash {
		t.Errorf("behind the new controller: %v, parent hash %s, want %s (the old one's %s)", err, after.ParentHash, truth.ParentHash, before.ParentHash)
	}
}

// A bind to a dom0 driver runs the driver's probe inside the write, under
// the device's lock: past the probe wait it fails with ErrBusy and goes
// on in the kernel, the device reads as busy meanwhile, and Unlocked says
// when the kernel is done. Other devices are written meanwhile.
func TestLockWaitProbeWrite(t *testing.T) {
	sys, _ := standard(t)
	sys = sys.WithLockWait(20 * time.Millisecond)
	for _, intf := range []string{"1-4:1.0", "1-5:1.0"} {
		if err := sys.UnbindFrom(intf, "usbhid"); err != nil {
			t.Fatal(err)
		}
	}
	release, err := fakekernel.HoldDevice(sys.Root(), "1-4")
	if err != nil {
		t.Fatal(err)
	}
	defer release()
	if err := sys.Bind("1-4:1.0", "usbhid"); !errors.Is(err, usbsysfs.ErrBusy) || !strings.Contains(err.Error(), "bind 1-4:1.0 to usbhid") {
		t.Fatalf("a bind the kernel is still at: %v, want ErrBusy naming it", err)
	}
	if err := sys.Probe("1-4:1.0"); !errors.Is(err, usbsysfs.ErrBusy) {
		t.Errorf("another write meanwhile: %v, want ErrBusy", err)
	}
	if _, err := sys.Device("1-4"); !errors.Is(err, usbsysfs.ErrBusy) {
		t.Errorf("a read meanwhile: %v, want ErrBusy", err)
	}
	if err := sys.Bind("1-5:1.0", "usbhid"); err != nil {
		t.Errorf("another device's bind: %v", err)
	}
	release()
	<-sys.Unlocked()
	if got := sys.TakeUnlocked(); !slices.Equal(got, []string{"1-4"}) {
		t.Errorf("unlocked %v, want 1-4", got)
	}
	if drv, err := sys.Driver("1-4:1.0"); err != nil || drv != "usbhid" {
		t.Errorf("after the probe 1-4:1.0 has driver %q (%v), want usbhid", drv, err)
	}
	if err := sys.Probe("1-4:1.0"); err != nil {
		t.Errorf("a write once the kernel let go: %v", err)
	}
}

func TestOnlyBusy(t *testing.T) {
	busy := fmt.Errorf("bind 1-2:1.0: %w", usbsysfs.ErrBusy)
	other := errors.New("invalid argument")
	for _, c := range []struct {
		err  error
		want bool
	}{
		{nil, false},
		{usbsysfs.ErrBusy, true},
		{busy, true},
		{errors.Join(busy, busy), true},
		{fmt.Errorf("release: %w", errors.Join(busy, fmt.Errorf("x: %w", busy))), true},
		{errors.Join(busy, other), false},
		{fmt.Errorf("release: %w", errors.Join(other, busy)), false},
		{other, false},
	} {
		if got := usbsysfs.OnlyBusy(c.err); got != c.want {
			t.Errorf("OnlyBusy(%v) = %v, want %v", c.err, got, c.want)
		}
	}
}

// A probe write that ended after the wait with an error is told by the
// next write of it, which is not made (the caller goes on to the next
// interface instead of trying this one, as slowly, again); the one after
// is made. A device that left leaves nothing to tell.
func TestLockWaitLateFailure(t *testing.T) {
	sys, k := standard(t)
	sys = sys.WithLockWait(20 * time.Millisecond)
	k.Fail = func(w fakekernel.Write) error {
		if w.Path == "bus/usb/drivers/usbhid/bind" {
			return &fs.PathError{Op: "write", Path: w.Path, Err: syscall.EINVAL}
		}
		return nil
	}
	for _, intf := range []string{"1-4:1.0", "1-5:1.0", "1-1.6:1.0"} {
		if err := sys.UnbindFrom(intf, "usbhid"); err != nil {
			t.Fatal(err)
		}
	}
	for _, b := range []string{"1-4", "1-5", "1-1.6"} {
		release, err := fakekernel.HoldDevice(sys.Root(), b)
		if err != nil {
			t.Fatal(err)
		}
		if err := sys.Bind(b+":1.0", "usbhid"); !errors.Is(err, usbsysfs.ErrBusy) {
			t.Fatalf("%s: %v, want ErrBusy", b, err)
		}
		release()
		for !slices.Contains(sys.TakeUnlocked(), b) {
			<-sys.Unlocked()
		}
	}
	n := len(k.Writes())
	if err := sys.Bind("1-4:1.0", "usbhid"); !errors.Is(err, syscall.EINVAL) || errors.Is(err, usbsysfs.ErrBusy) || !strings.Contains(err.Error(), "after the wait") {
		t.Errorf("the next bind: %v, want the late EINVAL", err)
	}
	if len(k.Writes()) != n {
		t.Errorf("the next bind was written: %v", k.Writes()[n:])
	}
	if err := sys.Bind("1-4:1.0", "usbhid"); !errors.Is(err, syscall.EINVAL) || len(k.Writes()) != n+1 {
		t.Errorf("the bind after: %v, %d writes", err, len(k.Writes())-n)
	}
	sys.ForgetLate("1-5")
	if err := sys.Bind("1-5:1.0", "usbhid"); !errors.Is(err, syscall.EINVAL) || len(k.Writes()) != n+2 {
		t.Errorf("after the device left: %v, %d writes, want it written", err, len(k.Writes())-n)
	}
	// Another write of the interface between (through usbback, as an
	// attach makes it): the late ending no longer answers.
	if err := sys.Bind("1-1.6:1.0", "usbback"); err != nil {
		t.Fatal(err)
	}
	if err := sys.UnbindFrom("1-1.6:1.0", "usbback"); err != nil {
		t.Fatal(err)
	}
	n = len(k.Writes())
	if err := sys.Bind("1-1.6:1.0", "usbhid"); !errors.Is(err, syscall.EINVAL) || strings.Contains(err.Error(), "after the wait") || len(k.Writes()) != n+1 {
		t.Errorf("a bind after another write of it: %v, %d writes, want it written", err, len(k.Writes())-n)
	}
}

// A probe write still in the kernel when its device leaves (ForgetLate)
// ends for that device: the next device at the busid is not told of it.
func TestLockWaitLateFailureAfterLeave(t *testing.T) {
	sys, k := standard(t)
	sys = sys.WithLockWait(20 * time.Millisecond)
	k.Fail = func(w fakekernel.Write) error {
		if w.Path == "bus/usb/drivers/usbhid/bind" {
			return &fs.PathError{Op: "write", Path: w.Path, Err: syscall.EINVAL}
		}
		return nil
	}
	if err := sys.UnbindFrom("1-4:1.0", "usbhid"); err != nil {
		t.Fatal(err)
	}
	release, err := fakekernel.HoldDevice(sys.Root(), "1-4")
	if err != nil {
		t.Fatal(err)
	}
	if err := sys.Bind("1-4:1.0", "usbhid"); !errors.Is(err, usbsysfs.ErrBusy) {
		t.Fatalf("%v, want ErrBusy", err)
	}
	sys.ForgetLate("1-4") // it left while the write was in the kernel
	release()
	for !slices.Contains(sys.TakeUnlocked(), "1-4") {
		<-sys.Unlocked()
	}
	n := len(k.Writes())
	if err := sys.Bind("1-4:1.0", "usbhid"); !errors.Is(err, syscall.EINVAL) || strings.Contains(err.Error(), "after the wait") || len(k.Writes()) != n+1 {
		t.Errorf("the next device's bind: %v, %d writes, want it written", err, len(k.Writes())-n)
	}
}
