package usbsysfs

import (
	"bytes"
	"os"
	"path/filepath"
	"testing"
)

// An attribute longer than the read buffer, or exactly its length, is
// read whole.
func TestReadSmallLong(t *testing.T) {
	dir := t.TempDir()
	for _, n := range []int{0, 1, 511, 512, 513, 1024, 4096, 5000} {
		want := bytes.Repeat([]byte("0123456789abcdef"), n/16+1)[:n]
		p := filepath.Join(dir, "attr")
		if err := os.WriteFile(p, want, 0o644); err != nil {
			t.Fatal(err)
		}
		got, err := readSmall(p)
		if err != nil || !bytes.Equal(got, want) {
			t.Errorf("%d bytes: read %d, %v", n, len(got), err)
		}
		d := openAttrDir(dir)
		got, err = d.read("attr")
		d.close()
		if err != nil || !bytes.Equal(got, want) {
			t.Errorf("%d bytes, from the directory: read %d, %v", n, len(got), err)
		}
	}
}
