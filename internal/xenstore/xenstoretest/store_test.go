package xenstoretest_test

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"testing"

	"github.com/usbhotplugd/usbhotplugd/internal/xenstore/xenstoretest"
)

// oxenstored's run directory is compiled in (/var/run/xenstored): under the
// shim its socket and files land in the store's own directory, and the
// host's run directory is neither made nor touched.
func TestOxenstoredKeepsToItsDirectory(t *testing.T) {
	var before []error
	hostDirs := []string{"/var/run/xenstored", "/run/xenstored"}
	for _, d := range hostDirs {
		_, err := os.Lstat(d)
		before = append(before, err)
	}
	s := xenstoretest.Oxen(t)
	if _, err := s.Dial(t).Read(context.Background(), "/tool/xenstored"); err != nil {
		t.Fatal(err)
	}
	dir := filepath.Dir(s.SocketPath())
	for _, f := range []string{"socket", "pid", "oxenstored.log", "access.log", "evtchn", "port-0"} {
		if _, err := os.Lstat(filepath.Join(dir, f)); err != nil {
			t.Errorf("%s not in the store's directory: %v", f, err)
		}
	}
	for i, d := range hostDirs {
		if _, err := os.Lstat(d); errors.Is(before[i], os.ErrNotExist) && !errors.Is(err, os.ErrNotExist) {
			t.Errorf("%s was made on the host", d)
		}
	}
}
