package xenstore_test

import (
	"context"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/usbhotplugd/usbhotplugd/internal/xenstore"
)

// Dial that reaches no store says why for each path it tried, on one
// line, and errors.Is sees each reason.
func TestDialSaysEveryPath(t *testing.T) {
	if _, err := os.Stat("/dev/xen/xenbus"); err == nil {
		t.Skip("/dev/xen/xenbus exists: this is a dom0, where Dial reaches its store")
	}
	dir := t.TempDir()
	t.Setenv("XENSTORED_PATH", "")
	t.Setenv("XENSTORED_RUNDIR", dir)
	_, err := xenstore.Dial(context.Background())
	if err == nil || strings.Contains(err.Error(), "\n") || strings.Contains(err.Error(), "[") ||
		!strings.Contains(err.Error(), filepath.Join(dir, "socket")) || !strings.Contains(err.Error(), "/dev/xen/xenbus") || !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("Dial: %v", err)
	}
}

// A path that is no socket and no character device is refused before
// anything is written to it: a request would land in the file.
func TestDialPathRefusesAFile(t *testing.T) {
	f := filepath.Join(t.TempDir(), "notes.txt")
	if err := os.WriteFile(f, []byte("mine\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, p := range []string{f, filepath.Dir(f)} {
		if _, err := xenstore.DialPath(context.Background(), p); !errors.Is(err, xenstore.ErrNotStore) {
			t.Errorf("%s: %v", p, err)
		}
	}
	if b, _ := os.ReadFile(f); string(b) != "mine\n" {
		t.Errorf("the file now holds %q", b)
	}
}
