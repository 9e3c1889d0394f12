package assign

import (
	"context"
	"fmt"
	"io"

	"github.com/usbhotplugd/usbhotplugd/internal/xenstore"
	"github.com/usbhotplugd/usbhotplugd/policy"
)

// A ListedPort is one port in usb-list's terms.
type ListedPort struct {
	Port   int    `json:"port"`
	BusID  string `json:"busid,omitempty"`
	Bus    int    `json:"bus,omitempty"`  // bus number, as devices --json names it
	Device int    `json:"addr,omitempty"` // address on the bus
	// Present is false when the port names a device sysfs no longer has;
	// xl prints such a port as empty.
	Present bool `json:"present"`
}

// A ListedController is one controller in usb-list's terms.
type ListedController struct {
	DevID   int          `json:"controller"` // the devid, as controller= and the audit records name it
	Type    string       `json:"type"`
	Backend uint32       `json:"backend_domid"`
	State   int          `json:"state"`
	Version int          `json:"usb_version"`
	Ports   []ListedPort `json:"ports"`
}

// List gathers what `xl usb-list` prints, bus and device numbers read from
// sysfs now.
func (h *Host) List(ctx context.Context, domid uint32) ([]ListedController, error) {
	return h.list(ctx, h.XS, domid)
}

// DomainList is Domain followed by List, in one round trip to the store
// where the layout is libxl's usual one: for a domid, the reads both make
// for a guest with one pv controller of up to listGuess ports go out in
// one batch, and only what that batch did not predict is asked after. A
// name costs the round trips that find it, then List's reads in one batch
// as well. The reads and checks are Domain's and List's own either way.
func (h *Host) DomainList(ctx context.Context, nameOrID string) (Domain, []ListedController, error) {
	d, r, err := h.domainPrefetched(ctx, nameOrID)
	if err != nil {
		return Domain{}, nil, err
	}
	l, err := h.list(ctx, r, d.ID)
	return d, l, err
}

// domainPrefetched is domain, and a reader that answers the reads of the
// domain's controllers (as listGets predicts them) from one batch: sent
// with the domain's own reads for a domid, after the name is found for a
// name.
func (h *Host) domainPrefetched(ctx context.Context, nameOrID string) (Domain, rw, error) {
	if n, ok := atoiStrict(nameOrID); ok && n <= maxDomid {
		r := prefetchGets(ctx, h.XS, listGets(uint32(n), true))
		d, err := h.domain(ctx, r, nameOrID)
		return d, r, err
	}
	d, err := h.domain(ctx, h.XS, nameOrID)
	if err != nil {
		return Domain{}, nil, err
	}
	return d, prefetchGets(ctx, h.XS, listGets(d.ID, false)), nil
}

// listGuess is the number of ports DomainList reads before it knows how
// many there are: libxl's default.
const listGuess = 8

// listGets are the reads DomainList predicts for a domid; withDomain, the
// domain's own (its name and type) too.
func listGets(domid uint32, withDomain bool) []xenstore.Get {
	var dom []string
	if withDomain {
		dom = domainPaths(domid)
	}
	ctrl := controllerPaths(domid, 0, true)
	// Sized at once: a short-lived command pays for each size the slice
	// would pass through on its way.
	gets := make([]xenstore.Get, 0, len(dom)+1+len(ctrl)+listGuess)
	for _, p := range dom {
		gets = append(gets, xenstore.Get{Path: p})
	}
	gets = append(gets, xenstore.Get{Path: libxlDir(domid), Dir: true})
	for _, p := range ctrl {
		gets = append(gets, xenstore.Get{Path: p})
	}
	c := Controller{Type: policy.TypePV, backend: backendPath("vusb", domid, 0)}
	for port := 1; port <= listGuess; port++ {
		gets = append(gets, xenstore.Get{Path: c.portPath(port)})
	}
	return gets
}

func (h *Host) list(ctx context.Context, r rw, domid uint32) ([]ListedController, error) {
	ctrls, err := h.controllers(ctx, r, domid, true)
	if err != nil {
		return nil, err
	}
	out := make([]ListedController, 0, len(ctrls))
	for _, c := range ctrls {
		lc := ListedController{DevID: c.DevID, Type: c.Type, Backend: c.BackendDomid, State: c.FrontendState, Version: c.Version}
		for i, b := range c.Port {
			lp := ListedPort{Port: i + 1, BusID: b}
			if b != "" && checkBusID(b) == nil {
				if bus, dev, err := h.Sys.Addr(b); err == nil {
					lp.Bus, lp.Device, lp.Present = bus, dev, true
				}
			}
			lc.Ports = append(lc.Ports, lp)
		}
		out = append(out, lc)
	}
	return out, nil
}

// WriteList prints controllers exactly as `xl usb-list` does: a header per
// controller, then each port with bus and device in three hex digits.
func WriteList(w io.Writer, ctrls []ListedController) error {
	for _, c := range ctrls {
		if _, err := fmt.Fprintf(w, "%-6s %-12s %-3s %-5s %-7s %-5s\n", "Devid", "Type", "BE", "state", "usb-ver", "ports"); err != nil {
			return err
		}
		fmt.Fprintf(w, "%-6d %-12s %-3d %-5d %-7d %-5d\n", c.DevID, c.Type, c.Backend, c.State, c.Version, len(c.Ports))
		for _, p := range c.Ports {
			if p.Present {
				fmt.Fprintf(w, "  Port %d: Bus %03x Device %03x\n", p.Port, p.Bus, p.Device)
			} else {
				fmt.Fprintf(w, "  Port %d:\n", p.Port)
			}
		}
	}
	return nil
}

// DomainAhead is Domain for a command that goes on to attach: the
// domain's controllers are read in one round trip (as DomainList predicts
// them; for a domid, the same as the domain's own reads) and kept as the
// shape the attach's transaction prefetches, so that its reads of them
// also cost one round trip. A Host that has taken a snapshot already
// keeps its own shape.
func (h *Host) DomainAhead(ctx context.Context, nameOrID string) (Domain, error) {
	d, r, err := h.domainPrefetched(ctx, nameOrID)
	if err != nil {
		return Domain{}, err
	}
	ids, err := dirOpt(ctx, r, libxlDir(d.ID))
	if err != nil {
		return d, nil // the attach reads it again, and says what fails
	}
	var ctrls []Controller
	for _, s := range ids {
		if devid, ok := parseDevID(s); ok {
			if c, err := h.controller(ctx, r, d.ID, devid, false); err == nil {
				ctrls = append(ctrls, c)
			}
		}
	}
	h.shapeMu.Lock()
	if h.shape == nil {
		h.shape = map[uint32][]Controller{d.ID: ctrls}
	}
	h.shapeMu.Unlock()
	return d, nil
}
