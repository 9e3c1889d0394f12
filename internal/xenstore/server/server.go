package server

import (
	"bytes"
	"io"
	"net"
	"strconv"
	"strings"
	"sync"

	xs "github.com/usbhotplugd/usbhotplugd/internal/xenstore"
)

// Limits the C xenstored applies to unprivileged domains by default.
const (
	domUMaxTransactions = 10
	domUMaxWatches      = 128
	domUMaxEntrySize    = 2048
	// A connection whose peer stops reading is dropped once this many
	// messages wait for it, as xenstored drops a stuck client.
	maxQueued = 1 << 16
	domidSelf = 0x7FF0
)

// A Server is an in-memory xenstored. It is safe for concurrent use.
type Server struct {
	mu         sync.Mutex
	root       *node               // guarded by mu
	gen        uint64              // guarded by mu
	conns      map[*conn]struct{}  // guarded by mu
	introduced map[uint32]bool     // guarded by mu
	special    map[string]xs.Perms // guarded by mu
	listeners  []net.Listener      // guarded by mu
	closed     bool                // guarded by mu

	wg sync.WaitGroup
}

// New returns a server whose store holds what the C xenstored makes at
// start: / , /tool and /tool/xenstored, all n0.
func New() *Server {
	s := &Server{
		conns:      make(map[*conn]struct{}),
		introduced: map[uint32]bool{0: true},
		special: map[string]xs.Perms{
			"@introduceDomain": {{Access: xs.AccessNone, Domid: 0}},
			"@releaseDomain":   {{Access: xs.AccessNone, Domid: 0}},
		},
	}
	n0 := xs.Perms{{Access: xs.AccessNone, Domid: 0}}
	s.root = &node{perms: n0, gen: s.next()}
	dom0 := &conn{domid: 0}
	st := s.mainState(dom0)
	st.write("/tool/xenstored", nil)
	st.commit()
	return s
}

func (s *Server) next() uint64 {
	s.gen++
	return s.gen
}

// Listen serves the store on a new unix socket at path (see Listen for
// what it refuses to replace). Connections accepted there are privileged
// (dom0). Closing the listener removes the socket if it is still ours.
func (s *Server) Listen(path string) (net.Listener, error) {
	l, err := Listen(path)
	if err != nil {
		return nil, err
	}
	if err := s.Serve(l); err != nil {
		l.Close()
		return nil, err
	}
	return l, nil
}

// Serve accepts connections on l until l or the server is closed. It
// returns at once; the accept loop is owned by the server.
func (s *Server) Serve(l net.Listener) error {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return net.ErrClosed
	}
	s.listeners = append(s.listeners, l)
	s.wg.Add(1)
	s.mu.Unlock()
	go func() {
		defer s.wg.Done()
		for {
			nc, err := l.Accept()
			if err != nil {
				return
			}
			s.ServeConn(nc, 0)
		}
	}()
	return nil
}

// ServeConn serves one connection as domain domid: 0 is privileged; any
// other domid acts as that guest, with its permission checks and quotas.
func (s *Server) ServeConn(nc net.Conn, domid uint32) {
	c := &conn{s: s, nc: nc, domid: domid, txs: map[uint32]*txn{}, wake: make(chan struct{}, 1), done: make(chan struct{})}
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		nc.Close()
		return
	}
	s.conns[c] = struct{}{}
	s.wg.Add(2)
	s.mu.Unlock()
	go func() { defer s.wg.Done(); c.readLoop() }()
	go func() { defer s.wg.Done(); c.writeLoop() }()
}

// Pipe returns the client end of an in-memory connection served as domid.
func (s *Server) Pipe(domid uint32) net.Conn {
	a, b := net.Pipe()
	s.ServeConn(b, domid)
	return a
}

// Close stops every listener and connection and waits for their goroutines.
func (s *Server) Close() error {
	s.mu.Lock()
	s.closed = true
	ls := s.listeners
	cs := make([]*conn, 0, len(s.conns))
	for c := range s.conns {
		cs = append(cs, c)
	}
	s.mu.Unlock()
	for _, l := range ls {
		l.Close()
	}
	for _, c := range cs {
		c.shut()
	}
	s.wg.Wait()
	return nil
}

// IntroduceDomain marks a domain introduced and fires @introduceDomain, as
// an INTRODUCE from dom0 does.
func (s *Server) IntroduceDomain(domid uint32) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.introduce(domid)
}

// ReleaseDomain ends a domain as RELEASE does: it fires @releaseDomain,
// removes the nodes the domain owns and drops its connections. It reports
// whether the domain was introduced.
func (s *Server) ReleaseDomain(domid uint32) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.release(domid)
}

func (s *Server) introduce(domid uint32) {
	if s.introduced[domid] {
		return
	}
	s.introduced[domid] = true
	s.fireSpecial("@introduceDomain")
}

func (s *Server) release(domid uint32) bool {
	if domid == 0 || !s.introduced[domid] {
		return false
	}
	delete(s.introduced, domid)
	for c := range s.conns {
		if c.domid == domid {
			go c.shut()
		}
	}
	// Remove what the domain owns, outermost nodes first.
	var owned []string
	var visit func(path string, n *node)
	visit = func(path string, n *node) {
		if path != "/" && n.perms.Owner() == domid {
			owned = append(owned, path)
			return
		}
		for _, name := range n.names {
			cp := path + "/" + name
			if path == "/" {
				cp = "/" + name
			}
			visit(cp, n.kids[name])
		}
	}
	visit("/", s.root)
	st := s.mainState(&conn{domid: 0})
	for _, p := range owned {
		st.rm(p)
	}
	st.commit()
	s.fireSpecial("@releaseDomain")
	return true
}

// A conn is one client connection.
type conn struct {
	s     *Server
	nc    net.Conn
	domid uint32

	// guarded by s.mu
	watches        []*watch
	txs            map[uint32]*txn
	nextTx         uint32
	pendingInitial *watch // a new watch's first event, sent after the reply

	qmu    sync.Mutex
	queue  [][]byte   // guarded by qmu
	wmu    sync.Mutex // serialises writes to nc
	wbuf   []byte     // guarded by wmu
	wake   chan struct{}
	done   chan struct{}
	closer sync.Once
}

func (c *conn) priv() bool { return c.domid == 0 }

type watch struct {
	path     string // canonical
	token    string
	relative bool
}

func (c *conn) shut() {
	c.closer.Do(func() {
		close(c.done)
		if c.nc != nil {
			c.nc.Close()
		}
	})
}

// send queues a message; the connection's reader flushes it after the
// request it answers.
func (c *conn) send(h xs.Header, payload []byte) {
	h.Len = uint32(len(payload))
	msg := xs.AppendHeader(make([]byte, 0, xs.HeaderSize+len(payload)), h)
	msg = append(msg, payload...)
	c.qmu.Lock()
	if len(c.queue) >= maxQueued {
		c.qmu.Unlock()
		go c.shut()
		return
	}
	c.queue = append(c.queue, msg)
	c.qmu.Unlock()
}

// wakeWriter asks the writer goroutine to flush: for events, which arrive
// while another connection's request is being handled.
func (c *conn) wakeWriter() {
	select {
	case c.wake <- struct{}{}:
	default:
	}
}

// flush writes every queued message; the reader calls it after each
// request (saving a goroutine hop on the reply path) and the writer
// goroutine calls it for events caused by other connections.
func (c *conn) flush() bool {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	c.qmu.Lock()
	q := c.queue
	c.queue = nil
	c.qmu.Unlock()
	if len(q) == 0 {
		return true
	}
	c.wbuf = c.wbuf[:0]
	for _, m := range q {
		c.wbuf = append(c.wbuf, m...)
	}
	if _, err := c.nc.Write(c.wbuf); err != nil {
		c.shut()
		return false
	}
	return true
}

func (c *conn) writeLoop() {
	for {
		select {
		case <-c.wake:
			if !c.flush() {
				return
			}
		case <-c.done:
			return
		}
	}
}

func (c *conn) readLoop() {
	defer func() {
		c.shut()
		c.s.mu.Lock()
		delete(c.s.conns, c)
		c.s.mu.Unlock()
	}()
	var hdr [xs.HeaderSize]byte
	for {
		if _, err := io.ReadFull(c.nc, hdr[:]); err != nil {
			return
		}
		h, err := xs.ParseHeader(hdr[:])
		if err != nil {
			return // an oversized request: xenstored drops the client
		}
		payload := make([]byte, h.Len)
		if _, err := io.ReadFull(c.nc, payload); err != nil {
			return
		}
		c.s.mu.Lock()
		if _, live := c.s.conns[c]; !live {
			c.s.mu.Unlock()
			return
		}
		typ, reply, errno := c.s.handle(c, h, payload)
		if errno != 0 {
			typ, reply = xs.TypeError, append([]byte(xs.ErrnoName(errno)), 0)
		}
		c.send(xs.Header{Type: typ, ReqID: h.ReqID, TxID: h.TxID}, reply)
		c.sendInitial()
		c.s.mu.Unlock()
		if !c.flush() {
			return
		}
	}
}

// Handle runs one request as a connection of domain domid would, for the
// fuzz test and for tools; it returns the reply message type and payload.
func (s *Server) Handle(domid uint32, h xs.Header, payload []byte) (xs.MsgType, []byte) {
	c := &conn{s: s, domid: domid, txs: map[uint32]*txn{}, wake: make(chan struct{}, 1), done: make(chan struct{})}
	s.mu.Lock()
	defer s.mu.Unlock()
	typ, reply, errno := s.handle(c, h, payload)
	if errno != 0 {
		return xs.TypeError, append([]byte(xs.ErrnoName(errno)), 0)
	}
	return typ, reply
}

// sendInitial queues the first event of a watch made by this request,
// which the C daemon sends right after the WATCH reply.
func (c *conn) sendInitial() {
	if w := c.pendingInitial; w != nil {
		c.pendingInitial = nil
		c.event(w, w.path)
	}
}

func (c *conn) event(w *watch, path string) {
	if w.relative {
		prefix := homePath(c.domid) + "/"
		path = strings.TrimPrefix(path, prefix)
	}
	p := make([]byte, 0, len(path)+len(w.token)+2)
	p = append(append(append(append(p, path...), 0), w.token...), 0)
	c.send(xs.Header{Type: xs.TypeWatchEvent}, p)
	c.wakeWriter()
}

func homePath(domid uint32) string { return "/local/domain/" + strconv.FormatUint(uint64(domid), 10) }

// fire delivers the event for a change at path to every watch on path or
// an ancestor (or, with exact, on path alone) whose connection may read
// the node.
func (s *Server) fire(path string, perms xs.Perms, exact bool) {
	for c := range s.conns {
		for _, w := range c.watches {
			match := w.path == path
			if !exact && !match {
				match = isAncestor(w.path, path)
			}
			if !match {
				continue
			}
			if !c.priv() && perms != nil {
				if r, _, _ := c.access(perms); !r {
					continue
				}
			}
			c.event(w, path)
		}
	}
}

func (s *Server) fireSpecial(name string) {
	for c := range s.conns {
		if !c.priv() {
			if r, _, _ := c.access(s.special[name]); !r {
				continue
			}
		}
		for _, w := range c.watches {
			if w.path == name {
				c.event(w, name)
			}
		}
	}
}

func isAncestor(anc, p string) bool {
	if anc == "/" {
		return strings.HasPrefix(p, "/")
	}
	return strings.HasPrefix(p, anc) && len(p) > len(anc) && p[len(anc)] == '/'
}

// access tells what c may do with a node of these permissions, as the C
// daemon's perm_for_conn does.
func (c *conn) access(ps xs.Perms) (read, write, owner bool) {
	if c.priv() || len(ps) == 0 || ps[0].Domid == c.domid {
		return true, true, true
	}
	for _, p := range ps[1:] {
		if p.Domid == c.domid {
			return p.Access.CanRead(), p.Access.CanWrite(), false
		}
	}
	return ps[0].Access.CanRead(), ps[0].Access.CanWrite(), false
}

// strings of a request payload, as the C daemon's get_strings: only
// NUL-terminated strings count.
func getStrings(p []byte, max int) []string {
	var out []string
	for len(out) < max && len(p) > 0 {
		i := bytes.IndexByte(p, 0)
		if i < 0 {
			break
		}
		out = append(out, string(p[:i]))
		p = p[i+1:]
	}
	return out
}

// onearg is the single NUL-terminated argument of a request, or false.
func onearg(p []byte) (string, bool) {
	if len(p) == 0 {
		return "", false
	}
	i := bytes.IndexByte(p, 0)
	if i != len(p)-1 {
		return "", false
	}
	return string(p[:i]), true
}

// canonical makes a request path absolute and checks it as xenstored does.
func (c *conn) canonical(p string) (string, bool) {
	if strings.HasPrefix(p, "@") {
		return "", false // special names are for watches and SET_PERMS only
	}
	if !strings.HasPrefix(p, "/") {
		p = homePath(c.domid) + "/" + p
	}
	if xs.ValidatePath(p) != nil {
		return "", false
	}
	// The length limit counts from the domain's home, like xenstored.
	rel := p
	if strings.HasPrefix(p, "/local/domain/") {
		rest := p[len("/local/domain/"):]
		if i := strings.IndexByte(rest, '/'); i > 0 {
			rel = rest[i+1:]
		}
	}
	if len(rel) > xs.RelPathMax {
		return "", false
	}
	return p, true
}

func atoi(s string) int {
	// C atoi: leading digits, garbage after them ignored.
	// int64 so that the bound fits on 32-bit systems too.
	var n int64
	i, neg := 0, false
	s = strings.TrimLeft(s, " \t\n")
	if i < len(s) && (s[i] == '-' || s[i] == '+') {
		neg = s[i] == '-'
		i++
	}
	for ; i < len(s) && s[i] >= '0' && s[i] <= '9'; i++ {
		n = n*10 + int64(s[i]-'0')
		if n > 1<<31 {
			break
		}
	}
	if neg {
		n = -n
	}
	return int(n)
}
