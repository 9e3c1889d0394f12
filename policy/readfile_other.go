//go:build !linux

package policy

import (
	"fmt"
	"io"
	"os"
)

// readRegular reads a policy file: a regular file of at most MaxFileSize
// bytes.
func readRegular(path string) ([]byte, error) {
	return ReadRegular(path, MaxFileSize, "a policy file")
}

// ReadRegular reads a regular file of at most max bytes (a whole number
// of MiB); what names the kind of file in the error. Off Linux it checks
// the type after a plain open (an open of a FIFO may block there); the
// agent runs on Linux only, this serves `check` on a workstation.
func ReadRegular(path string, max int64, what string) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return nil, err
	}
	if !st.Mode().IsRegular() {
		return nil, fmt.Errorf("%s: %w (%s)", path, ErrNotRegular, st.Mode().Type())
	}
	b, err := io.ReadAll(io.LimitReader(f, max+1))
	if err != nil {
		return nil, err
	}
	if int64(len(b)) > max {
		return nil, fmt.Errorf("%s: more than %d MiB: %s is at most %d MiB (%w)", path, max>>20, what, max>>20, ErrLimit)
	}
	return b, nil
}
