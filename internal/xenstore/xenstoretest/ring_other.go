//go:build !linux

package xenstoretest

import (
	"errors"
	"fmt"
	"io"
	"runtime"
)

// OpenRing needs Linux's shared memory and event channel stand-ins.
func OpenRing(string, uint32) (io.ReadWriteCloser, error) {
	return nil, fmt.Errorf("xenstoretest: rings not implemented on %s: %w", runtime.GOOS, errors.ErrUnsupported)
}
