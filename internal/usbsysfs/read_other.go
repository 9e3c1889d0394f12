//go:build !linux

package usbsysfs

import (
	"io"
	"io/fs"
	"os"
	"path/filepath"
)

// readSmall reads a file whole. Off Linux there is no sysfs: this serves
// fixture trees (a policy's check or generate on a workstation), and a
// FIFO there still blocks.
func readSmall(path string) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, maxAttr+1))
	if err == nil && len(b) > maxAttr {
		err = &fs.PathError{Op: "read", Path: path, Err: errTooLarge}
	}
	return b, err
}

// An attrDir is a directory whose attributes are read.
type attrDir struct{ path string }

func openAttrDir(dir string) attrDir { return attrDir{path: dir} }

func (d attrDir) read(name string) ([]byte, error) { return readSmall(filepath.Join(d.path, name)) }

func (d attrDir) dup() attrDir { return d }

func (d attrDir) close() {}

// writeSmall writes a file that exists.
func writeSmall(path string, data []byte) error {
	f, err := os.OpenFile(path, os.O_WRONLY, 0)
	if err != nil {
		return err
	}
	_, err = f.Write(data)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	return err
}
