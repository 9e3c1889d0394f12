package daemon

import (
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/usbhotplugd/usbhotplugd/internal/fakekernel"
	"github.com/usbhotplugd/usbhotplugd/internal/usbsysfs"
)

// failingWriter is the fake kernel, but every sysfs write fails with errno
// while broken, as a kernel with a wedged driver answers.
type failingWriter struct {
	usbsysfs.Writer
	broken atomic.Bool
	errno  syscall.Errno
}

func (w *failingWriter) WriteAttr(p string, b []byte) error {
	if w.broken.Load() {
		return &fs.PathError{Op: "write", Path: p, Err: w.errno}
	}
	return w.Writer.WriteAttr(p, b)
}

const denyAudio = "[[rule]]\nname = \"audio\"\naction = \"deny\"\nmatch = { id = \"0d8c:0014\" }\n"

// converge waits, on a watch stream, for a failed decision of busid while
// the fault lasts, heals the fault, then waits for a decision of busid
// that is not a failure: the agent converged.
func (h *host) converge(w *raw, busid string, heal func()) {
	h.t.Helper()
	failed := false
	for !failed {
		d := decode(h.t, w.line())
		failed = field(d, "decision", "busid") == busid && field(d, "decision", "action") == "failed"
	}
	heal()
	for {
		d := decode(h.t, w.line())
		if field(d, "decision", "busid") == busid && field(d, "decision", "action") != "failed" {
			return
		}
	}
}

// The fault soak: each fault lasts a while, then ends; the agent converges
// once it ends and does not end itself (its StoreFailAfter is long), and
// nothing hangs (every wait has the test's deadline).
func TestFaultSoak(t *testing.T) {
	for _, errno := range []string{"EACCES", "ENOSPC", "EAGAIN"} {
		t.Run("store answers "+errno, func(t *testing.T) {
			h := newHost(t)
			p := h.throughErrProxy()
			p.errno.Store(&errno)
			h.cfg.StoreFailAfter = time.Hour
			done := h.startReady()
			w := h.dialRaw()
			w.ask(`{"request":"watch"}`)
			p.broken.Store(true)
			h.writePolicy(denyAudio)
			h.dialRaw().ask(`{"request":"reload"}`)
			h.converge(w, "1-2", func() { p.broken.Store(false) })
			h.stillRunning(done)
		})
	}
	for _, errno := range []syscall.Errno{syscall.EIO, syscall.EBUSY} {
		t.Run("sysfs writes fail with "+errno.Error(), func(t *testing.T) {
			h := newHost(t)
			fw := &failingWriter{Writer: fakekernel.NewKernel(h.cfg.Sysfs), errno: errno}
			h.cfg.SysfsWriter = fw
			done := h.startReady()
			w := h.dialRaw()
			w.ask(`{"request":"watch"}`)
			fw.broken.Store(true)
			h.writePolicy(denyAudio)
			h.dialRaw().ask(`{"request":"reload"}`)
			h.converge(w, "1-2", func() { fw.broken.Store(false) })
			h.stillRunning(done)
			for _, intf := range []string{"1-2:1.0", "1-2:1.3"} {
				if b, _ := os.Readlink(filepath.Join(h.cfg.Sysfs, "bus/usb/devices", intf, "driver")); filepath.Base(b) == "usbback" {
					t.Errorf("%s still in usbback after the fault ended", intf)
				}
			}
		})
	}
	t.Run("state directory cannot be written", func(t *testing.T) {
		h := newHost(t)
		done := h.startReady()
		// The status file's place taken by a directory: every write of it
		// fails (root ignores modes, so a read-only directory would not).
		status := filepath.Join(h.cfg.StateDir, StatusFile)
		// Awaited from before the mkdir: the agent may try a write at any
		// moment after it, and says so once.
		warned := h.log.await("status: cannot write the status file")
		// The agent may write the file again between the remove and
		// the mkdir: then remove it again.
		for {
			if err := os.Remove(status); err != nil && !errors.Is(err, fs.ErrNotExist) {
				t.Fatal(err)
			}
			err := os.Mkdir(status, 0o755)
			if err == nil {
				break
			}
			if !errors.Is(err, fs.ErrExist) {
				t.Fatal(err)
			}
		}
		w := h.dialRaw()
		w.ask(`{"request":"watch"}`)
		h.writePolicy(denyAudio)
		h.dialRaw().ask(`{"request":"reload"}`)
		h.await(warned, "cannot write the status file")
		for {
			d := decode(t, w.line())
			if field(d, "decision", "busid") == "1-2" && field(d, "decision", "action") == "denied" {
				break
			}
		}
		again := h.log.await("status: the status file is written again")
		if err := os.Remove(status); err != nil {
			t.Fatal(err)
		}
		h.writePolicy(goodPolicy)
		h.dialRaw().ask(`{"request":"reload"}`)
		h.await(again, "written again")
		h.stillRunning(done)
	})
}

func (h *host) stillRunning(done <-chan error) {
	h.t.Helper()
	select {
	case err := <-done:
		h.t.Fatalf("the agent ended: %v\n%s", err, h.log.String())
	default:
	}
}
