//go:build !linux

package uevent

import (
	"context"
	"errors"
	"fmt"
	"runtime"
)

// A Listener receives kernel uevents; only Linux has them.
type Listener struct{}

// Listen is not available on this system.
func Listen(int) (*Listener, error) {
	return nil, fmt.Errorf("uevent: not implemented on %s/%s: %w", runtime.GOOS, runtime.GOARCH, errors.ErrUnsupported)
}

// Receive is not available on this system.
func (l *Listener) Receive(context.Context) (Message, error) { return Message{}, errors.ErrUnsupported }

// Close does nothing.
func (l *Listener) Close() error { return nil }

// ListenFrom is not available on this system.
func ListenFrom(int, uint32) (*Listener, error) { return Listen(0) }
