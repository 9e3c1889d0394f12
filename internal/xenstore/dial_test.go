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
