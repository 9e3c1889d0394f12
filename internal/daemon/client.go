package daemon

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"net"
	"path/filepath"
	"syscall"
)

// ErrNotRunning: no agent answers on the control socket.
var ErrNotRunning = errors.New("no agent is running")

// A Client talks to the running agent over its control socket.
type Client struct {
	conn *net.UnixConn
	r    *bufio.Reader
}

// Dial connects to the agent whose state directory is dir.
func Dial(ctx context.Context, dir string) (*Client, error) {
	path := filepath.Join(dir, ControlSocket)
	var d net.Dialer
	c, err := d.DialContext(ctx, "unix", path)
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) || errors.Is(err, syscall.ECONNREFUSED) {
			return nil, fmt.Errorf("%w: nothing answers on %s (is usbhotplugd running, with --state-dir %s?)", ErrNotRunning, path, dir)
		}
		return nil, fmt.Errorf("control socket: %w", err)
	}
	uc := c.(*net.UnixConn)
	context.AfterFunc(ctx, func() { uc.Close() })
	return &Client{conn: uc, r: bufio.NewReaderSize(uc, 64<<10)}, nil
}

// Close ends the connection.
func (c *Client) Close() error { return c.conn.Close() }

// Call sends req and returns the agent's answer; a refusal (OK false) is
// an *APIError.
func (c *Client) Call(req Request) (*Response, error) {
	b, err := json.Marshal(req)
	if err != nil {
		return nil, err
	}
	if _, err := c.conn.Write(append(b, '\n')); err != nil {
		return nil, fmt.Errorf("control socket: %w", err)
	}
	return c.Next()
}

// Next reads the next response line (after watch: the next decision).
func (c *Client) Next() (*Response, error) {
	line, err := c.r.ReadBytes('\n')
	if err != nil {
		return nil, fmt.Errorf("control socket: %w", err)
	}
	var r Response
	if err := json.Unmarshal(line, &r); err != nil {
		return nil, fmt.Errorf("control socket: a reply that is not JSON: %w", err)
	}
	if !r.OK {
		return &r, &APIError{Code: r.ErrorCode, Msg: r.Error}
	}
	return &r, nil
}

// APIError is a request the agent refused.
type APIError struct{ Code, Msg string }

func (e *APIError) Error() string { return e.Msg }
