package xenstore

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"strconv"
	"sync"
	"sync/atomic"
)

// A Conn is a connection to a xenstore daemon. It is safe for concurrent
// use by many goroutines.
type Conn struct {
	ops // operations outside any transaction (tx id 0)

	rwc io.ReadWriteCloser

	wmu  sync.Mutex // serialises writes of whole messages
	wbuf []byte     // guarded by wmu

	seq atomic.Uint32

	mu      sync.Mutex
	pending map[uint32]chan reply // guarded by mu
	watches map[string]*watcher   // by token; guarded by mu
	closed  bool                  // Close was called; guarded by mu
	err     error                 // why the reader stopped; guarded by mu

	done      chan struct{} // closed when the reader has stopped
	closeOnce sync.Once
	wg        sync.WaitGroup // the reader and the watch pumps
}

type reply struct {
	typ     MsgType
	payload []byte
	err     error
}

// NewConn starts a Conn over rwc, for example a unix socket or, in tests,
// one end of a net.Pipe. The Conn owns rwc and closes it.
func NewConn(rwc io.ReadWriteCloser) *Conn {
	c := &Conn{
		rwc:     rwc,
		pending: make(map[uint32]chan reply),
		watches: make(map[string]*watcher),
		done:    make(chan struct{}),
	}
	c.ops = ops{c: c}
	c.wg.Add(1)
	go c.readLoop()
	return c
}

// Done is closed when the connection has ended, by Close or by its loss.
func (c *Conn) Done() <-chan struct{} { return c.done }

// Err tells why the connection ended: nil while it is up, net.ErrClosed
// after Close, or an error wrapping ErrDisconnected after a loss.
func (c *Conn) Err() error {
	select {
	case <-c.done:
	default:
		return nil
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.err
}

// Close closes the connection, fails pending calls with net.ErrClosed, closes
// every watch channel, and waits for the Conn's goroutines. It may be called
// more than once.
func (c *Conn) Close() error {
	var err error
	c.closeOnce.Do(func() {
		c.mu.Lock()
		c.closed = true
		c.mu.Unlock()
		err = c.rwc.Close()
		<-c.done
	})
	c.wg.Wait()
	return err
}

func (c *Conn) readLoop() {
	defer c.wg.Done()
	var hdr [HeaderSize]byte
	var err error
	for {
		if _, err = io.ReadFull(c.rwc, hdr[:]); err != nil {
			break
		}
		var h Header
		if h, err = ParseHeader(hdr[:]); err != nil {
			break
		}
		payload := make([]byte, h.Len)
		if _, err = io.ReadFull(c.rwc, payload); err != nil {
			break
		}
		if h.Type == TypeWatchEvent {
			c.deliverWatch(payload)
			continue
		}
		c.mu.Lock()
		ch := c.pending[h.ReqID]
		delete(c.pending, h.ReqID)
		c.mu.Unlock()
		if ch == nil {
			continue // its caller gave up
		}
		r := reply{typ: h.Type, payload: payload}
		if h.Type == TypeError {
			r.err = parseErrorPayload(payload)
		}
		ch <- r
	}
	c.mu.Lock()
	if c.closed {
		c.err = net.ErrClosed
	} else {
		c.err = fmt.Errorf("%w: %w", ErrDisconnected, err)
		c.rwc.Close()
	}
	for id, ch := range c.pending {
		ch <- reply{err: c.err}
		delete(c.pending, id)
	}
	ws := c.watches
	c.watches = map[string]*watcher{}
	c.mu.Unlock()
	for _, w := range ws {
		w.stop()
	}
	close(c.done)
}

// Raw sends one request and returns the payload of its reply. It is the
// building block of every other call and is exported for tools and tests
// that speak the protocol directly. An ERROR reply becomes a syscall.Errno.
func (c *Conn) Raw(ctx context.Context, typ MsgType, txid uint32, payload []byte) ([]byte, error) {
	if len(payload) > PayloadMax {
		return nil, fmt.Errorf("%w: payload of %d bytes exceeds %d", errTooBig, len(payload), PayloadMax)
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	ch := make(chan reply, 1)
	c.mu.Lock()
	if c.closed || c.err != nil {
		err := c.err
		if c.closed {
			err = net.ErrClosed
		}
		c.mu.Unlock()
		return nil, err
	}
	id := c.seq.Add(1)
	if id == 0 { // 0 is what watch events carry
		id = c.seq.Add(1)
	}
	c.pending[id] = ch
	c.mu.Unlock()

	c.wmu.Lock()
	c.wbuf = AppendHeader(c.wbuf[:0], Header{Type: typ, ReqID: id, TxID: txid, Len: uint32(len(payload))})
	c.wbuf = append(c.wbuf, payload...)
	_, err := c.rwc.Write(c.wbuf)
	c.wmu.Unlock()
	if err != nil {
		c.forget(id)
		select {
		case <-c.done:
			return nil, c.Err()
		default:
		}
		return nil, fmt.Errorf("%w: %w", ErrDisconnected, err)
	}

	select {
	case r := <-ch:
		if r.err != nil {
			return nil, r.err
		}
		if r.typ != typ {
			return nil, &ProtocolError{Msg: fmt.Sprintf("reply of type %v to %v", r.typ, typ)}
		}
		return r.payload, nil
	case <-ctx.Done():
		c.forget(id)
		return nil, ctx.Err()
	}
}

func (c *Conn) forget(id uint32) {
	c.mu.Lock()
	delete(c.pending, id)
	c.mu.Unlock()
}

var errTooBig = errors.New("request too large")

// ops holds the operations that work both inside and outside a
// transaction; Conn and Tx embed it.
type ops struct {
	c  *Conn
	tx uint32
}

func pathArg(p string) []byte {
	b := make([]byte, 0, len(p)+1)
	b = append(b, p...)
	return append(b, 0)
}

func (o ops) pathOp(ctx context.Context, typ MsgType, path string, extra []byte) ([]byte, error) {
	if err := ValidatePath(path); err != nil {
		return nil, opError(typ, path, err)
	}
	payload := pathArg(path)
	payload = append(payload, extra...)
	r, err := o.c.Raw(ctx, typ, o.tx, payload)
	return r, opError(typ, path, err)
}

func (o ops) ack(ctx context.Context, typ MsgType, path string, extra []byte) error {
	r, err := o.pathOp(ctx, typ, path, extra)
	if err != nil {
		return err
	}
	return checkOK(typ, path, r)
}

func checkOK(typ MsgType, path string, r []byte) error {
	if !bytes.Equal(r, []byte("OK\x00")) && !bytes.Equal(r, []byte("OK")) {
		return opError(typ, path, &ProtocolError{Msg: fmt.Sprintf("reply %q, want OK", r)})
	}
	return nil
}

// Read returns the value of a node.
func (o ops) Read(ctx context.Context, path string) ([]byte, error) {
	return o.pathOp(ctx, TypeRead, path, nil)
}

// Write sets the value of a node, creating it and its missing parents.
func (o ops) Write(ctx context.Context, path string, value []byte) error {
	return o.ack(ctx, TypeWrite, path, value)
}

// Mkdir creates a node with an empty value; an existing node is left alone.
func (o ops) Mkdir(ctx context.Context, path string) error {
	return o.ack(ctx, TypeMkdir, path, nil)
}

// Rm removes a node and everything below it. A missing node whose parent
// exists is not an error.
func (o ops) Rm(ctx context.Context, path string) error {
	return o.ack(ctx, TypeRm, path, nil)
}

// GetPerms returns the permission list of a node.
func (o ops) GetPerms(ctx context.Context, path string) (Perms, error) {
	var r []byte
	var err error
	if len(path) > 0 && path[0] == '@' { // special watch nodes carry permissions too
		r, err = o.special(ctx, TypeGetPerms, path, nil)
	} else {
		r, err = o.pathOp(ctx, TypeGetPerms, path, nil)
	}
	if err != nil {
		return nil, err
	}
	ps, err := decodePerms(r)
	return ps, opError(TypeGetPerms, path, err)
}

// SetPerms replaces the permission list of a node.
func (o ops) SetPerms(ctx context.Context, path string, perms Perms) error {
	if len(perms) == 0 {
		return opError(TypeSetPerms, path, fmt.Errorf("%w: empty list", ErrInvalidPerm))
	}
	extra := appendPerms(nil, perms)
	if len(path) > 0 && path[0] == '@' {
		r, err := o.special(ctx, TypeSetPerms, path, extra)
		if err != nil {
			return err
		}
		return checkOK(TypeSetPerms, path, r)
	}
	return o.ack(ctx, TypeSetPerms, path, extra)
}

func (o ops) special(ctx context.Context, typ MsgType, path string, extra []byte) ([]byte, error) {
	if err := ValidateWatchPath(path); err != nil {
		return nil, opError(typ, path, err)
	}
	r, err := o.c.Raw(ctx, typ, o.tx, append(pathArg(path), extra...))
	return r, opError(typ, path, err)
}

// Exists reports whether a node exists.
func (o ops) Exists(ctx context.Context, path string) (bool, error) {
	_, err := o.Read(ctx, path)
	if err == nil {
		return true, nil
	}
	if errors.Is(err, errNoEnt) {
		return false, nil
	}
	return false, err
}

// Directory lists the children of a node in the store's order (creation
// order for the C xenstored). A list too large for one reply (E2BIG) is
// fetched in parts with DIRECTORY_PART, restarting if the node changes
// between parts.
func (o ops) Directory(ctx context.Context, path string) ([]string, error) {
	r, err := o.pathOp(ctx, TypeDirectory, path, nil)
	if err == nil {
		return splitStrings(r), nil
	}
	if !errors.Is(err, errTooBigErrno) {
		return nil, err
	}
	return o.directoryPart(ctx, path)
}

func (o ops) directoryPart(ctx context.Context, path string) ([]string, error) {
	for try := 0; try < maxDirTries; try++ {
		var acc []byte
		gen := ""
		restart := false
		for {
			arg := []byte(strconv.Itoa(len(acc)))
			arg = append(arg, 0)
			r, err := o.pathOp(ctx, TypeDirectoryPart, path, arg)
			if err != nil {
				return nil, err
			}
			g, rest, ok := bytes.Cut(r, []byte{0})
			if !ok {
				return nil, opError(TypeDirectoryPart, path, &ProtocolError{Msg: "reply without generation"})
			}
			if gen == "" {
				gen = string(g)
			} else if gen != string(g) {
				restart = true
				break
			}
			if len(rest) == 0 || (len(rest) == 1 && rest[0] == 0) {
				break // offset past the end
			}
			acc = append(acc, rest...)
			if len(acc) >= 2 && acc[len(acc)-1] == 0 && acc[len(acc)-2] == 0 {
				acc = acc[:len(acc)-1]
				break
			}
			if len(acc) > 1<<24 {
				return nil, opError(TypeDirectoryPart, path, &ProtocolError{Msg: "directory larger than 16 MiB"})
			}
		}
		if !restart {
			return splitStrings(acc), nil
		}
	}
	return nil, opError(TypeDirectoryPart, path, fmt.Errorf("directory kept changing: %w", errAgainErrno))
}

// GetDomainPath returns the home path of a domain, /local/domain/<domid>.
func (c *Conn) GetDomainPath(ctx context.Context, domid uint32) (string, error) {
	r, err := c.Raw(ctx, TypeGetDomainPath, 0, pathArg(strconv.FormatUint(uint64(domid), 10)))
	if err != nil {
		return "", opError(TypeGetDomainPath, strconv.FormatUint(uint64(domid), 10), err)
	}
	return string(bytes.TrimRight(r, "\x00")), nil
}

// IsDomainIntroduced asks whether a domain's connection is introduced.
func (c *Conn) IsDomainIntroduced(ctx context.Context, domid uint32) (bool, error) {
	d := strconv.FormatUint(uint64(domid), 10)
	r, err := c.Raw(ctx, TypeIsDomainIntroduced, 0, pathArg(d))
	if err != nil {
		return false, opError(TypeIsDomainIntroduced, d, err)
	}
	switch string(bytes.TrimRight(r, "\x00")) {
	case "T":
		return true, nil
	case "F":
		return false, nil
	}
	return false, opError(TypeIsDomainIntroduced, d, &ProtocolError{Msg: fmt.Sprintf("reply %q", r)})
}

// Introduce tells the store about a domain's ring (dom0 only).
func (c *Conn) Introduce(ctx context.Context, domid uint32, gfn uint64, evtchn uint32) error {
	d := strconv.FormatUint(uint64(domid), 10)
	p := fmt.Appendf(nil, "%d\x00%d\x00%d\x00", domid, gfn, evtchn)
	r, err := c.Raw(ctx, TypeIntroduce, 0, p)
	if err != nil {
		return opError(TypeIntroduce, d, err)
	}
	return checkOK(TypeIntroduce, d, r)
}

// Release tells the store that a domain is gone (dom0 only).
func (c *Conn) Release(ctx context.Context, domid uint32) error {
	d := strconv.FormatUint(uint64(domid), 10)
	r, err := c.Raw(ctx, TypeRelease, 0, pathArg(d))
	if err != nil {
		return opError(TypeRelease, d, err)
	}
	return checkOK(TypeRelease, d, r)
}
