package main

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"sync"

	"github.com/usbhotplugd/usbhotplugd/internal/qmp"
	"github.com/usbhotplugd/usbhotplugd/internal/sim"
)

// The device models of HVM guests: the project's simulated QEMU for the
// USB commands libxl sends, served on the socket where libxl's QEMU has
// its QMP (qmp.SocketPath), one per domain.
var dms struct {
	mu sync.Mutex
	ln map[uint32]net.Listener
}

const qmpGreeting = `{"QMP": {"version": {"qemu": {"micro": 0, "minor": 2, "major": 7}, "package": ""}, "capabilities": []}}`

func domidArg(args []string) (uint32, error) {
	if len(args) != 1 {
		return 0, errors.New("DOMID")
	}
	n, err := strconv.ParseUint(args[0], 10, 32)
	return uint32(n), err
}

// startDM serves a new simulated QEMU for a domain.
func startDM(args []string) error {
	domid, err := domidArg(args)
	if err != nil {
		return err
	}
	path := qmp.SocketPath(domid)
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return err
	}
	os.Remove(path)
	ln, err := net.Listen("unix", path)
	if err != nil {
		return err
	}
	dms.mu.Lock()
	if dms.ln == nil {
		dms.ln = map[uint32]net.Listener{}
	}
	dms.ln[domid] = ln
	dms.mu.Unlock()
	dm := sim.NewDeviceModel()
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return // stopped
			}
			go serveQMP(c, dm)
		}
	}()
	return nil
}

// stopDM ends a domain's device model, as its QEMU ends with it.
func stopDM(args []string) error {
	domid, err := domidArg(args)
	if err != nil {
		return err
	}
	dms.mu.Lock()
	defer dms.mu.Unlock()
	ln, ok := dms.ln[domid]
	if !ok {
		return fmt.Errorf("domain %d has no device model", domid)
	}
	delete(dms.ln, domid)
	return ln.Close() // which removes the socket
}

// serveQMP is one QMP connection: the greeting, then each command's
// answer, with its id.
func serveQMP(c net.Conn, dm *sim.DeviceModel) {
	defer c.Close()
	if _, err := fmt.Fprintln(c, qmpGreeting); err != nil {
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
		rep := map[string]any{}
		if len(req.ID) > 0 {
			rep["id"] = req.ID
		}
		var out any
		err := error(nil)
		if req.Execute != "qmp_capabilities" {
			err = dm.Run(context.Background(), req.Execute, req.Arguments, &out)
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
		if enc.Encode(rep) != nil {
			return
		}
	}
}
