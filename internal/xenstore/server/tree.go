package server

import (
	"strings"

	"github.com/usbhotplugd/usbhotplugd/internal/xenstore"
)

// A node is immutable once published in a root; changes copy it.
type node struct {
	value []byte
	perms xenstore.Perms
	gen   uint64
	names []string // children in creation order
	kids  map[string]*node
}

func (n *node) child(name string) *node {
	if n == nil || n.kids == nil {
		return nil
	}
	return n.kids[name]
}

// copyNode copies n's own fields; children maps are copied only by the
// callers that change them.
func (n *node) copyNode() *node {
	c := *n
	return &c
}

func (n *node) withChild(name string, k *node, gen uint64) *node {
	c := n.copyNode()
	c.kids = make(map[string]*node, len(n.kids)+1)
	for key, v := range n.kids {
		c.kids[key] = v
	}
	if _, had := n.kids[name]; !had {
		c.names = append(append([]string(nil), n.names...), name)
		c.gen = gen // the child list changed
	}
	c.kids[name] = k
	return c
}

func (n *node) withoutChild(name string, gen uint64) *node {
	c := n.copyNode()
	c.kids = make(map[string]*node, len(n.kids))
	for key, v := range n.kids {
		if key != name {
			c.kids[key] = v
		}
	}
	c.names = make([]string, 0, len(n.names))
	for _, s := range n.names {
		if s != name {
			c.names = append(c.names, s)
		}
	}
	c.gen = gen
	return c
}

// split turns an absolute canonical path into its components; "/" is none.
func split(p string) []string {
	if p == "/" {
		return nil
	}
	return strings.Split(p[1:], "/")
}

func lookup(root *node, comps []string) *node {
	n := root
	for _, c := range comps {
		n = n.child(c)
		if n == nil {
			return nil
		}
	}
	return n
}

// replace returns a root in which the node at comps is k (all of comps'
// ancestors must exist); k == nil removes it.
func replace(root *node, comps []string, k *node, gen uint64) *node {
	if len(comps) == 0 {
		return k
	}
	parent := root.child(comps[0])
	if len(comps) == 1 {
		if k == nil {
			return root.withoutChild(comps[0], gen)
		}
		return root.withChild(comps[0], k, gen)
	}
	return root.withChild(comps[0], replace(parent, comps[1:], k, gen), gen)
}

func joinPath(comps []string) string {
	return "/" + strings.Join(comps, "/")
}

// walk visits n and its descendants, children before parents when post is
// set, in creation order.
func walk(n *node, path string, post bool, fn func(path string, n *node)) {
	if !post {
		fn(path, n)
	}
	for _, name := range n.names {
		cp := path + "/" + name
		if path == "/" {
			cp = "/" + name
		}
		walk(n.kids[name], cp, post, fn)
	}
	if post {
		fn(path, n)
	}
}
