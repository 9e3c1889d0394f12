package qmp

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"os"
	"sync"
	"time"
	"unicode/utf8"
)

// SocketPath is where libxl's device model listens for QMP for a domain.
func SocketPath(domid uint32) string { return fmt.Sprintf("/var/run/xen/qmp-libxl-%d", domid) }

// An Error is QEMU's answer to a command that failed, verbatim.
type Error struct {
	Command string
	Class   string
	Desc    string
}

func (e *Error) Error() string { return fmt.Sprintf("qmp %s: %s: %s", e.Command, e.Class, e.Desc) }

// ErrProtocol marks a peer that does not speak QMP as QEMU does.
var ErrProtocol = errors.New("qmp: protocol error")

// A Client is one QMP connection.
type Client struct {
	mu   sync.Mutex
	conn net.Conn
	r    *bufio.Reader
	id   int
}

type message struct {
	QMP    json.RawMessage `json:"QMP"`
	Return json.RawMessage `json:"return"`
	Error  *struct {
		Class string `json:"class"`
		Desc  string `json:"desc"`
	} `json:"error"`
	Event string          `json:"event"`
	ID    json.RawMessage `json:"id"`
}

// Dial connects to the QMP socket at path and negotiates capabilities.
func Dial(ctx context.Context, path string) (*Client, error) {
	var d net.Dialer
	conn, err := d.DialContext(ctx, "unix", path)
	if err != nil {
		return nil, fmt.Errorf("qmp: %w", err)
	}
	c := &Client{conn: conn, r: bufio.NewReaderSize(conn, 64<<10)}
	if err := c.handshake(ctx); err != nil {
		conn.Close()
		return nil, err
	}
	return c, nil
}

func (c *Client) handshake(ctx context.Context) error {
	stop := c.deadline(ctx)
	defer stop()
	m, err := c.read()
	if err != nil {
		return err
	}
	if m.QMP == nil {
		return fmt.Errorf("%w: no greeting", ErrProtocol)
	}
	_, err = c.exec("qmp_capabilities", nil)
	return err
}

// deadline makes reads and writes fail when ctx ends.
func (c *Client) deadline(ctx context.Context) func() {
	if d, ok := ctx.Deadline(); ok {
		c.conn.SetDeadline(d)
	} else {
		c.conn.SetDeadline(time.Time{})
	}
	stop := context.AfterFunc(ctx, func() { c.conn.SetDeadline(time.Unix(1, 0)) })
	return func() { stop() }
}

// Limits on what QEMU sends. The device model runs a guest's emulated
// hardware and is deprivileged for that reason: a QEMU the guest took over
// must not make dom0's agent allocate without bound or write a megabyte
// into an audit record.
const (
	// maxMessage bounds one QMP message (a line). The replies asked for
	// here are a few kilobytes; QEMU's largest (query-qmp-schema) is
	// about 200 KiB.
	maxMessage = 1 << 20
	// maxDesc bounds the error text kept from QEMU, and maxQuoted a
	// message quoted in a protocol error.
	maxDesc   = 512
	maxQuoted = 128
)

// readLine reads one line of at most maxMessage bytes.
func (c *Client) readLine() ([]byte, error) {
	var line []byte
	for {
		part, err := c.r.ReadSlice('\n')
		if len(line)+len(part) > maxMessage {
			return nil, fmt.Errorf("%w: a message longer than %d bytes", ErrProtocol, maxMessage)
		}
		line = append(line, part...)
		if err == nil {
			return line, nil
		}
		if !errors.Is(err, bufio.ErrBufferFull) {
			return nil, fmt.Errorf("qmp: %w", err)
		}
	}
}

func (c *Client) read() (message, error) {
	for {
		line, err := c.readLine()
		if err != nil {
			return message{}, err
		}
		var m message
		if err := json.Unmarshal(line, &m); err != nil {
			return message{}, fmt.Errorf("%w: %q: %v", ErrProtocol, clip(string(line), maxQuoted), err)
		}
		if m.Event != "" {
			continue // events are not asked for here
		}
		return m, nil
	}
}

// clip cuts s to at most n bytes, at a rune boundary, marking the cut.
func clip(s string, n int) string {
	if len(s) <= n {
		return s
	}
	for n > 0 && !utf8.RuneStart(s[n]) {
		n--
	}
	return s[:n] + "…"
}

func (c *Client) exec(command string, args any) (json.RawMessage, error) {
	c.id++
	req := map[string]any{"execute": command, "id": c.id}
	if args != nil {
		req["arguments"] = args
	}
	b, err := json.Marshal(req)
	if err != nil {
		return nil, err
	}
	if _, err := c.conn.Write(append(b, '\n')); err != nil {
		return nil, fmt.Errorf("qmp %s: %w", command, err)
	}
	for {
		m, err := c.read()
		if err != nil {
			return nil, fmt.Errorf("qmp %s: %w", command, err)
		}
		if string(m.ID) != fmt.Sprint(c.id) {
			continue // an answer to an earlier, timed-out command
		}
		if m.Error != nil {
			return nil, &Error{Command: command, Class: clip(m.Error.Class, maxQuoted), Desc: clip(m.Error.Desc, maxDesc)}
		}
		return m.Return, nil
	}
}

// Run executes command with args (nil for none) and decodes its return
// value into out (nil to discard it).
func (c *Client) Run(ctx context.Context, command string, args, out any) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	stop := c.deadline(ctx)
	defer stop()
	ret, err := c.exec(command, args)
	if err != nil {
		if ctx.Err() != nil {
			return fmt.Errorf("qmp %s: %w", command, ctx.Err())
		}
		if errors.Is(err, os.ErrDeadlineExceeded) {
			// The socket's deadline is the context's, and may fire first.
			return fmt.Errorf("qmp %s: %w", command, context.DeadlineExceeded)
		}
		return err
	}
	if out != nil && len(ret) > 0 {
		if err := json.Unmarshal(ret, out); err != nil {
			return fmt.Errorf("%w: %s returned %s: %v", ErrProtocol, command, clip(string(ret), maxQuoted), err)
		}
	}
	return nil
}

// Close closes the connection.
func (c *Client) Close() error { return c.conn.Close() }
