package main

import (
	"errors"
	"fmt"
	"strconv"
	"sync"

	"github.com/usbhotplugd/usbhotplugd/internal/qmp"
	"github.com/usbhotplugd/usbhotplugd/test/vm/devmodel"
)

// The device models of HVM guests: the project's simulated QEMU for the
// USB commands libxl sends, served on the socket where libxl's QEMU has
// its QMP (qmp.SocketPath), one per domain.
var dms struct {
	mu  sync.Mutex
	srv map[uint32]*devmodel.Server
}

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
	dms.mu.Lock()
	defer dms.mu.Unlock()
	if _, ok := dms.srv[domid]; ok {
		return fmt.Errorf("domain %d has a device model already", domid)
	}
	s, err := devmodel.Serve(qmp.SocketPath(domid))
	if err != nil {
		return err
	}
	if dms.srv == nil {
		dms.srv = map[uint32]*devmodel.Server{}
	}
	dms.srv[domid] = s
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
	s, ok := dms.srv[domid]
	if !ok {
		return fmt.Errorf("domain %d has no device model", domid)
	}
	delete(dms.srv, domid)
	return s.Close()
}
