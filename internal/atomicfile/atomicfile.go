package atomicfile

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"syscall"
)

// ErrExists: the file to write is there already, and replacing it was not
// asked for.
var ErrExists = errors.New("file exists")

// Write puts data at path with mode perm. The data goes to a temporary
// file in the same directory, named ".NAME.*.tmp" (hidden, and with a
// suffix that policy loading and textfile collectors skip), synced, then
// renamed over path (replace) or linked to it (not replace: an existing
// path is left alone and ErrExists returned), and the directory synced.
func Write(path string, data []byte, perm fs.FileMode, replace bool) error {
	dir := filepath.Dir(path)
	f, err := os.CreateTemp(dir, "."+filepath.Base(path)+".*.tmp")
	if err != nil {
		return ofPath(path, err)
	}
	tmp := f.Name()
	err = fill(f, data, perm)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = place(tmp, path, replace)
	}
	if err != nil {
		os.Remove(tmp)
		return ofPath(path, err)
	}
	return syncDir(dir)
}

// ofPath says a failed write's error of path, not of the temporary file
// beside it, when what is wrong is path's: its directory missing or no
// directory, or a directory in its place. Looked at only after a failure.
func ofPath(path string, err error) error {
	if st, serr := os.Stat(filepath.Dir(path)); serr != nil {
		return serr
	} else if !st.IsDir() {
		return &fs.PathError{Op: "write", Path: path, Err: syscall.ENOTDIR}
	}
	if st, serr := os.Stat(path); serr == nil && st.IsDir() {
		return &fs.PathError{Op: "write", Path: path, Err: syscall.EISDIR}
	}
	return err
}

func fill(f *os.File, data []byte, perm fs.FileMode) error {
	// Chmod, not CreateTemp's 0600: the mode is perm whatever the umask.
	if err := f.Chmod(perm); err != nil {
		return err
	}
	if _, err := f.Write(data); err != nil {
		return err
	}
	return f.Sync()
}

// place makes tmp path: renamed over it, or linked where nothing is (link
// fails if path appeared meanwhile: never replaced by surprise).
func place(tmp, path string, replace bool) error {
	if replace {
		return os.Rename(tmp, path)
	}
	if err := os.Link(tmp, path); err != nil {
		if errors.Is(err, fs.ErrExist) {
			return fmt.Errorf("%s: %w", path, ErrExists)
		}
		return err
	}
	return os.Remove(tmp)
}

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}
