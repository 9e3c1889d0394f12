package agent_test

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/usbhotplugd/usbhotplugd/internal/agent"
	"github.com/usbhotplugd/usbhotplugd/internal/fakekernel"
	"github.com/usbhotplugd/usbhotplugd/internal/uevent"
	"github.com/usbhotplugd/usbhotplugd/internal/xenstore/xenstoretest"
	"github.com/usbhotplugd/usbhotplugd/policy"
)

const storagePolicy = `
[[rule]]
name = "sticks-to-desk"
action = "attach"
match = { interface = "storage" }
target = { domain = "desk" }
`

// dom0's mounts: its root, and a data volume on the stick's partition.
const (
	rootMount = "28 1 8:1 / / rw - ext4 /dev/sda1 rw\n"
	dataMount = "41 28 8:65 / /srv/data rw,relatime - ext4 /dev/sde1 rw\n"
)

// diskEnv is an env whose 1-3 is a stick with a disk sde and its partition
// sde1, and whose mounts are read from a file mount writes.
func diskEnv(t *testing.T, s xenstoretest.Store) *env {
	e := newEnv(t, s)
	err := (&fakekernel.Builder{Root: e.root}).AddDisk("1-3:1.0", fakekernel.Disk{Name: "sde", Dev: "8:64",
		Parts: []fakekernel.Disk{{Name: "sde1", Dev: "8:65"}}}).Err()
	if err != nil {
		t.Fatal(err)
	}
	e.mountinfo = filepath.Join(t.TempDir(), "mountinfo")
	return e
}

// holderOfSde is where sysfs shows that name holds the stick's disk.
func (e *env) holderOfSde(name string) string {
	return filepath.Join(e.root, "devices/pci0000:00/0000:00:14.0/usb1/1-3/1-3:1.0/host4/target4:0:0/4:0:0:0/block/sde/holders", name)
}

// mount makes the mounts dom0 has those of table.
func (e *env) mount(table string) {
	e.t.Helper()
	if err := os.WriteFile(e.mountinfo, []byte(table), 0o644); err != nil {
		e.t.Fatal(err)
	}
}

// A disk dom0 uses (mounted, or under device-mapper) stays in dom0 even
// when a rule sends it away; once free, a reload passes it.
func TestAgentKeepsDisksDom0Uses(t *testing.T) {
	xenstoretest.ForEach(t, func(t *testing.T, s xenstoretest.Store) {
		e := diskEnv(t, s)
		e.mount(rootMount + dataMount)
		e.run(storagePolicy, false)
		if _, ok := e.at("1-3"); ok {
			t.Fatal("a disk dom0 has mounted was passed through")
		}
		if e.driverOf("1-3:1.0") != "usb-storage" {
			t.Errorf("storage driver: %q", e.driverOf("1-3:1.0"))
		}
		if log := e.logText(); !strings.Contains(log, "/dev/sde1 is mounted on /srv/data") || !strings.Contains(log, "built-in guard") {
			t.Errorf("the refusal does not say why:\n%s", log)
		}
		// Unmounted, but held by device-mapper: still in use.
		e.mount(rootMount)
		holder := e.holderOfSde("dm-0")
		if err := os.Mkdir(holder, 0o755); err != nil {
			t.Fatal(err)
		}
		p, err := policy.Parse("again.toml", []byte(storagePolicy), nil)
		if err != nil {
			t.Fatal(err)
		}
		e.a.Reload(p)
		e.settle()
		if _, ok := e.at("1-3"); ok {
			t.Fatal("a disk under device-mapper was passed through")
		}
		e.awaitLog("/dev/sde is held by dm-0")
		// Free: the next reload passes it.
		if err := os.Remove(holder); err != nil {
			t.Fatal(err)
		}
		e.a.Reload(p)
		if r := e.await("1-3", "attached"); r.Domain != "desk" {
			t.Errorf("the free disk: %+v", r)
		}
	})
}

// madeBy says whether r was made by a pass for why, or by the rescan the
// store's watches bring when they are set: that one may come after the
// agent is ready, at any step, and then takes the pass over the disk
// (a queued device keeps its first trigger).
func madeBy(r agent.Audit, why agent.Trigger) bool {
	return r.Trigger == why || r.Trigger == agent.TrigDomains
}

// A disk refused while dom0 uses it is passed as soon as dom0 lets it go,
// with no reload: an unmount (the mount watch) and then the end of the
// device-mapper device that held it (its remove uevent) each bring a pass
// over the disks, and only the free disk is attached.
func TestAgentPassesADiskOnceDom0LetsItGo(t *testing.T) {
	xenstoretest.ForEach(t, func(t *testing.T, s xenstoretest.Store) {
		e := diskEnv(t, s)
		e.mount(rootMount + dataMount)
		e.run(storagePolicy, false)
		if _, ok := e.at("1-3"); ok {
			t.Fatal("a disk dom0 has mounted was passed through")
		}
		e.awaitLog("/dev/sde1 is mounted on /srv/data; a device dom0 uses is never passed through (built-in guard): once dom0 unmounts it")
		// Unmounted, but held by device-mapper now: looked at again,
		// refused for that.
		holder := e.holderOfSde("dm-0")
		if err := os.Mkdir(holder, 0o755); err != nil {
			t.Fatal(err)
		}
		e.mount(rootMount)
		e.a.StorageChanged(agent.TrigMounts)
		if r := e.await("1-3", agent.ActDenied); !madeBy(r, agent.TrigMounts) || !strings.Contains(r.Reason, "/dev/sde is held by dm-0") {
			t.Fatalf("after the unmount: %+v", r)
		}
		if _, ok := e.at("1-3"); ok {
			t.Fatal("a disk under device-mapper was passed through")
		}
		// dm-0 goes: its remove uevent.
		if err := os.Remove(holder); err != nil {
			t.Fatal(err)
		}
		ev, err := uevent.Parse([]byte("remove@/devices/virtual/block/dm-0\x00ACTION=remove\x00DEVPATH=/devices/virtual/block/dm-0\x00SUBSYSTEM=block\x00DEVNAME=dm-0\x00DEVTYPE=disk\x00SEQNUM=7\x00MAJOR=254\x00MINOR=0\x00"))
		if err != nil {
			t.Fatal(err)
		}
		e.a.Handle(e.ctx, uevent.Message{Event: ev})
		if r := e.await("1-3", agent.ActAttached); r.Domain != "desk" || !madeBy(r, agent.TrigHolderGone) {
			t.Errorf("the free disk: %+v", r)
		}
	})
}

// md lets go of a member with no event (mdadm --remove): while a disk is
// denied because device-mapper or md holds it, the agent looks at it
// again on its own, and passes it once free. A dm table resumed onto
// other disks sends a change event, which looks at once.
func TestAgentPassesADiskStackedDevicesLetGoOf(t *testing.T) {
	agent.HeldEvery(t, 20*time.Millisecond)
	xenstoretest.ForEach(t, func(t *testing.T, s xenstoretest.Store) {
		e := diskEnv(t, s)
		holder := e.holderOfSde("md0")
		if err := os.Mkdir(holder, 0o755); err != nil {
			t.Fatal(err)
		}
		e.mount(rootMount)
		e.run(storagePolicy, false)
		e.awaitLog("/dev/sde is held by md0")
		if err := os.Remove(holder); err != nil {
			t.Fatal(err)
		}
		if r := e.await("1-3", agent.ActAttached); r.Domain != "desk" || !madeBy(r, agent.TrigHeldLook) {
			t.Errorf("the free disk: %+v", r)
		}
	})
}

func TestAgentLooksAtDisksWhenADmTableChanges(t *testing.T) {
	xenstoretest.ForEach(t, func(t *testing.T, s xenstoretest.Store) {
		e := diskEnv(t, s)
		holder := e.holderOfSde("dm-3")
		if err := os.Mkdir(holder, 0o755); err != nil {
			t.Fatal(err)
		}
		e.mount(rootMount)
		e.run(storagePolicy, false)
		e.awaitLog("/dev/sde is held by dm-3")
		if err := os.Remove(holder); err != nil { // pvmove's end
			t.Fatal(err)
		}
		ev, err := uevent.Parse([]byte("change@/devices/virtual/block/dm-3\x00ACTION=change\x00DEVPATH=/devices/virtual/block/dm-3\x00SUBSYSTEM=block\x00DEVNAME=dm-3\x00DEVTYPE=disk\x00SEQNUM=9\x00MAJOR=254\x00MINOR=3\x00DM_COOKIE=4194304\x00"))
		if err != nil {
			t.Fatal(err)
		}
		e.a.Handle(e.ctx, uevent.Message{Event: ev})
		if r := e.await("1-3", agent.ActAttached); r.Domain != "desk" || !madeBy(r, agent.TrigHolderGone) {
			t.Errorf("the free disk: %+v", r)
		}
	})
}

// The watch of dom0's mounts is opened before the first scan reads them,
// so that an unmount just after that read is not missed: by the first
// decision, a mountinfo that cannot be watched has been said.
func TestAgentWatchesMountsBeforeTheFirstScan(t *testing.T) {
	xenstoretest.ForEach(t, func(t *testing.T, s xenstoretest.Store) {
		e := newEnv(t, s)
		e.mountinfo = filepath.Join(t.TempDir(), "no-such-mountinfo")
		said := make(chan bool, 1) // at the first decision
		e.onAudit = func(agent.Audit) {
			select {
			case said <- strings.Contains(e.logText(), "dom0's mounts are not watched"):
			default:
			}
		}
		e.run(storagePolicy, false)
		if !<-said {
			t.Errorf("the first decision came before the mount watch was opened:\n%s", e.logText())
		}
	})
}

// Under NoWatches (the replay) dom0's mounts are not watched either: the
// replay's timeline must not depend on the mounts of the host it runs on.
func TestAgentNoWatchesWatchesNoMounts(t *testing.T) {
	xenstoretest.ForEach(t, func(t *testing.T, s xenstoretest.Store) {
		e := newEnv(t, s)
		p, err := policy.Parse("test.toml", []byte(storagePolicy), nil)
		if err != nil {
			t.Fatal(err)
		}
		a := agent.New(agent.Config{Host: e.h, Policy: p, Log: zerolog.New(e), NoWatches: true,
			Mountinfo: filepath.Join(t.TempDir(), "no-such-mountinfo")})
		ctx, cancel := context.WithCancel(e.ctx)
		ready := make(chan struct{})
		done := make(chan error, 1)
		go func() { done <- a.Run(ctx, never{}, func() { close(ready) }) }()
		select {
		case <-ready:
		case err := <-done:
			t.Fatalf("agent stopped: %v", err)
		}
		cancel()
		if err := <-done; err != nil {
			t.Fatal(err)
		}
		if strings.Contains(e.logText(), "dom0's mounts are not watched") {
			t.Errorf("the mounts were watched under NoWatches:\n%s", e.logText())
		}
	})
}

// An unmount leaves mountinfo before the kernel has written the
// filesystem out and closed it, with no event at the close: the disk is
// refused while its filesystem is open, and passed once it closes, by the
// looks the mount watch takes again meanwhile.
func TestAgentPassesADiskOnceItsFilesystemCloses(t *testing.T) {
	xenstoretest.ForEach(t, func(t *testing.T, s xenstoretest.Store) {
		e := diskEnv(t, s)
		open := filepath.Join(e.root, "fs/ext4/sde1") // what ext4 lists while open
		if err := os.MkdirAll(open, 0o755); err != nil {
			t.Fatal(err)
		}
		e.mount(rootMount + dataMount)
		e.run(storagePolicy, false)
		e.awaitLog("/dev/sde1 is mounted on /srv/data")
		// umount: the mount is gone, the filesystem not yet.
		e.mount(rootMount)
		e.a.MountsChanged()
		if r := e.await("1-3", agent.ActDenied); !strings.Contains(r.Reason, "/dev/sde1: its ext4 filesystem is still open") {
			t.Fatalf("while the filesystem is written out: %+v", r)
		}
		if _, ok := e.at("1-3"); ok {
			t.Fatal("a disk whose filesystem is open was passed through")
		}
		// The unmount is done.
		if err := os.Remove(open); err != nil {
			t.Fatal(err)
		}
		if r := e.await("1-3", agent.ActAttached); r.Domain != "desk" || !madeBy(r, agent.TrigMounts) {
			t.Errorf("once closed: %+v", r)
		}
	})
}

// The agent's explanation of a disk dom0 has mounted is the decision its
// passes make: denied by the built-in guard, not the rule's attach.
func TestExplainSaysADiskDom0UsesStays(t *testing.T) {
	xenstoretest.ForEach(t, func(t *testing.T, s xenstoretest.Store) {
		e := diskEnv(t, s)
		e.mount(rootMount + dataMount)
		e.run(storagePolicy, false)
		ex, err := e.a.Explain("1-3")
		if err != nil || len(ex) != 1 {
			t.Fatalf("explain: %v %v", ex, err)
		}
		if d := ex[0].Explanation.Decision; d.Action != policy.Deny || !strings.Contains(d.Reason, "/dev/sde1 is mounted on /srv/data") {
			t.Errorf("explained as %s: %s", d.Action, d.Reason)
		}
	})
}
