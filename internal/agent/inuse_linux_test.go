package agent_test

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/usbhotplugd/usbhotplugd/internal/agent"
	"github.com/usbhotplugd/usbhotplugd/internal/nstest"
	"github.com/usbhotplugd/usbhotplugd/internal/xenstore/xenstoretest"
	"github.com/usbhotplugd/usbhotplugd/policy"
)

// A stick whose unmount is still writing it out, on a filesystem that
// shows that nowhere (vfat, exfat): the mount is gone from the table, but
// the kernel still holds its partition, and refuses an exclusive open of
// it. The agent does not pass it then, and passes it once the kernel lets
// it go, with no other event. The partition is a real loop device, held
// as an unmount holds it.
func TestAgentPassesADiskOnceDom0LetsGoOfIt(t *testing.T) {
	loop := nstest.Loop(t)
	xenstoretest.ForEach(t, func(t *testing.T, s xenstoretest.Store) {
		e := diskEnv(t, s)
		dev := filepath.Join(e.root, ".dev") // the fixture's own /dev
		if err := os.MkdirAll(dev, 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.Symlink(loop, filepath.Join(dev, "sde1")); err != nil {
			t.Fatal(err)
		}
		e.mount(rootMount + dataMount)
		e.run(storagePolicy, false)
		e.awaitLog("/dev/sde1 is mounted on /srv/data")
		// umount begins: the mount is gone, the partition still held.
		fd, err := unix.Open(loop, unix.O_RDONLY|unix.O_EXCL|unix.O_CLOEXEC, 0)
		if err != nil {
			t.Fatal(err)
		}
		e.mount(rootMount)
		e.a.MountsChanged()
		r := e.await("1-3", agent.ActDenied)
		if !strings.Contains(r.Reason, "/dev/sde1 is open in dom0") {
			unix.Close(fd)
			t.Fatalf("while the partition is held: %+v", r)
		}
		if _, ok := e.at("1-3"); ok {
			unix.Close(fd)
			t.Fatal("a disk dom0 holds was passed through")
		}
		// explain says what the pass found, though it asks no open itself.
		if ex, err := e.a.Explain("1-3"); err != nil || len(ex) != 1 || ex[0].Explanation.Decision.Action != policy.Deny || !strings.Contains(ex[0].Explanation.Decision.Reason, "/dev/sde1 is open in dom0") {
			unix.Close(fd)
			t.Fatalf("explained while held: %+v %v", ex, err)
		}
		// The unmount is done.
		unix.Close(fd)
		if r := e.await("1-3", agent.ActAttached); r.Domain != "desk" || !madeBy(r, agent.TrigMounts) {
			t.Errorf("once let go: %+v", r)
		}
	})
}
