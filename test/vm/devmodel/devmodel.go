package devmodel

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"sync"

	"github.com/usbhotplugd/usbhotplugd/internal/sim"
)

const greeting = `{"QMP": {"version": {"qemu": {"micro": 0, "minor": 2, "major": 7}, "package": ""}, "capabilities": []}}`

// ErrInUse is a socket path that something answers on already.
var ErrInUse = errors.New("a device model answers there already")

// A Server is one guest's simulated QEMU on its socket.
type Server struct {
	ln   net.Listener
	dm   *sim.DeviceModel
	wg   sync.WaitGroup
	mu   sync.Mutex
	conn map[net.Conn]bool // open connections, closed by Close
}

// Serve serves a new, empty simulated QEMU on path. A stale socket there
// is replaced; a live one is refused (ErrInUse), not taken over.
func Serve(path string) (*Server, error) {
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return nil, err
	}
	if c, err := net.Dial("unix", path); err == nil {
		c.Close()
		return nil, fmt.Errorf("%s: %w", path, ErrInUse)
	}
	os.Remove(path)
	ln, err := net.Listen("unix", path)
	if err != nil {
		return nil, err
	}
	s := &Server{ln: ln, dm: sim.NewDeviceModel(), conn: map[net.Conn]bool{}}
	s.wg.Add(1)
	go s.accept()
	return s, nil
}

func (s *Server) accept() {
	defer s.wg.Done()
	for {
		c, err := s.ln.Accept()
		if err != nil {
			return // closed
		}
		s.mu.Lock()
		s.conn[c] = true
		s.mu.Unlock()
		s.wg.Add(1)
		go func() {
			defer s.wg.Done()
			s.serve(c)
			s.mu.Lock()
			delete(s.conn, c)
			s.mu.Unlock()
		}()
	}
}

// Close ends the device model, as its QEMU ends with its guest: the
// socket is removed and open connections are cut.
func (s *Server) Close() error {
	err := s.ln.Close() // which removes the socket
	s.mu.Lock()
	for c := range s.conn {
		c.Close()
	}
	s.mu.Unlock()
	s.wg.Wait()
	return err
}

// serve is one QMP connection: the greeting, then each command's answer,
// with its id.
func (s *Server) serve(c net.Conn) {
	defer c.Close()
	if _, err := fmt.Fprintln(c, greeting); err != nil {
		return
	}
	sc := bufio.NewScanner(c)
	enc := json.NewEncoder(c)
	for sc.Scan() {
		var req struct {
			Execute   string          `json:"execute"`
			Arguments map[string]any  `json:"arguments"`
			ID        json.RawMessage `json:"id"`
		}
		if json.Unmarshal(sc.Bytes(), &req) != nil {
			return
		}
		if enc.Encode(s.answer(req.Execute, req.Arguments, req.ID)) != nil {
			return
		}
	}
}

func (s *Server) answer(execute string, args map[string]any, id json.RawMessage) map[string]any {
	rep := map[string]any{}
	if len(id) > 0 {
		rep["id"] = id
	}
	var out any
	var err error
	if execute != "qmp_capabilities" {
		err = s.dm.Run(context.Background(), execute, args, &out)
	}
	var qe *sim.QMPError
	switch {
	case errors.As(err, &qe):
		rep["error"] = map[string]string{"class": qe.Class, "desc": qe.Desc}
	case err != nil:
		rep["error"] = map[string]string{"class": "GenericError", "desc": err.Error()}
	case out == nil:
		rep["return"] = map[string]any{}
	default:
		rep["return"] = out
	}
	return rep
}
