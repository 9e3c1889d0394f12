package xenstore

import (
	"bytes"
	"context"
	"fmt"
	"sync"
	"syscall"
)

// A WatchEvent is one firing of a watch: the path that changed (or the
// watched path itself, on registration and for removals above it) and the
// token given to Watch.
type WatchEvent struct {
	Path  string
	Token string
}

// maxQueued bounds the events a watcher holds for a slow consumer: a
// storm of changes (a host starting fifty guests writes thousands of
// backend nodes) must not grow the agent's memory without end.
const maxQueued = 1024

// A watcher queues the events of one token, so the reader never blocks on
// a slow consumer (who may be calling the Conn itself), and a pump
// goroutine hands them to the consumer's channel in order. Past maxQueued
// the further events are dropped and stand as one event of the watched
// path itself, after the ones kept: the store says as much for a removal
// above the path, so a consumer already reads it as "anything under it
// may have changed".
type watcher struct {
	path  string
	token string
	out   chan WatchEvent

	mu       sync.Mutex
	queue    []WatchEvent // guarded by mu
	overflow bool         // events were dropped; guarded by mu
	wake     chan struct{}
	quit     chan struct{}
	once     sync.Once
}

func newWatcher(path, token string) *watcher {
	return &watcher{
		path: path, token: token,
		out:  make(chan WatchEvent, 16),
		wake: make(chan struct{}, 1),
		quit: make(chan struct{}),
	}
}

func (w *watcher) push(ev WatchEvent) {
	w.mu.Lock()
	if len(w.queue) < maxQueued {
		w.queue = append(w.queue, ev)
	} else {
		w.overflow = true
	}
	w.mu.Unlock()
	select {
	case w.wake <- struct{}{}:
	default:
	}
}

func (w *watcher) stop() { w.once.Do(func() { close(w.quit) }) }

func (w *watcher) pump() {
	defer close(w.out)
	for {
		w.mu.Lock()
		q := w.queue
		if w.overflow {
			q = append(q, WatchEvent{Path: w.path, Token: w.token})
		}
		w.queue, w.overflow = nil, false
		w.mu.Unlock()
		for _, ev := range q {
			select {
			case w.out <- ev:
			case <-w.quit:
				return
			}
		}
		select {
		case <-w.wake:
		case <-w.quit:
			return
		}
	}
}

func (c *Conn) deliverWatch(payload []byte) {
	parts := bytes.SplitN(payload, []byte{0}, 3)
	if len(parts) < 2 {
		return // malformed event: nothing to route it by
	}
	ev := WatchEvent{Path: string(parts[0]), Token: string(parts[1])}
	c.mu.Lock()
	w := c.watches[ev.Token]
	c.mu.Unlock()
	if w != nil {
		w.push(ev)
	}
}

// Watch registers a watch on path (a node path or @introduceDomain /
// @releaseDomain) and returns the channel of its events. The store fires the
// watch once at once, then on every change at or below path. The channel is
// closed by Unwatch, Close, or the loss of the connection. Tokens are unique
// per Conn.
func (c *Conn) Watch(ctx context.Context, path, token string) (<-chan WatchEvent, error) {
	if err := ValidateWatchPath(path); err != nil {
		return nil, opError(TypeWatch, path, err)
	}
	if token == "" || bytes.IndexByte([]byte(token), 0) >= 0 {
		return nil, opError(TypeWatch, path, fmt.Errorf("%w: token must be non-empty without NUL", syscall.EINVAL))
	}
	w := newWatcher(path, token)
	c.mu.Lock()
	if c.closed || c.err != nil {
		c.mu.Unlock()
		return nil, opError(TypeWatch, path, c.connErr())
	}
	if _, dup := c.watches[token]; dup {
		c.mu.Unlock()
		return nil, opError(TypeWatch, path, fmt.Errorf("token %q already in use: %w", token, syscall.EEXIST))
	}
	// Registered before the request, so the event that follows OK is kept.
	c.watches[token] = w
	c.wg.Add(1)
	c.mu.Unlock()
	go func() { defer c.wg.Done(); w.pump() }()

	r, err := c.Raw(ctx, TypeWatch, 0, append(pathArg(path), pathArg(token)...))
	if err == nil {
		err = checkOK(TypeWatch, path, r)
	}
	if err != nil {
		c.dropWatcher(token, w)
		return nil, opError(TypeWatch, path, unwrapOp(err))
	}
	return w.out, nil
}

// Unwatch removes a watch and closes its channel.
func (c *Conn) Unwatch(ctx context.Context, path, token string) error {
	if err := ValidateWatchPath(path); err != nil {
		return opError(TypeUnwatch, path, err)
	}
	r, err := c.Raw(ctx, TypeUnwatch, 0, append(pathArg(path), pathArg(token)...))
	if err == nil {
		err = checkOK(TypeUnwatch, path, r)
	}
	c.mu.Lock()
	w := c.watches[token]
	c.mu.Unlock()
	if w != nil && w.path == path {
		c.dropWatcher(token, w)
	}
	if err != nil {
		return opError(TypeUnwatch, path, unwrapOp(err))
	}
	return nil
}

func (c *Conn) dropWatcher(token string, w *watcher) {
	c.mu.Lock()
	if c.watches[token] == w {
		delete(c.watches, token)
	}
	c.mu.Unlock()
	w.stop()
}

// connErr must be called with c.mu held.
func (c *Conn) connErr() error {
	if c.closed {
		return errClosed
	}
	return c.err
}

func unwrapOp(err error) error {
	if oe, ok := err.(*OpError); ok {
		return oe.Err
	}
	return err
}
