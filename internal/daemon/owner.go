package daemon

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"time"

	"golang.org/x/sync/errgroup"
)

// owner runs the daemon's tasks: the first that fails, or that returns
// before the stop, cancels the context of all.
type owner struct {
	g   *errgroup.Group
	ctx context.Context

	mu      sync.Mutex
	running []string
}

func newOwner(ctx context.Context) *owner {
	g, ctx := errgroup.WithContext(ctx)
	return &owner{g: g, ctx: ctx}
}

// errStoppedEarly is a task's end while nothing asked it to stop.
var errStoppedEarly = errors.New("stopped unexpectedly")

// Go starts task name.
func (o *owner) Go(name string, task func(ctx context.Context) error) {
	o.mu.Lock()
	o.running = append(o.running, name)
	o.mu.Unlock()
	o.g.Go(func() error {
		err := task(o.ctx)
		o.mu.Lock()
		if i := slices.Index(o.running, name); i >= 0 {
			o.running = slices.Delete(o.running, i, i+1)
		}
		o.mu.Unlock()
		switch {
		case o.ctx.Err() != nil && (err == nil || errors.Is(err, context.Canceled)):
			return nil
		case err == nil:
			err = errStoppedEarly
		}
		return fmt.Errorf("%s: %w", name, err)
	})
}

// Alive says no task has ended.
func (o *owner) Alive() bool {
	if o.ctx.Err() != nil {
		return false
	}
	o.mu.Lock()
	defer o.mu.Unlock()
	return len(o.running) > 0
}

// Wait returns the first task's error once all have ended, or, when some
// do not end within timeout of the stop, an error naming them: the
// process exits then all the same (its goroutines end with it).
func (o *owner) Wait(timeout time.Duration) error {
	done := make(chan error, 1)
	go func() { done <- o.g.Wait() }()
	select {
	case err := <-done:
		return err
	case <-o.ctx.Done():
	}
	t := time.NewTimer(timeout)
	defer t.Stop()
	select {
	case err := <-done:
		return err
	case <-t.C:
		o.mu.Lock()
		defer o.mu.Unlock()
		return fmt.Errorf("tasks still running %v after the stop: %v (cause: %w)", timeout, o.running, context.Cause(o.ctx))
	}
}
