package xenstore

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"strconv"
	"syscall"
	"time"
)

// A Tx is an open transaction. Its reads and writes see and change a
// snapshot of the store; the changes become visible, and their watches
// fire, only when Commit succeeds. A Tx must not be used after Commit or
// Abort. It is safe for concurrent use, like its Conn.
type Tx struct {
	ops
}

// ID is the transaction id the store gave.
func (t *Tx) ID() uint32 { return t.tx }

// Begin starts a transaction.
func (c *Conn) Begin(ctx context.Context) (*Tx, error) {
	r, err := c.Raw(ctx, TypeTransactionStart, 0, []byte{0})
	if err != nil {
		return nil, opError(TypeTransactionStart, "", err)
	}
	id, perr := strconv.ParseUint(string(bytes.TrimRight(r, "\x00")), 10, 32)
	if perr != nil || id == 0 {
		return nil, opError(TypeTransactionStart, "", &ProtocolError{Msg: fmt.Sprintf("transaction id %q", r)})
	}
	return &Tx{ops{c: c, tx: uint32(id)}}, nil
}

func (t *Tx) end(ctx context.Context, commit bool) error {
	arg := []byte("F\x00")
	if commit {
		arg = []byte("T\x00")
	}
	r, err := t.c.Raw(ctx, TypeTransactionEnd, t.tx, arg)
	if err != nil {
		return opError(TypeTransactionEnd, "", err)
	}
	return checkOK(TypeTransactionEnd, "", r)
}

// Commit ends the transaction and applies it. An error wrapping
// syscall.EAGAIN means another change conflicted: run the body again.
func (t *Tx) Commit(ctx context.Context) error { return t.end(ctx, true) }

// Abort ends the transaction and discards it.
func (t *Tx) Abort(ctx context.Context) error { return t.end(ctx, false) }

// Update runs fn in a transaction and commits it, running fn again in a
// fresh transaction while the commit fails with EAGAIN, at most 16 times,
// pausing between tries (see retryPause). If fn returns an error the
// transaction is aborted and the error returned.
func (c *Conn) Update(ctx context.Context, fn func(ctx context.Context, tx *Tx) error) error {
	var err error
	for try := 0; try < maxTxRetries; try++ {
		if perr := pause(ctx, retryPause(try)); perr != nil {
			return fmt.Errorf("xenstore: transaction retry: %w", perr)
		}
		var tx *Tx
		if tx, err = c.Begin(ctx); err != nil {
			return err
		}
		if err = fn(ctx, tx); err != nil {
			// The abort's own failure matters less than fn's error; the
			// store drops the transaction with the connection anyway.
			_ = tx.Abort(context.WithoutCancel(ctx))
			if errors.Is(err, syscall.EAGAIN) {
				continue // a read inside the snapshot raced; retry
			}
			return err
		}
		if err = tx.Commit(ctx); err == nil || !errors.Is(err, syscall.EAGAIN) {
			return err
		}
	}
	return fmt.Errorf("xenstore: transaction still conflicting after %d tries: %w", maxTxRetries, err)
}

// retryPause is how long Update waits before its try-th run: none before
// the first two (a conflict is mostly one other writer, done by then),
// then doubling from 1 ms to 32 ms, with jitter, so that clients that
// conflicted do not meet again at once, and a writer that never pauses (a
// guest writing its own nodes in a loop) cannot use up every try within a
// millisecond. The 16 tries wait about 0.3 s in all.
func retryPause(try int) time.Duration {
	if try < 2 {
		return 0
	}
	d := time.Millisecond << min(try-2, 5)
	return d/2 + rand.N(d/2+1)
}

func pause(ctx context.Context, d time.Duration) error {
	if d <= 0 {
		return nil
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}
