package usbsysfs

import (
	"bytes"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"syscall"
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

// What a fixture tree may hold in an attribute's place is read without
// waiting or without end: a FIFO with no writer reads empty, an endless
// file is refused past 1 MiB, naming its path.
func TestReadSmallFIFOAndEndless(t *testing.T) {
	dir := t.TempDir()
	fifo := filepath.Join(dir, "serial")
	if err := syscall.Mkfifo(fifo, 0o644); err != nil {
		t.Fatal(err)
	}
	if got, err := readSmall(fifo); err != nil || len(got) != 0 {
		t.Errorf("FIFO: %q, %v", got, err)
	}
	zero := filepath.Join(dir, "descriptors")
	if err := os.Symlink("/dev/zero", zero); err != nil {
		t.Fatal(err)
	}
	_, err := readSmall(zero)
	if !errors.Is(err, ErrBadAttr) || !strings.Contains(err.Error(), zero) {
		t.Errorf("/dev/zero: %v", err)
	}
	big := bytes.Repeat([]byte{1}, maxAttr)
	if err := os.WriteFile(filepath.Join(dir, "big"), big, 0o644); err != nil {
		t.Fatal(err)
	}
	if got, err := readSmall(filepath.Join(dir, "big")); err != nil || len(got) != maxAttr {
		t.Errorf("1 MiB: %d bytes, %v", len(got), err)
	}
}

// An attribute is written whole, with the error of the step that failed.
func TestWriteSmall(t *testing.T) {
	p := filepath.Join(t.TempDir(), "bind")
	if err := os.WriteFile(p, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := writeSmall(p, []byte("1-1.6:1.0")); err != nil {
		t.Fatal(err)
	}
	if b, err := os.ReadFile(p); err != nil || string(b) != "1-1.6:1.0" {
		t.Errorf("wrote %q, %v", b, err)
	}
	err := writeSmall(filepath.Join(filepath.Dir(p), "unbind"), []byte("x"))
	if pe, ok := err.(*fs.PathError); !ok || pe.Op != "open" || !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("a missing file: %v", err)
	}
	if _, err := os.Stat("/dev/full"); err == nil { // a write that fails
		err := writeSmall("/dev/full", []byte("x"))
		if pe, ok := err.(*fs.PathError); !ok || pe.Op != "write" {
			t.Errorf("/dev/full: %v", err)
		}
	}
}
