package assign

import (
	"context"
	"fmt"
	"strconv"
	"strings"
)

// maxDomid is the last domid a domain can have: DOMID_FIRST_RESERVED - 1.
const maxDomid = 0x7fef

// A Domain is a running guest.
type Domain struct {
	ID   uint32
	Name string
	Type string // "pv", "pvh" or "hvm", from /libxl/<domid>/type; "" if unknown
}

// Domains lists the domains in /local/domain with their names.
func (h *Host) Domains(ctx context.Context) ([]Domain, error) {
	ids, err := dirOpt(ctx, h.XS, "/local/domain")
	if err != nil {
		return nil, err
	}
	var paths []string
	var doms []Domain
	for _, s := range ids {
		n, ok := atoiStrict(s)
		if !ok || n > maxDomid {
			continue
		}
		doms = append(doms, Domain{ID: uint32(n)})
		paths = append(paths, fmt.Sprintf("/local/domain/%d/name", n), fmt.Sprintf("/libxl/%d/type", n))
	}
	vals, err := readMany(ctx, h.XS, paths)
	if err != nil {
		return nil, err
	}
	for i := range doms {
		doms[i].Name = vals[2*i].v
		doms[i].Type = vals[2*i+1].v
	}
	return doms, nil
}

// domainPaths are the nodes Domain reads for a domid: its name and type.
func domainPaths(domid uint32) []string {
	return []string{fmt.Sprintf("/local/domain/%d/name", domid), fmt.Sprintf("/libxl/%d/type", domid)}
}

// Domain finds a domain by name or domid, as xl's find_domain does.
func (h *Host) Domain(ctx context.Context, nameOrID string) (Domain, error) {
	return h.domain(ctx, h.XS, nameOrID)
}

func (h *Host) domain(ctx context.Context, r rw, nameOrID string) (Domain, error) {
	if n, ok := atoiStrict(nameOrID); ok {
		if n > maxDomid {
			// Not the domain it would wrap to as a uint32.
			return Domain{}, fmt.Errorf("domain %s: %w", nameOrID, ErrNoDomain)
		}
		// The name and the type in one round trip.
		vals, err := readMany(ctx, r, domainPaths(uint32(n)))
		if err != nil {
			return Domain{}, err
		}
		if !vals[0].ok {
			if _, exists, _ := readOpt(ctx, r, fmt.Sprintf("/local/domain/%d", n)); !exists {
				return Domain{}, fmt.Errorf("domain %d: %w", n, ErrNoDomain)
			}
		}
		return Domain{ID: uint32(n), Name: vals[0].v, Type: vals[1].v}, nil
	}
	doms, err := h.Domains(ctx)
	if err != nil {
		return Domain{}, err
	}
	var found []Domain
	for _, d := range doms {
		if d.Name == nameOrID {
			found = append(found, d)
		}
	}
	switch len(found) {
	case 0:
		return Domain{}, fmt.Errorf("domain %q: %w", nameOrID, ErrNoDomain)
	case 1:
		return found[0], nil
	}
	ids := make([]string, len(found))
	for i, d := range found {
		ids[i] = strconv.Itoa(int(d.ID))
	}
	return Domain{}, fmt.Errorf("domain %q: several domains have that name (%s); give the domid", nameOrID, strings.Join(ids, ", "))
}
