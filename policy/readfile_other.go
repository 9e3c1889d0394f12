//go:build !linux

package policy

import (
	"fmt"
	"io"
	"os"
)

// readRegular reads a regular file of at most MaxFileSize bytes. Off
// Linux it checks the type after a plain open (an open of a FIFO may
// block there); the agent runs on Linux only, this serves `check` on a
// workstation.
func readRegular(path string) ([]byte, error) {
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
	b, err := io.ReadAll(io.LimitReader(f, MaxFileSize+1))
	if err != nil {
		return nil, err
	}
	if len(b) > MaxFileSize {
		return nil, fmt.Errorf("%s: %w: a policy file is at most %d MiB", path, ErrLimit, MaxFileSize>>20)
	}
	return b, nil
}
