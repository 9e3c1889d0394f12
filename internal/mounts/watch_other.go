//go:build !linux

package mounts

import (
	"context"
	"errors"
	"fmt"
)

// A Watcher needs Linux's pollable mountinfo; elsewhere OpenWatch fails.
type Watcher struct{}

// OpenWatch fails: see Watcher.
func OpenWatch(path string) (*Watcher, error) {
	return nil, fmt.Errorf("mounts: watching %s: %w", path, errors.ErrUnsupported)
}

// Close does nothing.
func (w *Watcher) Close() error { return nil }

// Run returns at once.
func (w *Watcher) Run(ctx context.Context, changed func()) error { return errors.ErrUnsupported }
