package xenstore

import (
	"bufio"
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
	// onePerWrite: rwc takes one message a write, as Linux's
	// /dev/xen/xenbus does (it handles the first message of a write and
	// drops the rest), so a batch is written message by message.
	onePerWrite bool

	seq atomic.Uint32

	mu      sync.Mutex
	pending map[uint32]slot     // guarded by mu
	watches map[string]*watcher // by token; guarded by mu
	closed  bool                // Close was called; guarded by mu
	err     error               // why the reader stopped; guarded by mu

	done      chan struct{} // closed when the reader has stopped
	closeOnce sync.Once
	wg        sync.WaitGroup // the reader and the watch pumps
}

type reply struct {
	typ     MsgType
	payload []byte
	err     error
}

// A batch is the replies one rawMany waits for. The reader fills them in
// and wakes the caller once, at the last: a batch of n requests costs one
// goroutine wake-up, not n.
type batch struct {
	replies []reply // guarded by Conn.mu until done is closed
	left    int     // replies still due; guarded by Conn.mu
	done    chan struct{}
}

// A slot is where one pending request's reply goes.
type slot struct {
	b *batch
	i int
}

// fill delivers one reply; the caller holds Conn.mu.
func (s slot) fill(r reply) {
	s.b.replies[s.i] = r
	if s.b.left--; s.b.left == 0 {
		close(s.b.done)
	}
}

// NewConn starts a Conn over rwc, a stream: for example a unix socket or,
// in tests, one end of a net.Pipe. The Conn owns rwc and closes it.
func NewConn(rwc io.ReadWriteCloser) *Conn { return newConn(rwc, false) }

// NewMessageConn starts a Conn over a device that takes one whole message
// a write, as the kernel's xenbus device (/dev/xen/xenbus) does. Requests
// are still sent ahead of the replies.
func NewMessageConn(rwc io.ReadWriteCloser) *Conn { return newConn(rwc, true) }

func newConn(rwc io.ReadWriteCloser, onePerWrite bool) *Conn {
	c := &Conn{
		rwc:         rwc,
		onePerWrite: onePerWrite,
		pending:     make(map[uint32]slot),
		watches:     make(map[string]*watcher),
		done:        make(chan struct{}),
		// Room for a command's batch of reads (a kilobyte or so): grown
		// from nothing, the buffer passed through a dozen sizes in the
		// first batch, each a new span of memory to fault in.
		wbuf: make([]byte, 0, 2<<10),
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

// readBuf is the reader's buffer: the replies to a batch that arrived
// together are taken with one read, not two per reply.
const readBuf = 16 << 10

func (c *Conn) readLoop() {
	defer c.wg.Done()
	rd := bufio.NewReaderSize(c.rwc, readBuf)
	var hdr [HeaderSize]byte
	var err error
	for {
		if _, err = io.ReadFull(rd, hdr[:]); err != nil {
			break
		}
		var h Header
		if h, err = parseReplyHeader(hdr[:]); err != nil {
			break
		}
		var payload []byte
		if payload, err = readPayload(rd, h.Len); err != nil {
			break
		}
		if h.Type == TypeWatchEvent {
			c.deliverWatch(payload)
			continue
		}
		r := reply{typ: h.Type, payload: payload}
		if h.Type == TypeError {
			r.err = parseErrorPayload(payload)
		}
		c.mu.Lock()
		if s, ok := c.pending[h.ReqID]; ok { // else its caller gave up
			delete(c.pending, h.ReqID)
			s.fill(r)
		}
		c.mu.Unlock()
	}
	c.mu.Lock()
	if c.closed {
		c.err = net.ErrClosed
	} else {
		c.err = fmt.Errorf("%w: %w", ErrDisconnected, err)
		c.rwc.Close()
	}
	for id, s := range c.pending {
		s.fill(reply{err: c.err})
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

// readPayload reads n bytes. A payload past PayloadMax (a whole listing
// from oxenstored) grows as its bytes arrive, so a header that lies about
// its length costs no more memory than the bytes that follow it.
func readPayload(r io.Reader, n uint32) ([]byte, error) {
	if n <= PayloadMax {
		b := make([]byte, n)
		_, err := io.ReadFull(r, b)
		return b, err
	}
	var buf bytes.Buffer
	m, err := buf.ReadFrom(io.LimitReader(r, int64(n)))
	if err == nil && m < int64(n) {
		err = io.ErrUnexpectedEOF
	}
	return buf.Bytes(), err
}

// Raw sends one request and returns the payload of its reply. It is the
// building block of every other call and is exported for tools and tests
// that speak the protocol directly. An ERROR reply becomes a syscall.Errno.
func (c *Conn) Raw(ctx context.Context, typ MsgType, txid uint32, payload []byte) ([]byte, error) {
	calls := [1]call{{typ: typ, payload: payload}}
	c.rawMany(ctx, txid, calls[:])
	return calls[0].reply, calls[0].err
}

// A call is one request of rawMany, with what became of it.
type call struct {
	typ     MsgType
	payload []byte
	reply   []byte
	err     error
}

// writeChunk is the size at which rawMany sends what it has gathered.
const writeChunk = 16 << 10

// rawMany sends every call before waiting for any reply, so that n
// requests cost one round trip (and one write while they fit
// writeChunk), and waits for all their replies.
func (c *Conn) rawMany(ctx context.Context, txid uint32, calls []call) {
	c.await(ctx, c.send(ctx, txid, calls))
}

// An inflight batch is calls sent by send and not yet awaited.
type inflight struct {
	calls []call
	ids   []uint32
	b     *batch // nil when nothing was sent: every call has its error
}

func failAll(calls []call, err error) {
	for i := range calls {
		if calls[i].err == nil {
			calls[i].err = err
		}
	}
}

// send registers calls and writes them; a call that cannot be sent has
// its error set.
func (c *Conn) send(ctx context.Context, txid uint32, calls []call) *inflight {
	f := &inflight{calls: calls}
	for i := range calls {
		if n := len(calls[i].payload); n > PayloadMax {
			calls[i].err = fmt.Errorf("%w: payload of %d bytes exceeds %d", errTooBig, n, PayloadMax)
		}
	}
	if err := ctx.Err(); err != nil {
		failAll(calls, err)
		return f
	}
	ids := make([]uint32, len(calls))
	b := &batch{replies: make([]reply, len(calls)), done: make(chan struct{})}
	c.mu.Lock()
	if c.closed || c.err != nil {
		err := c.err
		if c.closed {
			err = net.ErrClosed
		}
		c.mu.Unlock()
		failAll(calls, err)
		return f
	}
	for i := range calls {
		if calls[i].err != nil {
			continue
		}
		id := c.seq.Add(1)
		if id == 0 { // 0 is what watch events carry
			id = c.seq.Add(1)
		}
		ids[i] = id
		b.left++
		c.pending[id] = slot{b, i}
	}
	sent := b.left
	c.mu.Unlock()
	if sent == 0 {
		return f
	}
	if err := c.write(txid, calls, ids); err != nil {
		c.forgetAll(ids)
		select {
		case <-c.done:
			err = c.Err()
		default:
			err = fmt.Errorf("%w: %w", ErrDisconnected, err)
		}
		failAll(calls, err)
		return f
	}
	f.ids, f.b = ids, b
	return f
}

// write sends the calls that have an id. Requests go out in writes of
// about writeChunk bytes (a large batch costs a few system calls, not a
// buffer of its whole size), or one a write to a message device.
func (c *Conn) write(txid uint32, calls []call, ids []uint32) error {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	c.wbuf = c.wbuf[:0]
	for i, cl := range calls {
		if ids[i] == 0 {
			continue
		}
		c.wbuf = AppendHeader(c.wbuf, Header{Type: cl.typ, ReqID: ids[i], TxID: txid, Len: uint32(len(cl.payload))})
		c.wbuf = append(c.wbuf, cl.payload...)
		if c.onePerWrite || len(c.wbuf) >= writeChunk {
			if _, err := c.rwc.Write(c.wbuf); err != nil {
				return err
			}
			c.wbuf = c.wbuf[:0]
		}
	}
	if len(c.wbuf) > 0 {
		_, err := c.rwc.Write(c.wbuf)
		return err
	}
	return nil
}

// await waits for the replies of what send sent and puts them in its
// calls.
func (c *Conn) await(ctx context.Context, f *inflight) {
	if f.b == nil {
		return
	}
	select {
	case <-f.b.done:
	case <-ctx.Done():
		c.forgetAll(f.ids)
		failAll(f.calls, ctx.Err())
		return
	}
	for i := range f.calls {
		if f.ids[i] == 0 {
			continue
		}
		switch r := f.b.replies[i]; {
		case r.err != nil:
			f.calls[i].err = r.err
		case r.typ != f.calls[i].typ:
			f.calls[i].err = &ProtocolError{Msg: fmt.Sprintf("reply of type %v to %v", r.typ, f.calls[i].typ)}
		default:
			f.calls[i].reply = r.payload
		}
	}
}

// forgetAll drops the pending requests ids names (0s are skipped): their
// replies, if they come, are dropped.
func (c *Conn) forgetAll(ids []uint32) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, id := range ids {
		if id != 0 {
			delete(c.pending, id)
		}
	}
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

// pathCall is a batch's request on path (its payload the path, then
// extra), or the error of a path that is not valid, which is not sent.
func pathCall(typ MsgType, path, extra string) call {
	if err := ValidatePath(path); err != nil {
		return call{typ: typ, err: err}
	}
	return call{typ: typ, payload: append(pathArg(path), extra...)}
}

// A Get is one request of Gets: the value of a node, or with Dir the
// names of its children.
type Get struct {
	Path string
	Dir  bool
}

// A Got is the answer to a Get: Value for a read, Names for a listing.
type Got struct {
	Value []byte
	Names []string
	Err   error
}

// Gets sends reads and listings in one write to the daemon, so that they
// cost one round trip, and returns what Read or Directory would have for
// each. A listing too large for one reply is fetched in parts afterwards.
func (o ops) Gets(ctx context.Context, gets []Get) []Got {
	calls := make([]call, len(gets))
	for i, g := range gets {
		typ := TypeRead
		if g.Dir {
			typ = TypeDirectory
		}
		calls[i] = pathCall(typ, g.Path, "")
	}
	o.c.rawMany(ctx, o.tx, calls)
	out := make([]Got, len(gets))
	for i, cl := range calls {
		g := &out[i]
		switch {
		case gets[i].Dir && errors.Is(cl.err, errTooBigErrno):
			g.Names, g.Err = o.directoryPart(ctx, gets[i].Path)
		case cl.err != nil:
			g.Err = opError(cl.typ, gets[i].Path, cl.err)
		case gets[i].Dir:
			g.Names = splitStrings(cl.reply)
		default:
			g.Value = cl.reply
		}
	}
	return out
}

// ReadMany reads several nodes with one write to the daemon and one round
// trip: values[i] and errs[i] are what Read(paths[i]) would return.
func (o ops) ReadMany(ctx context.Context, paths []string) (values [][]byte, errs []error) {
	return o.StartReadMany(ctx, paths).Wait(ctx)
}

// PendingReads are reads StartReadMany sent, their replies not yet
// awaited.
type PendingReads struct {
	paths []string
	c     *Conn
	f     *inflight
}

// StartReadMany sends what ReadMany sends and returns without waiting:
// the caller works during the round trip, then calls Wait once.
func (o ops) StartReadMany(ctx context.Context, paths []string) *PendingReads {
	calls := make([]call, len(paths))
	for i, p := range paths {
		calls[i] = pathCall(TypeRead, p, "")
	}
	return &PendingReads{paths: paths, c: o.c, f: o.c.send(ctx, o.tx, calls)}
}

// Wait waits for the replies: values[i] and errs[i] are what
// Read(paths[i]) would return.
func (p *PendingReads) Wait(ctx context.Context) (values [][]byte, errs []error) {
	p.c.await(ctx, p.f)
	values, errs = make([][]byte, len(p.paths)), make([]error, len(p.paths))
	for i, cl := range p.f.calls {
		if cl.err != nil {
			errs[i] = opError(cl.typ, p.paths[i], cl.err)
			continue
		}
		values[i] = cl.reply
	}
	return values, errs
}

// WriteMany sets several nodes with one write to the daemon and one round
// trip, as Write does for each; the requests are sent in order. The errors
// of all of them are joined.
func (o ops) WriteMany(ctx context.Context, nodes [][2]string) error {
	calls := make([]call, len(nodes))
	for i, kv := range nodes {
		calls[i] = pathCall(TypeWrite, kv[0], kv[1])
	}
	o.c.rawMany(ctx, o.tx, calls)
	errs := make([]error, len(nodes))
	for i, cl := range calls {
		err := opError(TypeWrite, nodes[i][0], cl.err)
		if err == nil {
			err = checkOK(TypeWrite, nodes[i][0], cl.reply)
		}
		errs[i] = err
	}
	return errors.Join(errs...)
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
// exists is not an error. Removing / is refused here with EINVAL, as the C
// daemon refuses it: oxenstored would empty the whole store.
func (o ops) Rm(ctx context.Context, path string) error {
	if path == "/" {
		return opError(TypeRm, path, errInval)
	}
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

// Directory lists the children of a node in the store's order: creation
// order for the C xenstored, sorted by name for oxenstored. A list too
// large for one reply is fetched in parts with DIRECTORY_PART, restarting
// if the node changes between parts, when the store says E2BIG (the C
// daemon); oxenstored, which has no DIRECTORY_PART, sends it whole.
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

// Release tells the store that a domain is gone (dom0 only). Releasing
// domain 0 is refused here with EINVAL, as the C daemon refuses it:
// oxenstored answers ENOENT but drops dom0's own domain.
func (c *Conn) Release(ctx context.Context, domid uint32) error {
	d := strconv.FormatUint(uint64(domid), 10)
	if domid == 0 {
		return opError(TypeRelease, d, errInval)
	}
	r, err := c.Raw(ctx, TypeRelease, 0, pathArg(d))
	if err != nil {
		return opError(TypeRelease, d, err)
	}
	return checkOK(TypeRelease, d, r)
}
