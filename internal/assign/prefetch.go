package assign

import (
	"context"
	"slices"

	"github.com/usbhotplugd/usbhotplugd/internal/xenstore"
)

// The shape of the store (which domains have which controllers, with how
// many ports) changes rarely, while every attach reads all of it inside
// its transaction. The last shape seen is remembered, and a snapshot
// sends every read it predicts in one batch: the reads that follow are
// answered from that batch, and only what the prediction missed goes to
// the store. The logic that reads and checks the layout is the same
// either way; only the round trips differ.

// rememberShape keeps the controllers of a snapshot as the next guess.
func (h *Host) rememberShape(snap snapshot) {
	shape := make(map[uint32][]Controller, len(snap.ctrls))
	for d, cs := range snap.ctrls {
		shape[d] = slices.Clone(cs)
	}
	h.shapeMu.Lock()
	h.shape = shape
	h.shapeMu.Unlock()
}

// prefetch reads what the last shape predicts a snapshot will read, and
// returns a reader that answers from it.
func (h *Host) prefetch(ctx context.Context, r rw, withState bool) rw {
	h.shapeMu.Lock()
	shape := h.shape
	h.shapeMu.Unlock()
	if len(shape) == 0 {
		return r
	}
	gets := []xenstore.Get{{Path: "/libxl", Dir: true}}
	doms := make([]uint32, 0, len(shape))
	for d := range shape {
		doms = append(doms, d)
	}
	slices.Sort(doms)
	for _, d := range doms {
		gets = append(gets, xenstore.Get{Path: libxlDir(d), Dir: true})
		for _, c := range shape[d] {
			for _, p := range controllerPaths(d, c.DevID, withState) {
				gets = append(gets, xenstore.Get{Path: p})
			}
			for port := 1; port <= c.Ports; port++ {
				gets = append(gets, xenstore.Get{Path: c.portPath(port)})
			}
		}
	}
	return prefetchGets(ctx, r, gets)
}

// prefetchGets sends gets in one batch and returns a reader that answers
// from it.
func prefetchGets(ctx context.Context, r rw, gets []xenstore.Get) rw {
	p := &prefetched{rw: r, got: make(map[xenstore.Get]xenstore.Got, len(gets))}
	for i, g := range r.Gets(ctx, gets) {
		if g.Err != nil && !notExist(g.Err) {
			continue // not remembered: asked again, and its error seen there
		}
		p.got[gets[i]] = g
	}
	return p
}

// prefetched answers reads and listings from a batch, and passes the rest
// through. A snapshot uses it once and drops it.
type prefetched struct {
	rw
	got map[xenstore.Get]xenstore.Got
}

func (p *prefetched) Read(ctx context.Context, path string) ([]byte, error) {
	if g, ok := p.got[xenstore.Get{Path: path}]; ok {
		return g.Value, g.Err
	}
	return p.rw.Read(ctx, path)
}

func (p *prefetched) Directory(ctx context.Context, path string) ([]string, error) {
	if g, ok := p.got[xenstore.Get{Path: path, Dir: true}]; ok {
		return g.Names, g.Err
	}
	return p.rw.Directory(ctx, path)
}

func (p *prefetched) ReadMany(ctx context.Context, paths []string) ([][]byte, []error) {
	vals, errs := make([][]byte, len(paths)), make([]error, len(paths))
	var miss []string
	var at []int
	for i, path := range paths {
		if g, ok := p.got[xenstore.Get{Path: path}]; ok {
			vals[i], errs[i] = g.Value, g.Err
		} else {
			miss, at = append(miss, path), append(at, i)
		}
	}
	if len(miss) > 0 {
		v, e := p.rw.ReadMany(ctx, miss)
		for j, i := range at {
			vals[i], errs[i] = v[j], e[j]
		}
	}
	return vals, errs
}

func (p *prefetched) Gets(ctx context.Context, gets []xenstore.Get) []xenstore.Got {
	out := make([]xenstore.Got, len(gets))
	var miss []xenstore.Get
	var at []int
	for i, g := range gets {
		if got, ok := p.got[g]; ok {
			out[i] = got
		} else {
			miss, at = append(miss, g), append(at, i)
		}
	}
	if len(miss) > 0 {
		for j, got := range p.rw.Gets(ctx, miss) {
			out[at[j]] = got
		}
	}
	return out
}
