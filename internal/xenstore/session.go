package xenstore

import (
	"context"
	"sync"
	"time"
)

// A SessionEvent is a watch event, or (Reconnected set, no path) the news
// that the connection was re-established: anything may have changed while
// it was down, so the receiver should rescan.
type SessionEvent struct {
	WatchEvent
	Reconnected bool
}

// A Session keeps a connection to the store across xenstored restarts: it
// redials with exponential backoff and registers its watches again. Events
// of all its watches arrive on one channel.
type Session struct {
	dial       func(context.Context) (*Conn, error)
	MinBackoff time.Duration
	MaxBackoff time.Duration

	mu      sync.Mutex
	conn    *Conn             // guarded by mu
	watches map[string]string // token -> path; guarded by mu
	ready   chan struct{}     // closed when conn is set; guarded by mu

	events chan SessionEvent
}

// NewSession returns a session that connects with dial (for example
// func(ctx) { return Dial(ctx) }). Run drives it.
func NewSession(dial func(context.Context) (*Conn, error)) *Session {
	return &Session{
		dial:       dial,
		MinBackoff: 10 * time.Millisecond,
		MaxBackoff: 2 * time.Second,
		watches:    map[string]string{},
		ready:      make(chan struct{}),
		events:     make(chan SessionEvent, 64),
	}
}

// Events delivers the events of every watch of the session, and a
// Reconnected event after each redial.
func (s *Session) Events() <-chan SessionEvent { return s.events }

// Conn waits until the session is connected and returns the connection.
// The returned Conn may fail later with ErrDisconnected; call Conn again.
func (s *Session) Conn(ctx context.Context) (*Conn, error) {
	for {
		s.mu.Lock()
		c, ready := s.conn, s.ready
		s.mu.Unlock()
		if c != nil && c.Err() == nil {
			return c, nil
		}
		select {
		case <-ready: // closed by the next successful dial
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
}

// Watch adds a watch that lasts across reconnections. Its events arrive on
// Events.
func (s *Session) Watch(ctx context.Context, path, token string) error {
	s.mu.Lock()
	s.watches[token] = path
	c := s.conn
	s.mu.Unlock()
	if c == nil || c.Err() != nil {
		return nil // registered when the connection comes (back)
	}
	return s.register(ctx, c, path, token)
}

func (s *Session) register(ctx context.Context, c *Conn, path, token string) error {
	ch, err := c.Watch(ctx, path, token)
	if err != nil {
		return err
	}
	go func() {
		for ev := range ch {
			select {
			case s.events <- SessionEvent{WatchEvent: ev}:
			case <-c.Done():
				return
			}
		}
	}()
	return nil
}

// Run connects and reconnects until ctx ends, then closes the connection.
func (s *Session) Run(ctx context.Context) error {
	backoff := s.MinBackoff
	first := true
	for {
		c, err := s.dial(ctx)
		if err != nil {
			select {
			case <-ctx.Done():
				return nil
			case <-time.After(backoff):
			}
			backoff = min(backoff*2, s.MaxBackoff)
			continue
		}
		s.mu.Lock()
		ws := make(map[string]string, len(s.watches))
		for k, v := range s.watches {
			ws[k] = v
		}
		s.mu.Unlock()
		ok := true
		for token, path := range ws {
			if err := s.register(ctx, c, path, token); err != nil {
				ok = false
				break
			}
		}
		if !ok {
			c.Close()
			continue
		}
		backoff = s.MinBackoff
		s.mu.Lock()
		s.conn = c
		close(s.ready)
		s.ready = make(chan struct{})
		s.mu.Unlock()
		if !first {
			select {
			case s.events <- SessionEvent{Reconnected: true}:
			case <-ctx.Done():
			}
		}
		first = false
		select {
		case <-ctx.Done():
			c.Close()
			return nil
		case <-c.Done():
			c.Close()
		}
	}
}
