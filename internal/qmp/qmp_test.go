package qmp

import (
	"bufio"
	"context"
	"errors"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// peer serves one QMP connection on a unix socket with script: for each
// command line it reads, the next reply lines are sent.
func peer(t testing.TB, greeting string, replies ...string) string {
	t.Helper()
	dir, err := os.MkdirTemp("", "qmp")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	sock := filepath.Join(dir, "s")
	l, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	go func() {
		c, err := l.Accept()
		if err != nil {
			return
		}
		defer c.Close()
		c.Write([]byte(greeting))
		r := bufio.NewReader(c)
		for _, rep := range replies {
			if _, err := r.ReadBytes('\n'); err != nil {
				return
			}
			c.Write([]byte(rep))
		}
		for { // hold the connection, unanswered, until the client is done
			if _, err := r.ReadBytes('\n'); err != nil {
				return
			}
		}
	}()
	return sock
}

const greeting = `{"QMP": {"version": {"qemu": {"micro": 0, "minor": 2, "major": 7}}, "capabilities": []}}` + "\n"

func ctx(t *testing.T) context.Context {
	c, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	t.Cleanup(cancel)
	return c
}

func TestRunSkipsEventsAndReportsQEMUErrors(t *testing.T) {
	sock := peer(t, greeting,
		`{"return": {}, "id": 1}`+"\n",
		`{"event": "DEVICE_DELETED", "data": {}}`+"\n"+`{"return": [{"name": "xenusb-0"}], "id": 2}`+"\n",
		`{"error": {"class": "GenericError", "desc": "Duplicate device ID 'xenusb-0' for device"}, "id": 3}`+"\n")
	c, err := Dial(ctx(t), sock)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	var props []struct{ Name string }
	if err := c.Run(ctx(t), "qom-list", map[string]any{"path": "/machine/peripheral"}, &props); err != nil || len(props) != 1 || props[0].Name != "xenusb-0" {
		t.Fatalf("qom-list: %v %v", props, err)
	}
	err = c.Run(ctx(t), "device_add", map[string]any{"driver": "usb-ehci", "id": "xenusb-0"}, nil)
	var qe *Error
	if !errors.As(err, &qe) || qe.Class != "GenericError" || qe.Desc != "Duplicate device ID 'xenusb-0' for device" || qe.Command != "device_add" {
		t.Fatalf("error: %#v", err)
	}
}

func TestDialRefusesWhatIsNotQMP(t *testing.T) {
	for name, g := range map[string]string{"no greeting": `{"return": {}}` + "\n", "not json": "hello\n"} {
		t.Run(name, func(t *testing.T) {
			sock := peer(t, g)
			_, err := Dial(ctx(t), sock)
			if !errors.Is(err, ErrProtocol) {
				t.Fatalf("err = %v", err)
			}
		})
	}
}

func TestRunEndsWithItsContext(t *testing.T) {
	sock := peer(t, greeting, `{"return": {}, "id": 1}`+"\n") // then never answers
	c, err := Dial(ctx(t), sock)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	short, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	err = c.Run(short, "query-status", nil, nil)
	if !errors.Is(err, context.DeadlineExceeded) || !strings.Contains(err.Error(), "query-status") {
		t.Fatalf("err = %v", err)
	}
}

// FuzzReply: whatever the peer sends after its greeting, a command ends
// with a result or an error, never a panic.
func FuzzReply(f *testing.F) {
	f.Add([]byte(`{"return": {}, "id": 2}` + "\n"))
	f.Add([]byte(`{"error": {"class": "X", "desc": "y"}, "id": 2}` + "\n"))
	f.Add([]byte(`{"event": "E"}` + "\n" + `{"return": [1,2], "id": 2}` + "\n"))
	f.Add([]byte("\x00\xff\n"))
	f.Add([]byte(`{"return": "x", "id": "2"}` + "\n"))
	f.Fuzz(func(t *testing.T, reply []byte) {
		a, b := net.Pipe()
		defer a.Close()
		defer b.Close()
		go func() {
			r := bufio.NewReader(b)
			b.Write([]byte(greeting))
			r.ReadBytes('\n')
			b.Write([]byte(`{"return": {}, "id": 1}` + "\n"))
			r.ReadBytes('\n')
			b.Write(reply)
			b.Close()
		}()
		c := &Client{conn: a, r: bufio.NewReader(a)}
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		if err := c.handshake(ctx); err != nil {
			return
		}
		var out any
		_ = c.Run(ctx, "query-status", nil, &out)
	})
}

// A device model that sends without end (a guest that took QEMU over) ends
// the command with a protocol error once a message passes maxMessage; it
// does not make the client allocate what it sends.
func TestRunRefusesAnEndlessMessage(t *testing.T) {
	a, b := net.Pipe()
	defer a.Close()
	go func() {
		defer b.Close()
		r := bufio.NewReader(b)
		if _, err := r.ReadBytes('\n'); err != nil {
			return
		}
		if _, err := b.Write([]byte(`{"return": "`)); err != nil {
			return
		}
		chunk := []byte(strings.Repeat("x", 64<<10)) // one endless string
		for {                                        // until the client gives up and closes
			if _, err := b.Write(chunk); err != nil {
				return
			}
		}
	}()
	c := &Client{conn: a, r: bufio.NewReaderSize(a, 64<<10)}
	err := c.Run(ctx(t), "qom-list", nil, nil)
	if !errors.Is(err, ErrProtocol) || !strings.Contains(err.Error(), "longer than") {
		t.Fatalf("err = %v", err)
	}
}

// QEMU's error text and a malformed message are kept short: they go into
// audit records and logs.
func TestLongTextFromQEMUIsClipped(t *testing.T) {
	long := strings.Repeat("é", 2000)
	sock := peer(t, greeting,
		`{"return": {}, "id": 1}`+"\n",
		`{"error": {"class": "GenericError", "desc": "`+long+`"}, "id": 2}`+"\n",
		`{"return": `+long+"\n")
	c, err := Dial(ctx(t), sock)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	err = c.Run(ctx(t), "device_add", nil, nil)
	var qe *Error
	if !errors.As(err, &qe) || len(qe.Desc) > maxDesc+len("…") || !strings.HasPrefix(long, strings.TrimSuffix(qe.Desc, "…")) {
		t.Fatalf("desc of %d bytes: %v", len(qe.Desc), err)
	}
	err = c.Run(ctx(t), "qom-list", nil, nil)
	if !errors.Is(err, ErrProtocol) || len(err.Error()) > 400 {
		t.Fatalf("protocol error of %d bytes: %.200v", len(err.Error()), err)
	}
}

// A reply whose return value does not decode into what the command asked
// for is a protocol error too, and its text must be as short as the
// others: the return value is QEMU's (a guest's, if it took QEMU over),
// up to maxMessage long, and the error goes into audit records and logs.
func TestUndecodableReturnIsClipped(t *testing.T) {
	long := strings.Repeat("x", 512<<10) // well under maxMessage
	sock := peer(t, greeting,
		`{"return": {}, "id": 1}`+"\n",
		`{"return": "`+long+`", "id": 2}`+"\n")
	c, err := Dial(ctx(t), sock)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	var props []struct{ Name, Type string }
	err = c.Run(ctx(t), "qom-list", map[string]any{"path": "/machine/peripheral"}, &props)
	if !errors.Is(err, ErrProtocol) {
		t.Fatalf("err = %.200v", err)
	}
	if n := len(err.Error()); n > 400 {
		t.Fatalf("the error quotes QEMU's return value whole: %d bytes (%.120s…)", n, err)
	}
}
