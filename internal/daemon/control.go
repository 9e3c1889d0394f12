package daemon

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"net"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/rs/zerolog"

	"github.com/usbhotplugd/usbhotplugd/internal/agent"
)

// Limits of the control socket: a request is one short line; a client
// that sends nothing for idleTimeout is dropped (a watch is not); a
// watcher more than watchQueue decisions behind is told so and dropped,
// so a slow reader never holds up the agent. Root has adminSlots of its
// own beside the maxClients every peer shares, so the read-only group's
// watchers cannot keep a reload out.
const (
	maxRequestLine = 64 << 10
	idleTimeout    = time.Minute
	watchQueue     = 1024
	adminSlots     = 8
)

// maxClients is a variable for the tests, which fill it.
var maxClients = 64

// A role is what a peer may do.
type role int

const (
	roleNone   role = iota
	roleReader      // status, explain, watch, metrics
	roleAdmin       // and reload
)

// control is the control socket's listener.
type control struct {
	ln   *net.UnixListener
	path string
	gid  int // the read-only group; -1 for none
	log  zerolog.Logger
	// slots every peer may take; admin only root's.
	slots, admin chan struct{}
}

// listenControl makes the socket: owner root, group the control group,
// mode 0660. The lock is held, so a socket file found there is a dead
// agent's: it is removed.
func listenControl(dir, group string, log zerolog.Logger) (*control, error) {
	path := filepath.Join(dir, ControlSocket)
	if err := os.Remove(path); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("control socket: %w", err)
	}
	ln, err := net.ListenUnix("unix", &net.UnixAddr{Name: path, Net: "unix"})
	if err != nil {
		return nil, fmt.Errorf("control socket: %w", err)
	}
	ln.SetUnlinkOnClose(true)
	c := &control{ln: ln, path: path, gid: -1, log: log,
		slots: make(chan struct{}, maxClients), admin: make(chan struct{}, adminSlots)}
	mode := os.FileMode(0o600)
	gid, err := lookupGroup(group)
	if err == nil {
		// A group this user namespace does not map cannot own it.
		err = os.Chown(path, -1, gid)
	}
	switch {
	case err == nil:
		c.gid, mode = gid, 0o660
	case group != "":
		log.Warn().Err(err).Str("group", group).Msg("control socket: the read-only group cannot have it: only root may use the socket")
	}
	if err := os.Chmod(path, mode); err != nil {
		ln.Close()
		return nil, fmt.Errorf("control socket: %w", err)
	}
	return c, nil
}

func (c *control) Close() error { return c.ln.Close() }

// serve accepts clients until ctx ends, each in a goroutine it waits for.
func (c *control) serve(ctx context.Context, d *daemon) error {
	var wg sync.WaitGroup
	defer wg.Wait()
	stop := context.AfterFunc(ctx, func() { c.ln.Close() })
	defer stop()
	for {
		conn, err := c.ln.AcceptUnix()
		if err != nil {
			if ctx.Err() != nil {
				return ctx.Err()
			}
			return fmt.Errorf("accept: %w", err)
		}
		// The credentials are the kernel's record of the connect: no
		// wait for the peer.
		r, rerr := c.peerRole(conn)
		slot := c.take(r)
		if slot == nil {
			writeResponse(conn, errorResponse(CodeInternal, fmt.Errorf("%d clients already connected", maxClients)))
			conn.Close()
			continue
		}
		wg.Go(func() {
			defer func() { <-slot }()
			c.client(ctx, d, conn, r, rerr)
		})
	}
}

// take reserves a slot for a peer of role r: root's own first, then a
// shared one. It returns the pool to give it back to, or nil if all are
// taken.
func (c *control) take(r role) chan struct{} {
	if r == roleAdmin {
		select {
		case c.admin <- struct{}{}:
			return c.admin
		default:
		}
	}
	select {
	case c.slots <- struct{}{}:
		return c.slots
	default:
		return nil
	}
}

// client answers the requests of one connection, whose peer has role r
// (or err, when it has none), in order.
func (c *control) client(ctx context.Context, d *daemon, conn *net.UnixConn, r role, err error) {
	defer conn.Close()
	stop := context.AfterFunc(ctx, func() { conn.Close() })
	defer stop()
	if err != nil {
		writeResponse(conn, errorResponse(CodeForbidden, err))
		return
	}
	sc := bufio.NewScanner(conn)
	sc.Buffer(make([]byte, 4096), maxRequestLine)
	for {
		conn.SetReadDeadline(time.Now().Add(idleTimeout))
		if !sc.Scan() {
			if errors.Is(sc.Err(), bufio.ErrTooLong) {
				writeResponse(conn, errorResponse(CodeBadRequest, fmt.Errorf("a request is one line of at most %d bytes", maxRequestLine)))
			}
			return
		}
		resp, watch, keep := d.request(ctx, sc.Bytes(), r)
		if watch {
			conn.SetReadDeadline(time.Time{})
			d.watch(ctx, conn)
			return
		}
		if err := writeResponse(conn, resp); err != nil || !keep {
			return
		}
	}
}

// request answers one request line from a peer with role r. watch: the
// peer asked to watch, and may; keep: the connection may carry another
// request (not after a line that is not JSON: the stream is lost).
func (d *daemon) request(ctx context.Context, line []byte, r role) (resp Response, watch, keep bool) {
	var req Request
	if err := json.Unmarshal(line, &req); err != nil {
		return errorResponse(CodeBadRequest, fmt.Errorf("a request is one JSON object: %w", err)), false, false
	}
	if req.Request == ReqWatch && r >= roleReader {
		return Response{}, true, true
	}
	return d.answer(ctx, req, r), false, true
}

// answer makes the reply to one request other than watch.
func (d *daemon) answer(ctx context.Context, req Request, r role) Response {
	need := roleReader
	if req.Request == ReqReload {
		need = roleAdmin
	}
	if r < need {
		return errorResponse(CodeForbidden, fmt.Errorf("%s needs root", req.Request))
	}
	switch req.Request {
	case ReqStatus:
		st := d.st.get()
		return Response{OK: true, Status: &st}
	case ReqExplain:
		ex, err := d.a.Explain(req.BusID)
		if errors.Is(err, fs.ErrNotExist) {
			return errorResponse(CodeNotFound, err)
		}
		if err != nil {
			return errorResponse(CodeInternal, err)
		}
		out := make([]Explanation, len(ex))
		for i, e := range ex {
			out[i] = ExplanationOf(e.Device, e.Explanation, e.Last)
		}
		return Response{OK: true, Explain: out}
	case ReqReload:
		res, err := d.reload(ctx)
		if err != nil {
			return errorResponse(CodePolicyRefused, err)
		}
		return Response{OK: true, Reload: &res}
	case ReqMetrics:
		d.m.Update(snapshot(d.st.get()))
		return Response{OK: true, Metrics: d.m.Families(time.Now())}
	}
	return errorResponse(CodeBadRequest, fmt.Errorf("unknown request %q (status, explain, watch, metrics, reload)", req.Request))
}

// watch streams decisions to conn until it closes or ctx ends.
func (d *daemon) watch(ctx context.Context, conn *net.UnixConn) {
	sub := d.audit.subscribe()
	defer d.audit.unsubscribe(sub)
	if writeResponse(conn, Response{OK: true, Watching: true}) != nil {
		return
	}
	// A read tells of the client's close (it sends nothing more).
	gone := make(chan struct{})
	go func() {
		defer close(gone)
		var b [256]byte
		for {
			if _, err := conn.Read(b[:]); err != nil {
				return
			}
		}
	}()
	defer func() { conn.Close(); <-gone }()
	for {
		select {
		case <-ctx.Done():
			return
		case <-gone:
			return
		case r, ok := <-sub.ch:
			if !ok {
				writeResponse(conn, errorResponse(CodeOverrun, fmt.Errorf("more than %d decisions waited for this client: some were lost", watchQueue)))
				return
			}
			if writeResponse(conn, Response{OK: true, Decision: &r}) != nil {
				return
			}
		}
	}
}

func errorResponse(code string, err error) Response {
	return Response{Error: err.Error(), ErrorCode: code}
}

func writeResponse(conn net.Conn, r Response) error {
	b, err := json.Marshal(r)
	if err != nil {
		return err
	}
	conn.SetWriteDeadline(time.Now().Add(10 * time.Second))
	_, err = conn.Write(append(b, '\n'))
	return err
}

// hub hands the agent's decisions to the watchers; publishing never
// blocks.
type hub struct {
	mu   sync.Mutex
	subs map[*subscriber]struct{}
}

type subscriber struct{ ch chan agent.Audit }

func newHub() *hub { return &hub{subs: map[*subscriber]struct{}{}} }

func (h *hub) subscribe() *subscriber {
	s := &subscriber{ch: make(chan agent.Audit, watchQueue)}
	h.mu.Lock()
	h.subs[s] = struct{}{}
	h.mu.Unlock()
	return s
}

func (h *hub) unsubscribe(s *subscriber) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if _, ok := h.subs[s]; ok {
		delete(h.subs, s)
		close(s.ch)
	}
}

// publish gives r to every watcher; one whose queue is full is dropped
// (its channel closed: it says so to its client).
func (h *hub) publish(r agent.Audit) {
	h.mu.Lock()
	defer h.mu.Unlock()
	for s := range h.subs {
		select {
		case s.ch <- r:
		default:
			delete(h.subs, s)
			close(s.ch)
		}
	}
}
