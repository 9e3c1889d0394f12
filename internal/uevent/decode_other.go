//go:build !linux

package uevent

import (
	"errors"
	"fmt"
	"runtime"
)

// decode needs go-udev's netlink package, which builds on Linux only.
func decode([]byte) (string, string, map[string]string, error) {
	return "", "", nil, fmt.Errorf("uevent: decoding not implemented on %s: %w", runtime.GOOS, errors.ErrUnsupported)
}
