// Package xenstore is a client for the xenstore wire protocol, as spoken by
// the C xenstored and oxenstored on a Xen dom0 and by the embedded server in
// package server.
//
// # Protocol
//
// Every message is a 16-byte header of four host-order uint32s (type,
// request id, transaction id, payload length) followed by at most 4096
// payload bytes. Replies are matched to requests by request id; watch events
// arrive unsolicited with request id 0 and are routed by token.
//
// # Concurrency
//
// A Conn is safe for concurrent use. It owns one reader goroutine, started
// by NewConn and stopped by Close or by the loss of the connection. A call
// whose context is canceled returns at once; its late reply is dropped.
//
// # Errors
//
// Every failed operation returns an *OpError. An ERROR reply from the store
// is mapped to a syscall.Errno, so errors.Is(err, fs.ErrNotExist) and
// errors.Is(err, syscall.EAGAIN) work. A connection closed by Close fails
// with net.ErrClosed; one lost underneath (xenstored restarted) fails with
// ErrDisconnected, and Done is closed so a caller can redial (see Session).
package xenstore
