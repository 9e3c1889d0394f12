package server

import (
	"strconv"
	"syscall"

	xs "github.com/usbhotplugd/usbhotplugd/internal/xenstore"
)

// A txn is an open transaction: its own root, the generation of every node
// it touched when it first touched it, and the changes to replay at commit.
type txn struct {
	id     uint32
	root   *node
	access map[string]uint64
	log    []func(st *state)
}

// A state is a view of the store that operations change: the main tree
// (tx == nil), whose changes fire watches, or a transaction's snapshot.
type state struct {
	s    *Server
	c    *conn
	root *node
	tx   *txn
	// fired records changes to announce: on the main tree only.
	fired []firing
}

type firing struct {
	path  string
	perms xs.Perms
	exact bool
}

func (s *Server) mainState(c *conn) *state { return &state{s: s, c: c, root: s.root} }

// commit publishes a main-tree state and fires its watches.
func (st *state) commit() {
	if st.tx != nil {
		st.tx.root = st.root
		return
	}
	st.s.root = st.root
	for _, f := range st.fired {
		st.s.fire(f.path, f.perms, f.exact)
	}
	st.fired = nil
}

func (st *state) touch(path string, n *node) {
	if st.tx == nil {
		return
	}
	if _, seen := st.tx.access[path]; seen {
		return
	}
	var g uint64
	if n != nil {
		g = n.gen
	}
	st.tx.access[path] = g
}

func (st *state) announce(path string, perms xs.Perms, exact bool) {
	if st.tx == nil {
		st.fired = append(st.fired, firing{path, perms, exact})
	}
}

// get finds a node the connection may use; for a missing node the error is
// EACCES when the caller may not read the nearest ancestor, as in xenstored.
func (st *state) get(path string, wantWrite bool) (*node, syscall.Errno) {
	comps := split(path)
	n := lookup(st.root, comps)
	st.touch(path, n)
	if n == nil {
		for i := len(comps) - 1; i >= 0; i-- {
			a := lookup(st.root, comps[:i])
			if a == nil {
				continue
			}
			if r, _, _ := st.c.access(a.perms); !r {
				return nil, syscall.EACCES
			}
			break
		}
		return nil, syscall.ENOENT
	}
	r, w, _ := st.c.access(n.perms)
	if !r || (wantWrite && !w) {
		return nil, syscall.EACCES
	}
	return n, 0
}

func (st *state) read(path string) ([]byte, syscall.Errno) {
	n, e := st.get(path, false)
	if e != 0 {
		return nil, e
	}
	return n.value, 0
}

// create makes path and its missing parents; the new nodes inherit their
// parent's permissions, and an unprivileged creator owns them.
func (st *state) create(path string, value []byte) syscall.Errno {
	comps := split(path)
	k := len(comps) - 1
	for k > 0 && lookup(st.root, comps[:k]) == nil {
		k--
	}
	anc := lookup(st.root, comps[:k])
	st.touch(joinPathOrRoot(comps[:k]), anc)
	if _, w, _ := st.c.access(anc.perms); !w {
		return syscall.EACCES
	}
	if !st.c.priv() && len(value) > domUMaxEntrySize {
		return syscall.ENOSPC
	}
	parentPerms := anc.perms
	for i := k; i < len(comps); i++ {
		perms := append(xs.Perms(nil), parentPerms...)
		if !st.c.priv() {
			perms[0].Domid = st.c.domid
		}
		v := []byte{}
		if i == len(comps)-1 {
			v = append(v, value...)
		}
		p := joinPath(comps[:i+1])
		st.touch(p, nil)
		st.root = replace(st.root, comps[:i+1], &node{value: v, perms: perms, gen: st.s.next()}, st.s.next())
		parentPerms = perms
	}
	return 0
}

func joinPathOrRoot(comps []string) string {
	if len(comps) == 0 {
		return "/"
	}
	return joinPath(comps)
}

func (st *state) write(path string, value []byte) syscall.Errno {
	comps := split(path)
	n := lookup(st.root, comps)
	if n == nil {
		if e := st.create(path, value); e != 0 {
			return e
		}
		st.announce(path, nil, false)
		return 0
	}
	st.touch(path, n)
	if _, w, _ := st.c.access(n.perms); !w {
		return syscall.EACCES
	}
	if !st.c.priv() && len(value) > domUMaxEntrySize {
		return syscall.ENOSPC
	}
	nn := n.copyNode()
	nn.value = append([]byte{}, value...)
	nn.gen = st.s.next()
	st.root = replace(st.root, comps, nn, st.s.next())
	st.announce(path, n.perms, false)
	return 0
}

func (st *state) mkdir(path string) syscall.Errno {
	n, e := st.get(path, false)
	if e == 0 && n != nil {
		return 0
	}
	if e != syscall.ENOENT {
		return e
	}
	if e := st.create(path, nil); e != 0 {
		return e
	}
	st.announce(path, nil, false)
	return 0
}

func (st *state) rm(path string) syscall.Errno {
	n, e := st.get(path, true)
	if e == syscall.ENOENT {
		comps := split(path)
		parent := lookup(st.root, comps[:len(comps)-1])
		st.touch(joinPathOrRoot(comps[:len(comps)-1]), parent)
		if parent != nil {
			return 0
		}
		return syscall.ENOENT
	}
	if e != 0 {
		return e
	}
	if path == "/" {
		return syscall.EINVAL
	}
	comps := split(path)
	parent := lookup(st.root, comps[:len(comps)-1])
	st.touch(joinPathOrRoot(comps[:len(comps)-1]), parent)
	// Watches on the removed descendants fire with their own paths. A
	// transaction touches each of them, as the C daemon's does: a write
	// below meanwhile fails its commit.
	walk(n, path, true, func(p string, d *node) {
		st.touch(p, d)
		if p != path {
			st.announce(p, d.perms, true)
		}
	})
	st.root = replace(st.root, comps, nil, st.s.next())
	st.announce(path, n.perms, false)
	return 0
}

func (st *state) getPerms(path string) (xs.Perms, syscall.Errno) {
	n, e := st.get(path, false)
	if e != 0 {
		return nil, e
	}
	return n.perms, 0
}

func (st *state) setPerms(path string, perms xs.Perms) syscall.Errno {
	if len(path) > 0 && path[0] == '@' {
		old, ok := st.s.special[path]
		if !ok {
			return syscall.EINVAL
		}
		if _, _, own := st.c.access(old); !own {
			return syscall.EACCES
		}
		st.s.special[path] = perms
		return 0
	}
	n, e := st.get(path, true)
	if e != 0 {
		return e
	}
	if _, _, own := st.c.access(n.perms); !own {
		return syscall.EACCES
	}
	if !st.c.priv() && perms.Owner() != n.perms.Owner() {
		return syscall.EPERM
	}
	nn := n.copyNode()
	nn.perms = append(xs.Perms(nil), perms...)
	nn.gen = st.s.next()
	st.root = replace(st.root, split(path), nn, st.s.next())
	st.announce(path, n.perms, false)
	return 0
}

func appendNames(b []byte, names []string) []byte {
	for _, n := range names {
		b = append(append(b, n...), 0)
	}
	return b
}

// handle runs one request; s.mu is held.
func (s *Server) handle(c *conn, h xs.Header, p []byte) (xs.MsgType, []byte, syscall.Errno) {
	ok := []byte("OK\x00")
	var tx *txn
	if h.TxID != 0 {
		tx = c.txs[h.TxID]
		if tx == nil {
			return 0, nil, syscall.ENOENT
		}
	}
	st := s.mainState(c)
	if tx != nil {
		st.root, st.tx = tx.root, tx
	}
	// path1 checks the single path argument of most requests.
	path1 := func() (string, syscall.Errno) {
		a, good := onearg(p)
		if !good {
			return "", syscall.EINVAL
		}
		cp, good := c.canonical(a)
		if !good {
			return "", syscall.EINVAL
		}
		return cp, 0
	}
	switch h.Type {
	case xs.TypeRead:
		path, e := path1()
		if e != 0 {
			return 0, nil, e
		}
		v, e := st.read(path)
		if e != 0 {
			return 0, nil, e
		}
		return h.Type, append([]byte{}, v...), 0

	case xs.TypeDirectory:
		path, e := path1()
		if e != 0 {
			return 0, nil, e
		}
		n, e := st.get(path, false)
		if e != 0 {
			return 0, nil, e
		}
		out := appendNames(nil, n.names)
		if len(out) > xs.PayloadMax {
			return 0, nil, syscall.E2BIG
		}
		return h.Type, out, 0

	case xs.TypeDirectoryPart:
		args := getStrings(p, 2)
		if len(args) != 2 {
			return 0, nil, syscall.EINVAL
		}
		path, good := c.canonical(args[0])
		if !good {
			return 0, nil, syscall.EINVAL
		}
		n, e := st.get(path, false)
		if e != 0 {
			return 0, nil, e
		}
		return h.Type, directoryPart(n, atoi(args[1])), 0

	case xs.TypeGetPerms:
		a, good := onearg(p)
		if !good {
			return 0, nil, syscall.EINVAL
		}
		path, good := c.canonical(a)
		if !good {
			return 0, nil, syscall.EINVAL
		}
		ps, e := st.getPerms(path)
		if e != 0 {
			return 0, nil, e
		}
		out := []byte{}
		for _, x := range ps {
			out = append(append(out, x.String()...), 0)
		}
		return h.Type, out, 0

	case xs.TypeWrite:
		i := indexNUL(p)
		if i < 0 {
			return 0, nil, syscall.EINVAL
		}
		path, good := c.canonical(string(p[:i]))
		if !good {
			return 0, nil, syscall.EINVAL
		}
		value := append([]byte{}, p[i+1:]...)
		if e := st.write(path, value); e != 0 {
			return 0, nil, e
		}
		st.commit()
		if tx != nil {
			tx.log = append(tx.log, func(m *state) { m.write(path, value) })
		}
		return h.Type, ok, 0

	case xs.TypeMkdir, xs.TypeRm:
		path, e := path1()
		if e != 0 {
			return 0, nil, e
		}
		op := (*state).mkdir
		if h.Type == xs.TypeRm {
			op = (*state).rm
		}
		if e := op(st, path); e != 0 {
			return 0, nil, e
		}
		st.commit()
		if tx != nil {
			tx.log = append(tx.log, func(m *state) { op(m, path) })
		}
		return h.Type, ok, 0

	case xs.TypeSetPerms:
		args := getStrings(p, 1+xs.PayloadMax)
		if len(args) < 2 {
			return 0, nil, syscall.EINVAL
		}
		path := args[0]
		if len(path) == 0 || path[0] != '@' {
			var good bool
			if path, good = c.canonical(path); !good {
				return 0, nil, syscall.EINVAL
			}
		}
		perms := make(xs.Perms, 0, len(args)-1)
		for _, a := range args[1:] {
			pm, err := xs.ParsePerm(a)
			if err != nil {
				return 0, nil, syscall.EINVAL
			}
			perms = append(perms, pm)
		}
		if e := st.setPerms(path, perms); e != 0 {
			return 0, nil, e
		}
		st.commit()
		if tx != nil && path[0] != '@' {
			tx.log = append(tx.log, func(m *state) { m.setPerms(path, perms) })
		}
		return h.Type, ok, 0

	case xs.TypeWatch, xs.TypeUnwatch:
		args := getStrings(p, 2)
		if len(args) != 2 {
			return 0, nil, syscall.EINVAL
		}
		path, relative := args[0], false
		if len(path) == 0 || path[0] != '@' {
			relative = len(path) == 0 || path[0] != '/'
			var good bool
			if path, good = c.canonical(path); !good {
				return 0, nil, syscall.EINVAL
			}
		} else if len(path) > xs.RelPathMax {
			return 0, nil, syscall.EINVAL
		}
		idx := -1
		for i, w := range c.watches {
			if w.path == path && w.token == args[1] {
				idx = i
			}
		}
		if h.Type == xs.TypeUnwatch {
			if idx < 0 {
				return 0, nil, syscall.ENOENT
			}
			c.watches = append(c.watches[:idx], c.watches[idx+1:]...)
			return h.Type, ok, 0
		}
		if idx >= 0 {
			return 0, nil, syscall.EEXIST
		}
		if !c.priv() && len(c.watches) >= domUMaxWatches {
			return 0, nil, syscall.E2BIG
		}
		w := &watch{path: path, token: args[1], relative: relative}
		c.watches = append(c.watches, w)
		c.pendingInitial = w
		return h.Type, ok, 0

	case xs.TypeTransactionStart:
		if tx != nil {
			return 0, nil, syscall.EBUSY
		}
		if !c.priv() && len(c.txs) >= domUMaxTransactions {
			return 0, nil, syscall.ENOSPC
		}
		c.nextTx++
		for c.nextTx == 0 || c.txs[c.nextTx] != nil {
			c.nextTx++
		}
		t := &txn{id: c.nextTx, root: s.root, access: map[string]uint64{}}
		c.txs[t.id] = t
		return h.Type, []byte(strconv.FormatUint(uint64(t.id), 10) + "\x00"), 0

	case xs.TypeTransactionEnd:
		if tx == nil {
			return 0, nil, syscall.ENOENT
		}
		a, good := onearg(p)
		if !good || (a != "T" && a != "F") {
			return 0, nil, syscall.EINVAL
		}
		delete(c.txs, tx.id)
		if a == "F" {
			return h.Type, ok, 0
		}
		for path, g := range tx.access {
			n := lookup(s.root, split(path))
			var cur uint64
			if n != nil {
				cur = n.gen
			}
			if cur != g {
				return 0, nil, syscall.EAGAIN
			}
		}
		m := s.mainState(c)
		for _, f := range tx.log {
			f(m)
		}
		m.commit()
		return h.Type, ok, 0

	case xs.TypeGetDomainPath:
		a, good := onearg(p)
		if !good {
			return 0, nil, syscall.EINVAL
		}
		return h.Type, []byte("/local/domain/" + strconv.Itoa(int(uint32(atoi(a)))) + "\x00"), 0

	case xs.TypeIsDomainIntroduced:
		a, good := onearg(p)
		if !good {
			return 0, nil, syscall.EINVAL
		}
		d := uint32(atoi(a))
		if d == domidSelf || s.introduced[d] {
			return h.Type, []byte("T\x00"), 0
		}
		return h.Type, []byte("F\x00"), 0

	case xs.TypeIntroduce, xs.TypeRelease, xs.TypeResume, xs.TypeSetTarget, xs.TypeControl:
		if !c.priv() {
			return 0, nil, syscall.EACCES
		}
		return s.handlePriv(h, p)

	case xs.TypeResetWatches:
		c.watches = nil
		c.txs = map[uint32]*txn{}
		return h.Type, ok, 0
	}
	return 0, nil, syscall.ENOSYS
}

func (s *Server) handlePriv(h xs.Header, p []byte) (xs.MsgType, []byte, syscall.Errno) {
	ok := []byte("OK\x00")
	switch h.Type {
	case xs.TypeIntroduce:
		args := getStrings(p, 3)
		if len(args) != 3 || atoi(args[2]) <= 0 {
			return 0, nil, syscall.EINVAL
		}
		s.introduce(uint32(atoi(args[0])))
		return h.Type, ok, 0
	case xs.TypeRelease, xs.TypeResume:
		a, good := onearg(p)
		if !good || atoi(a) == 0 {
			return 0, nil, syscall.EINVAL
		}
		d := uint32(atoi(a))
		if !s.introduced[d] {
			return 0, nil, syscall.ENOENT
		}
		if h.Type == xs.TypeRelease {
			s.release(d)
		}
		return h.Type, ok, 0
	case xs.TypeSetTarget:
		args := getStrings(p, 2)
		if len(args) != 2 {
			return 0, nil, syscall.EINVAL
		}
		if !s.introduced[uint32(atoi(args[0]))] || !s.introduced[uint32(atoi(args[1]))] {
			return 0, nil, syscall.ENOENT
		}
		return h.Type, ok, 0
	}
	return 0, nil, syscall.EINVAL // CONTROL: no commands are offered
}

// directoryPart answers DIRECTORY_PART as the C daemon does: the node's
// generation, then as many whole child names from byte offset off as fit,
// with an extra NUL after the last chunk.
func directoryPart(n *node, off int) []byte {
	children := appendNames(nil, n.names)
	gen := strconv.FormatUint(n.gen, 10) + "\x00"
	out := []byte(gen)
	if off < 0 || off >= len(children) {
		return append(out, 0)
	}
	maxLen := xs.PayloadMax - len(gen) - 1
	end := off
	for end < len(children) {
		i := indexNUL(children[end:])
		if end+i+1-off > maxLen {
			break
		}
		end += i + 1
	}
	out = append(out, children[off:end]...)
	if end == len(children) {
		out = append(out, 0)
	}
	return out
}

func indexNUL(b []byte) int {
	for i, c := range b {
		if c == 0 {
			return i
		}
	}
	return -1
}
