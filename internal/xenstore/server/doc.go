// Package server is an embedded, in-memory xenstored. It speaks the same
// wire protocol as the C xenstored over a unix socket or any net.Conn, so
// the agent, the xenstore-utils tools and the tests can run on a machine
// without Xen.
//
// # Model
//
// The store is a persistent tree: a change copies the nodes on its path and
// publishes a new root, so a transaction starts in O(1) by keeping the root
// it saw. Children keep their creation order, as in the C xenstored, which
// libxl relies on for device ids. Every node carries the generation of its
// last change; a transaction records the generation of each node it touched
// and fails with EAGAIN at commit if any of them has changed since.
//
// # Domains and permissions
//
// Each connection has a domid: connections accepted on the socket are dom0
// (privileged), as on a real dom0; ServeConn can give a connection any
// domid, to act as a guest. Permission checks, node ownership and the
// special watches @introduceDomain and @releaseDomain follow the C daemon,
// including the removal of a released domain's nodes.
//
// # Ownership
//
// A Server owns one goroutine per connection and one writer per
// connection; Close stops them all and waits.
package server
