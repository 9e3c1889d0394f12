package agent

import (
	"context"
	"time"
)

// HookTimeoutNow replaces the hooks' timeout for a test: the command
// running when fire is called ends as at its timeout. The returned
// function restores the clock.
func HookTimeoutNow() (fire func(), restore func()) {
	old := hookContext
	ends := make(chan struct{})
	hookContext = func(ctx context.Context, _ time.Duration) (context.Context, context.CancelFunc) {
		ctx, cancel := context.WithCancelCause(ctx)
		go func() {
			select {
			case <-ends:
				cancel(errHookTimeout)
			case <-ctx.Done():
			}
		}()
		return ctx, func() { cancel(context.Canceled) }
	}
	return func() { close(ends) }, func() { hookContext = old }
}

// QueueHook asks for r's rule command as a decision does.
func (a *Agent) QueueHook(r Audit) { a.hook(r) }

// HookQueue is how many commands may wait.
const HookQueue = hookQueue

// MountsChanged is what the watch of dom0's mounts does when they change.
func (a *Agent) MountsChanged() { a.wakeMounts() }

// HeldEvery makes the looks at a disk device-mapper or md holds d apart
// until the test ends.
func HeldEvery(t interface{ Cleanup(func()) }, d time.Duration) {
	old := heldEvery
	heldEvery = d
	t.Cleanup(func() { heldEvery = old })
}

// ForgetPort drops what the agent remembers of busid's port, as a rescan
// that read the store in the middle of a detach and its write-back leaves
// it.
func (a *Agent) ForgetPort(busid string) {
	a.mu.Lock()
	defer a.mu.Unlock()
	delete(a.ports, busid)
}

// BeforePass has the worker call f with the busid of each device's pass
// before the pass: a test changes the host between two passes there.
func (a *Agent) BeforePass(f func(busid string)) { a.beforePass.Store(&f) }
