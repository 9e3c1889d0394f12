package daemon

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	sd "github.com/coreos/go-systemd/v22/daemon"
	"golang.org/x/sync/errgroup"

	"github.com/usbhotplugd/usbhotplugd/internal/xenstore"
	"github.com/usbhotplugd/usbhotplugd/policy"
)

// Dial backoff while xenstored is not there.
const (
	firstRetry = 50 * time.Millisecond
	maxRetry   = 5 * time.Second
)

// store is the store task: it dials xenstored (waiting for it as long as
// it takes), serves the agent on the connection, and dials again when
// the connection is lost. Any other end of a session is fatal.
func (d *daemon) store(ctx context.Context) error {
	backoff := firstRetry
	for {
		xs, err := d.dial(ctx)
		if err != nil {
			if ctx.Err() != nil {
				return ctx.Err()
			}
			d.st.update(func(s *Status) {
				s.State, s.Xenstore.LastError, s.Xenstore.RetryInMS = StateWaiting, err.Error(), backoff.Milliseconds()
			})
			// The message names its unit once, whatever the error says.
			d.log.Warn().Err(err).Int64("retry_in_ms", backoff.Milliseconds()).
				Msgf("xenstore: %s, retrying in %v", strings.TrimPrefix(err.Error(), "xenstore: "), backoff)
			select {
			case <-ctx.Done():
				return ctx.Err()
			case <-time.After(backoff):
			}
			backoff = min(backoff*2, maxRetry)
			continue
		}
		backoff = firstRetry
		err = d.session(ctx, xs)
		xs.Close()
		d.st.update(func(s *Status) { s.Xenstore.Connected = false })
		if ctx.Err() != nil {
			return ctx.Err()
		}
		if !errors.Is(err, xenstore.ErrDisconnected) {
			return err
		}
		d.st.update(func(s *Status) { s.State, s.Xenstore.LastError = StateWaiting, err.Error() })
		d.log.Warn().Err(err).Msg("xenstore: connection lost: reconnecting, then everything is looked at again")
	}
}

func (d *daemon) dial(ctx context.Context) (*xenstore.Conn, error) {
	if d.cfg.Xenstore != "" {
		return xenstore.DialPath(ctx, d.cfg.Xenstore)
	}
	return xenstore.Dial(ctx)
}

// session serves the agent on xs, beside a probe that ends it when the
// store answers nothing but errors.
func (d *daemon) session(ctx context.Context, xs *xenstore.Conn) error {
	d.h.XS = xs // no other task uses the connection
	d.st.update(func(s *Status) {
		s.State, s.Xenstore = StateSyncing, StoreStatus{Connected: true, Reconnects: s.Xenstore.Reconnects}
		if d.ready {
			s.Xenstore.Reconnects++
		}
	})
	g, ctx := errgroup.WithContext(ctx)
	g.Go(func() error { return d.a.Serve(ctx, d.onReady) })
	g.Go(func() error { return probeStore(ctx, xs, d.cfg.StoreFailAfter, d.suspect) })
	return g.Wait()
}

func (d *daemon) onReady() {
	d.st.update(func(s *Status) { s.State = StateReady })
	if !d.ready {
		d.ready = true
		sd.SdNotify(false, sd.SdNotifyReady+"\nSTATUS=reconciled; watching USB devices and domains")
		d.log.Info().Msg("ready: every present device reconciled")
		return
	}
	d.log.Info().Msg("reconnected to xenstore: every device reconciled again")
}

// probePath is read once a second while the store is suspect: it may be absent (ENOENT is an
// answer), but any other error means the store refused.
const probePath = "/tool/usbhotplugd/started"

// errStoreFailing is a store that answered every request with an error
// for too long: nothing the agent does can work, and systemd's restart
// (or the admin) has to.
var errStoreFailing = errors.New("xenstore answers every request with an error")

// probeStore waits, costing nothing, until a pass fails (suspect); then
// it reads probePath once a second until a read succeeds, and fails once
// every read for failAfter failed. A read that hangs counts as failed. An
// idle agent on a healthy store so wakes for nothing.
func probeStore(ctx context.Context, xs *xenstore.Conn, failAfter time.Duration, suspect <-chan struct{}) error {
	for {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-suspect:
		}
		if err := probeUntilAnswered(ctx, xs, failAfter); err != nil {
			return err
		}
	}
}

// probeUntilAnswered is one suspect period: nil at the first answer.
func probeUntilAnswered(ctx context.Context, xs *xenstore.Conn, failAfter time.Duration) error {
	t := time.NewTicker(min(time.Second, failAfter/4))
	defer t.Stop()
	var since time.Time // of the first failure in a row
	for {
		c, cancel := context.WithTimeout(ctx, failAfter/2)
		_, err := xs.Read(c, probePath)
		cancel()
		switch {
		case ctx.Err() != nil:
			return ctx.Err()
		case err == nil || errors.Is(err, syscall.ENOENT):
			return nil
		case errors.Is(err, xenstore.ErrDisconnected):
			return err // the session's end: the store task dials again
		case since.IsZero():
			since = time.Now()
		case time.Since(since) >= failAfter:
			return fmt.Errorf("%w for %v (last: %w)", errStoreFailing, time.Since(since).Round(time.Second), err)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-t.C:
		}
	}
}

// signals is the signal task: SIGHUP reloads the policy (systemctl reload
// sends it to the unit's main process).
func (d *daemon) signals(ctx context.Context) error {
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(hup)
	for {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-hup:
			d.reload(ctx) // the outcome is logged
		}
	}
}

// ReloadResult is the policy a reload put in force, named as the status
// names the policy in force (PolicyState).
type ReloadResult struct {
	File     string    `json:"file"`
	Rules    int       `json:"rules"`
	LoadedAt time.Time `json:"loaded_at"`
}

// reload reads the policy file again: a policy that does not parse is
// refused, and the one in force stays, with its load time.
func (d *daemon) reload(ctx context.Context) (ReloadResult, error) {
	// SIGHUP and the socket may ask at once: one reload at a time, so the
	// status tells the last one.
	d.reloading.Lock()
	defer d.reloading.Unlock()
	p, err := policy.Load(ctx, d.cfg.PolicyPath, policy.Options{}) // stops when the agent does
	if err != nil {
		d.log.Error().Err(err).Str("policy", d.cfg.PolicyPath).Msg("policy reload refused: the old policy stays in force")
		d.st.update(func(s *Status) { s.Policy.ReloadError, s.Policy.ReloadRefusedAt = err.Error(), time.Now() })
		return ReloadResult{}, err
	}
	d.a.Reload(p)
	d.logWarnings(p)
	r := ReloadResult{File: p.File, Rules: len(p.Rules), LoadedAt: time.Now()}
	d.st.update(func(s *Status) {
		s.Policy = PolicyState{File: r.File, Rules: r.Rules, LoadedAt: r.LoadedAt}
	})
	return r, nil
}
