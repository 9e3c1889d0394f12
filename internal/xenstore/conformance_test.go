package xenstore_test

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io/fs"
	"net"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/usbhotplugd/usbhotplugd/internal/xenstore"
	"github.com/usbhotplugd/usbhotplugd/internal/xenstore/xenstoretest"
)

// The conformance suite runs every case against the embedded server and the
// two real daemons, the C xenstored and the OCaml oxenstored; the subtest
// names say which. The embedded server answers as the C daemon does.
//
// Where oxenstored (4.17) answers differently on the wire, the case says
// what each daemon answers, through byDaemon, and how the client copes:
//   - RM / empties the whole store (C: EINVAL): the client refuses it.
//   - DIRECTORY lists children sorted by name (C: in creation order) and
//     sends a listing past 4096 bytes in one reply (C: E2BIG, then
//     DIRECTORY_PART, which oxenstored lacks: ENOSYS): the client takes
//     replies up to ReplyMax.
//   - @introduceDomain and @releaseDomain are nodes at the root: / lists
//     them, GET_PERMS answers (C: EINVAL), node requests work on them, RM
//     too (C: EINVAL), and an unknown special name is ENOENT (C: EINVAL).
//     The client's path check never sends a node request on them.
//   - RELEASE of domain 0 answers ENOENT but drops dom0's domain (C:
//     EINVAL): the client refuses it. INTRODUCE of domain 0, or of an
//     introduced domain with another ring, is EINVAL (C: OK); with event
//     channel port 0 it is OK (C: EINVAL).
//   - A guest giving its node away is EACCES (C: EPERM).
//   - A guest reading a missing node learns that it is missing (ENOENT),
//     where the C daemon hides it behind EACCES.
//   - An unknown transaction id is EIO (C: ENOENT); RELEASE of a domain
//     not introduced is EINVAL (C: ENOENT).
//   - Transactions merge: a commit fails only when what it read changed
//     (C: also when a node it wrote, or a parent of one it created,
//     changed), so the client's Update retries less often.
//   - Quotas: a guest has 100 watches (C: 128) and its quota errors are
//     EQUOTA, which the client reads as ENOSPC (C: ENOSPC, and E2BIG for
//     watches); a value over 2048 bytes is E2BIG (C: ENOSPC).
//   - A request with no payload is not answered until more bytes arrive on
//     the connection: every request of the client carries a NUL-terminated
//     argument, so only Raw can send one.

func ctxT(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	t.Cleanup(cancel)
	return ctx
}

// byDaemon returns what the C xenstored (and the embedded server) answers,
// or, for oxenstored, what it answers instead.
func byDaemon[T any](s xenstoretest.Store, c, oxen T) T {
	if s.Name() == xenstoretest.KindOxenstored {
		return oxen
	}
	return c
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

func wantErrno(t *testing.T, err error, want syscall.Errno) {
	t.Helper()
	if !errors.Is(err, want) {
		t.Fatalf("got error %v, want %s", err, xenstore.ErrnoName(want))
	}
	var oe *xenstore.OpError
	if !errors.As(err, &oe) {
		t.Fatalf("error %v is not an *OpError", err)
	}
}

// nextEvent waits for one watch event, with a deadline.
func nextEvent(t *testing.T, ch <-chan xenstore.WatchEvent) xenstore.WatchEvent {
	t.Helper()
	select {
	case ev, ok := <-ch:
		if !ok {
			t.Fatal("watch channel closed")
		}
		return ev
	case <-time.After(5 * time.Second):
		t.Fatal("no watch event within 5s")
	}
	return xenstore.WatchEvent{}
}

// noEvent checks that no event is queued after a barrier round trip: the
// store sends events before the reply that follows them.
func noEvent(t *testing.T, c *xenstore.Conn, ch <-chan xenstore.WatchEvent) {
	t.Helper()
	if _, err := c.Read(context.Background(), "/"); err != nil {
		t.Fatal(err)
	}
	// The event, if any, was routed before the reply; the pump may still be
	// handing it over, so give it one scheduling window, bounded.
	select {
	case ev := <-ch:
		t.Fatalf("unexpected event %+v", ev)
	case <-time.After(20 * time.Millisecond):
	}
}

func TestConformance(t *testing.T) {
	cases := []struct {
		name string
		fn   func(t *testing.T, s xenstoretest.Store)
	}{
		{"InitialTree", testInitialTree},
		{"ReadWrite", testReadWrite},
		{"WriteCreatesParents", testWriteCreatesParents},
		{"Mkdir", testMkdir},
		{"Rm", testRm},
		{"RmRootRaw", testRmRootRaw},
		{"ReleaseDom0Raw", testReleaseDom0Raw},
		{"DirectoryOrder", testDirectoryOrder},
		{"LargeDirectory", testLargeDirectory},
		{"Perms", testPerms},
		{"GuestPermissions", testGuestPermissions},
		{"TransactionCommit", testTransactionCommit},
		{"TransactionAbort", testTransactionAbort},
		{"TransactionConflict", testTransactionConflict},
		{"TransactionMerge", testTransactionMerge},
		{"TransactionRmConflict", testTransactionRmConflict},
		{"TransactionUpdateRetries", testTransactionUpdateRetries},
		{"TransactionUpdateUnderContention", testTransactionUpdateUnderContention},
		{"TransactionErrors", testTransactionErrors},
		{"WatchFiresOnRegistration", testWatchInitial},
		{"WatchSemantics", testWatchSemantics},
		{"WatchRmParent", testWatchRmParent},
		{"WatchInTransaction", testWatchInTransaction},
		{"WatchErrors", testWatchErrors},
		{"SpecialWatches", testSpecialWatches},
		{"ReleaseRemovesOwnedNodes", testReleaseRemovesOwned},
		{"DomainQueries", testDomainQueries},
		{"MalformedRequests", testMalformed},
		{"ErrorStrings", testErrorStrings},
		{"EmptyPayload", testEmptyPayload},
		{"GuestQuotas", testGuestQuotas},
		{"Batches", testBatches},
		{"BatchesOnXenbusDevice", testBatchesOnXenbus},
	}
	xenstoretest.ForEach(t, func(t *testing.T, s xenstoretest.Store) {
		for _, tc := range cases {
			t.Run(tc.name, func(t *testing.T) { tc.fn(t, s) })
		}
	})
}

func testInitialTree(t *testing.T, s xenstoretest.Store) {
	c := s.Dial(t)
	ctx := ctxT(t)
	kids, err := c.Directory(ctx, "/tool")
	must(t, err)
	if !slices.Contains(kids, "xenstored") {
		t.Fatalf("/tool children %q, want xenstored", kids)
	}
	ps, err := c.GetPerms(ctx, "/")
	must(t, err)
	if ps.String() != "n0" {
		t.Fatalf("perms of / = %q, want n0", ps)
	}
}

func testReadWrite(t *testing.T, s xenstoretest.Store) {
	c := s.Dial(t)
	ctx := ctxT(t)
	for _, v := range [][]byte{[]byte("hello"), {}, []byte("with\x00nul"), []byte(strings.Repeat("x", 2000))} {
		must(t, c.Write(ctx, "/rw/a", v))
		got, err := c.Read(ctx, "/rw/a")
		must(t, err)
		if string(got) != string(v) {
			t.Fatalf("read %q, want %q", got, v)
		}
	}
	_, err := c.Read(ctx, "/rw/missing")
	wantErrno(t, err, syscall.ENOENT)
	if !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("%v is not fs.ErrNotExist", err)
	}
	ok, err := c.Exists(ctx, "/rw/a")
	must(t, err)
	if !ok {
		t.Fatal("Exists = false")
	}
	// Relative paths are relative to the connection's home.
	must(t, c.Write(ctx, "relnode", []byte("r")))
	got, err := c.Read(ctx, "/local/domain/0/relnode")
	must(t, err)
	if string(got) != "r" {
		t.Fatalf("relative write landed as %q", got)
	}
}

func testWriteCreatesParents(t *testing.T, s xenstoretest.Store) {
	c := s.Dial(t)
	ctx := ctxT(t)
	must(t, c.Write(ctx, "/p/a/b/c", []byte("v")))
	for _, p := range []string{"/p", "/p/a", "/p/a/b"} {
		v, err := c.Read(ctx, p)
		must(t, err)
		if len(v) != 0 {
			t.Fatalf("%s = %q, want empty", p, v)
		}
	}
	must(t, c.SetPerms(ctx, "/p", xenstore.Perms{{Access: xenstore.AccessNone, Domid: 0}, {Access: xenstore.AccessRead, Domid: 7}}))
	must(t, c.Write(ctx, "/p/x/y", nil))
	ps, err := c.GetPerms(ctx, "/p/x/y")
	must(t, err)
	if ps.String() != "n0 r7" {
		t.Fatalf("inherited perms %q, want n0 r7", ps)
	}
}

func testMkdir(t *testing.T, s xenstoretest.Store) {
	c := s.Dial(t)
	ctx := ctxT(t)
	must(t, c.Mkdir(ctx, "/mk/a/b"))
	must(t, c.Write(ctx, "/mk/a", []byte("keep")))
	must(t, c.Mkdir(ctx, "/mk/a"))
	v, err := c.Read(ctx, "/mk/a")
	must(t, err)
	if string(v) != "keep" {
		t.Fatalf("mkdir of an existing node changed it to %q", v)
	}
}

func testRm(t *testing.T, s xenstoretest.Store) {
	c := s.Dial(t)
	ctx := ctxT(t)
	must(t, c.Write(ctx, "/rm/a/b/c", []byte("1")))
	must(t, c.Rm(ctx, "/rm/a"))
	_, err := c.Read(ctx, "/rm/a/b/c")
	wantErrno(t, err, syscall.ENOENT)
	must(t, c.Rm(ctx, "/rm/a"))                                // missing, parent exists: fine
	wantErrno(t, c.Rm(ctx, "/rm/nope/deeper"), syscall.ENOENT) // parent missing too
	wantErrno(t, c.Rm(ctx, "/"), syscall.EINVAL)               // the client refuses it for every daemon
	kids, err := c.Directory(ctx, "/rm")
	must(t, err)
	if len(kids) != 0 {
		t.Fatalf("/rm children %q, want none", kids)
	}
}

// RELEASE of domain 0 sent as is: the C daemon refuses it; oxenstored
// says ENOENT and no longer counts dom0 as introduced.
func testReleaseDom0Raw(t *testing.T, s xenstoretest.Store) {
	s = xenstoretest.Start(t, s.Name()) // a store of its own: dom0 may be dropped
	c := s.Dial(t)
	ctx := ctxT(t)
	_, err := c.Raw(ctx, xenstore.TypeRelease, 0, []byte("0\x00"))
	wantErrno(t, opErr(err), byDaemon(s, syscall.EINVAL, syscall.ENOENT))
	ok, err := c.IsDomainIntroduced(ctx, 0)
	must(t, err)
	if want := byDaemon(s, true, false); ok != want {
		t.Fatalf("after RELEASE 0, dom0 introduced = %v, want %v", ok, want)
	}
}

// RM of / sent as is: the C daemon refuses it; oxenstored empties the store.
func testRmRootRaw(t *testing.T, s xenstoretest.Store) {
	s = xenstoretest.Start(t, s.Name()) // a store of its own: this one may be emptied
	c := s.Dial(t)
	ctx := ctxT(t)
	must(t, c.Write(ctx, "/rr/a", []byte("1")))
	_, err := c.Raw(ctx, xenstore.TypeRm, 0, []byte("/\x00"))
	if want := byDaemon[error](s, syscall.EINVAL, nil); !errors.Is(err, want) && err != want {
		t.Fatalf("raw RM /: %v, want %v", err, want)
	}
	kids, err := c.Directory(ctx, "/")
	must(t, err)
	if want := byDaemon(s, 2, 0); len(kids) != want {
		t.Fatalf("after RM /, / has children %q, want %d", kids, want)
	}
}

func testDirectoryOrder(t *testing.T, s xenstoretest.Store) {
	c := s.Dial(t)
	ctx := ctxT(t)
	order := []string{"5", "1", "10", "zz", "a", "2"}
	for _, n := range order {
		must(t, c.Write(ctx, "/ord/"+n, nil))
	}
	kids, err := c.Directory(ctx, "/ord")
	must(t, err)
	if want := byDaemon(s, order, []string{"1", "10", "2", "5", "a", "zz"}); !slices.Equal(kids, want) {
		t.Fatalf("children %q, want %q (C: creation order; oxenstored: sorted)", kids, want)
	}
	must(t, c.Rm(ctx, "/ord/10"))
	must(t, c.Write(ctx, "/ord/10", nil))
	kids, err = c.Directory(ctx, "/ord")
	must(t, err)
	want := byDaemon(s, []string{"5", "1", "zz", "a", "2", "10"}, []string{"1", "10", "2", "5", "a", "zz"})
	if !slices.Equal(kids, want) {
		t.Fatalf("children %q, want %q", kids, want)
	}
	_, err = c.Directory(ctx, "/ord/missing")
	wantErrno(t, err, syscall.ENOENT)
}

func testLargeDirectory(t *testing.T, s xenstoretest.Store) {
	c := s.Dial(t)
	ctx := ctxT(t)
	var want []string
	for i := range 400 {
		n := fmt.Sprintf("child-with-a-rather-long-name-%04d", i)
		want = append(want, n)
		must(t, c.Write(ctx, "/big/"+n, nil))
	}
	// 400 names of 35 bytes do not fit one reply of 4096 bytes: the C
	// raw DIRECTORY says so; oxenstored sends them in one larger reply.
	r, err := c.Raw(ctx, xenstore.TypeDirectory, 0, []byte("/big\x00"))
	if s.Name() == xenstoretest.KindOxenstored {
		must(t, err)
		if len(r) <= xenstore.PayloadMax {
			t.Fatalf("oxenstored's listing took %d bytes", len(r))
		}
	} else if !errors.Is(err, syscall.E2BIG) {
		t.Fatalf("raw DIRECTORY of a large node: %v, want E2BIG", err)
	}
	kids, err := c.Directory(ctx, "/big")
	must(t, err)
	if !slices.Equal(kids, want) { // zero-padded names: sorted is creation order
		t.Fatalf("got %d children, want %d in order", len(kids), len(want))
	}
	// An offset past the end gives the generation and an empty list;
	// oxenstored has no DIRECTORY_PART.
	r, err = c.Raw(ctx, xenstore.TypeDirectoryPart, 0, []byte("/big\x0099999\x00"))
	if s.Name() == xenstoretest.KindOxenstored {
		wantErrno(t, opErr(err), syscall.ENOSYS)
		return
	}
	must(t, err)
	if _, rest, _ := strings.Cut(string(r), "\x00"); rest != "\x00" {
		t.Fatalf("DIRECTORY_PART past the end = %q", r)
	}
}

// opErr wraps the bare errno of a Raw call as the typed calls do.
func opErr(err error) error {
	if err == nil {
		return nil
	}
	return &xenstore.OpError{Op: "RAW", Err: err}
}

func testPerms(t *testing.T, s xenstoretest.Store) {
	c := s.Dial(t)
	ctx := ctxT(t)
	must(t, c.Write(ctx, "/perm/a", nil))
	for _, in := range []string{"n0", "n5 r0", "b3", "r0 w1 b2 n3", "n0 r65535"} {
		ps, err := xenstore.ParsePerms(in)
		must(t, err)
		must(t, c.SetPerms(ctx, "/perm/a", ps))
		got, err := c.GetPerms(ctx, "/perm/a")
		must(t, err)
		if got.String() != in {
			t.Fatalf("perms round trip: set %q, got %q", in, got)
		}
	}
	_, err := c.Raw(ctx, xenstore.TypeSetPerms, 0, []byte("/perm/a\x00x1\x00"))
	if !errors.Is(err, syscall.EINVAL) {
		t.Fatalf("bad perm string: %v, want EINVAL", err)
	}
	_, err = c.Raw(ctx, xenstore.TypeSetPerms, 0, []byte("/perm/a\x00"))
	if !errors.Is(err, syscall.EINVAL) {
		t.Fatalf("empty perm list: %v, want EINVAL", err)
	}
	_, err = c.GetPerms(ctx, "/perm/missing")
	wantErrno(t, err, syscall.ENOENT)
	// Special names take SET_PERMS but not GET_PERMS or node operations
	// in the C daemon; in oxenstored they are nodes, with permissions.
	must(t, c.SetPerms(ctx, "@releaseDomain", xenstore.Perms{{Access: xenstore.AccessNone, Domid: 0}}))
	ps, err := c.GetPerms(ctx, "@releaseDomain")
	if s.Name() == xenstoretest.KindOxenstored {
		must(t, err)
		if ps.String() != "n0" {
			t.Fatalf("oxenstored's perms of @releaseDomain: %q", ps)
		}
	} else {
		wantErrno(t, err, syscall.EINVAL)
	}
	_, err = c.Raw(ctx, xenstore.TypeSetPerms, 0, []byte("@other\x00n0\x00"))
	wantErrno(t, opErr(err), byDaemon(s, syscall.EINVAL, syscall.ENOENT))
	// Node requests on a special name: the client refuses them before
	// sending; sent raw, the C daemon refuses them and oxenstored does not.
	if err := c.Write(ctx, "@releaseDomain", nil); !errors.Is(err, xenstore.ErrInvalidPath) {
		t.Fatalf("Write(@releaseDomain): %v, want ErrInvalidPath", err)
	}
	if s.Name() == xenstoretest.KindOxenstored {
		kids, err := c.Directory(ctx, "/")
		must(t, err)
		if !slices.Contains(kids, "@releaseDomain") || !slices.Contains(kids, "@introduceDomain") {
			t.Fatalf("oxenstored's / lists %q, want the special nodes", kids)
		}
		return
	}
	for _, typ := range []xenstore.MsgType{xenstore.TypeRead, xenstore.TypeWrite, xenstore.TypeMkdir, xenstore.TypeRm, xenstore.TypeDirectory} {
		if _, err := c.Raw(ctx, typ, 0, []byte("@releaseDomain\x00")); !errors.Is(err, syscall.EINVAL) {
			t.Fatalf("%v on @releaseDomain: %v, want EINVAL", typ, err)
		}
	}
}

func testGuestPermissions(t *testing.T, s xenstoretest.Store) {
	d0 := s.Dial(t)
	ctx := ctxT(t)
	must(t, d0.Write(ctx, "/local/domain/3/device/x", []byte("v")))
	must(t, d0.SetPerms(ctx, "/local/domain/3", xenstore.Perms{{Access: xenstore.AccessNone, Domid: 0}, {Access: xenstore.AccessRead, Domid: 3}}))
	must(t, d0.SetPerms(ctx, "/local/domain/3/device", xenstore.Perms{{Access: xenstore.AccessNone, Domid: 0}, {Access: xenstore.AccessRead, Domid: 3}}))
	must(t, d0.SetPerms(ctx, "/local/domain/3/device/x", xenstore.Perms{{Access: xenstore.AccessNone, Domid: 3}}))
	must(t, d0.Write(ctx, "/secret/k", []byte("s")))

	g := s.Guest(t, 3)
	// Reading a dom0-only node is refused; so is learning that it exists,
	// except from oxenstored.
	_, err := g.Read(ctx, "/secret/k")
	wantErrno(t, err, syscall.EACCES)
	_, err = g.Read(ctx, "/secret/none")
	wantErrno(t, err, byDaemon(s, syscall.EACCES, syscall.ENOENT))
	// Read-only access: reading works, writing does not.
	_, err = g.Read(ctx, "/local/domain/3/device")
	must(t, err)
	wantErrno(t, g.Write(ctx, "/local/domain/3/device", []byte("no")), syscall.EACCES)
	wantErrno(t, g.Write(ctx, "/local/domain/3/device/new", nil), syscall.EACCES)
	// Its own node: full access, and what it creates below is its own.
	must(t, g.Write(ctx, "/local/domain/3/device/x", []byte("mine")))
	must(t, g.Write(ctx, "/local/domain/3/device/x/sub", []byte("s")))
	ps, err := g.GetPerms(ctx, "/local/domain/3/device/x/sub")
	must(t, err)
	if ps.Owner() != 3 {
		t.Fatalf("guest-created node owned by %d, want 3", ps.Owner())
	}
	// Relative paths are relative to the guest's home.
	v, err := g.Read(ctx, "device/x")
	must(t, err)
	if string(v) != "mine" {
		t.Fatalf("relative read %q", v)
	}
	// A guest may not give its node away, nor take privileged calls.
	wantErrno(t, g.SetPerms(ctx, "/local/domain/3/device/x", xenstore.Perms{{Access: xenstore.AccessNone, Domid: 0}}), byDaemon(s, syscall.EPERM, syscall.EACCES))
	must(t, g.SetPerms(ctx, "/local/domain/3/device/x", xenstore.Perms{{Access: xenstore.AccessNone, Domid: 3}, {Access: xenstore.AccessRead, Domid: 0}}))
	wantErrno(t, g.SetPerms(ctx, "/local/domain/3/device", xenstore.Perms{{Access: xenstore.AccessBoth, Domid: 0}}), syscall.EACCES)
	wantErrno(t, g.Introduce(ctx, 9, 1, 1), syscall.EACCES)
	wantErrno(t, g.Rm(ctx, "/secret"), syscall.EACCES)
}

func testTransactionCommit(t *testing.T, s xenstoretest.Store) {
	c := s.Dial(t)
	other := s.Dial(t)
	ctx := ctxT(t)
	must(t, c.Write(ctx, "/tx/base", []byte("0")))
	tx, err := c.Begin(ctx)
	must(t, err)
	must(t, tx.Write(ctx, "/tx/new/a", []byte("1")))
	must(t, tx.Rm(ctx, "/tx/base"))
	v, err := tx.Read(ctx, "/tx/new/a")
	must(t, err)
	if string(v) != "1" {
		t.Fatalf("read inside tx %q", v)
	}
	// Outside, nothing has changed yet.
	_, err = other.Read(ctx, "/tx/new/a")
	wantErrno(t, err, syscall.ENOENT)
	_, err = other.Read(ctx, "/tx/base")
	must(t, err)
	must(t, tx.Commit(ctx))
	v, err = other.Read(ctx, "/tx/new/a")
	must(t, err)
	if string(v) != "1" {
		t.Fatalf("after commit %q", v)
	}
	_, err = other.Read(ctx, "/tx/base")
	wantErrno(t, err, syscall.ENOENT)
}

func testTransactionAbort(t *testing.T, s xenstoretest.Store) {
	c := s.Dial(t)
	ctx := ctxT(t)
	tx, err := c.Begin(ctx)
	must(t, err)
	must(t, tx.Write(ctx, "/txa/x", []byte("1")))
	must(t, tx.Abort(ctx))
	_, err = c.Read(ctx, "/txa/x")
	wantErrno(t, err, syscall.ENOENT)
	// The id is gone after END.
	_, err = tx.Read(ctx, "/")
	wantErrno(t, err, byDaemon(s, syscall.ENOENT, syscall.EIO))
}

func testTransactionConflict(t *testing.T, s xenstoretest.Store) {
	c := s.Dial(t)
	other := s.Dial(t)
	ctx := ctxT(t)
	must(t, c.Write(ctx, "/txc/n", []byte("0")))
	tx, err := c.Begin(ctx)
	must(t, err)
	_, err = tx.Read(ctx, "/txc/n")
	must(t, err)
	must(t, tx.Write(ctx, "/txc/n", []byte("tx")))
	must(t, other.Write(ctx, "/txc/n", []byte("other")))
	wantErrno(t, tx.Commit(ctx), syscall.EAGAIN)
	v, err := c.Read(ctx, "/txc/n")
	must(t, err)
	if string(v) != "other" {
		t.Fatalf("after a failed commit %q", v)
	}
	// A node created by someone else while the tx read it as missing.
	tx, err = c.Begin(ctx)
	must(t, err)
	_, err = tx.Read(ctx, "/txc/m")
	wantErrno(t, err, syscall.ENOENT)
	must(t, tx.Write(ctx, "/txc/m", []byte("tx")))
	must(t, other.Write(ctx, "/txc/m", []byte("other")))
	wantErrno(t, tx.Commit(ctx), syscall.EAGAIN)
}

// Transactions that only wrote what another connection changed meanwhile:
// the C daemon fails the commit, oxenstored merges it (last writer wins),
// as it does a transaction whose reads still hold.
func testTransactionMerge(t *testing.T, s xenstoretest.Store) {
	c := s.Dial(t)
	other := s.Dial(t)
	ctx := ctxT(t)
	must(t, c.Write(ctx, "/txm/n", []byte("0")))
	tx, err := c.Begin(ctx)
	must(t, err)
	must(t, tx.Write(ctx, "/txm/n", []byte("tx")))
	must(t, other.Write(ctx, "/txm/n", []byte("other")))
	err = tx.Commit(ctx)
	if s.Name() == xenstoretest.KindOxenstored {
		must(t, err)
	} else {
		wantErrno(t, err, syscall.EAGAIN)
	}
	v, err := c.Read(ctx, "/txm/n")
	must(t, err)
	if want := byDaemon(s, "other", "tx"); string(v) != want {
		t.Fatalf("after the commit %q, want %q", v, want)
	}
	// Read one node, create another, while an unrelated node appears.
	tx, err = c.Begin(ctx)
	must(t, err)
	_, err = tx.Read(ctx, "/txm/n")
	must(t, err)
	must(t, tx.Write(ctx, "/txm/created", nil))
	must(t, other.Write(ctx, "/txm/unrelated", nil))
	err = tx.Commit(ctx)
	if s.Name() == xenstoretest.KindOxenstored {
		must(t, err)
	} else {
		wantErrno(t, err, syscall.EAGAIN) // the parent's child list changed
	}
}

// A transaction that removes a subtree, while another connection writes a
// node deep inside it (a guest writing its frontend while the toolstack
// removes it): the C daemon fails the commit, as the removal touched every
// node below; oxenstored merges it, and the subtree goes with the write.
func testTransactionRmConflict(t *testing.T, s xenstoretest.Store) {
	c := s.Dial(t)
	other := s.Dial(t)
	ctx := ctxT(t)
	must(t, c.Write(ctx, "/txr/a/b/c", []byte("0")))
	tx, err := c.Begin(ctx)
	must(t, err)
	must(t, tx.Rm(ctx, "/txr/a"))
	must(t, other.Write(ctx, "/txr/a/b/c", []byte("1")))
	err = tx.Commit(ctx)
	if s.Name() == xenstoretest.KindOxenstored {
		must(t, err)
		_, err = c.Read(ctx, "/txr/a")
		wantErrno(t, err, syscall.ENOENT)
		return
	}
	wantErrno(t, err, syscall.EAGAIN)
	v, err := c.Read(ctx, "/txr/a/b/c")
	must(t, err)
	if string(v) != "1" {
		t.Fatalf("after the failed commit %q, want 1", v)
	}
}

func testTransactionUpdateRetries(t *testing.T, s xenstoretest.Store) {
	c := s.Dial(t)
	other := s.Dial(t)
	ctx := ctxT(t)
	must(t, c.Write(ctx, "/txu/n", []byte("0")))
	runs := 0
	err := c.Update(ctx, func(ctx context.Context, tx *xenstore.Tx) error {
		runs++
		v, err := tx.Read(ctx, "/txu/n")
		if err != nil {
			return err
		}
		if runs == 1 { // make the first run conflict
			if err := other.Write(ctx, "/txu/n", []byte("5")); err != nil {
				return err
			}
		}
		return tx.Write(ctx, "/txu/n", append(v, '+'))
	})
	must(t, err)
	if runs != 2 {
		t.Fatalf("body ran %d times, want 2", runs)
	}
	v, err := c.Read(ctx, "/txu/n")
	must(t, err)
	if string(v) != "5+" {
		t.Fatalf("value %q, want 5+", v)
	}
	// An error from the body aborts.
	boom := errors.New("boom")
	err = c.Update(ctx, func(ctx context.Context, tx *xenstore.Tx) error {
		if err := tx.Write(ctx, "/txu/never", nil); err != nil {
			return err
		}
		return boom
	})
	if !errors.Is(err, boom) {
		t.Fatalf("Update error %v, want boom", err)
	}
	_, err = c.Read(ctx, "/txu/never")
	wantErrno(t, err, syscall.ENOENT)
}

func testTransactionErrors(t *testing.T, s xenstoretest.Store) {
	c := s.Dial(t)
	ctx := ctxT(t)
	_, err := c.Raw(ctx, xenstore.TypeRead, 4242, []byte("/\x00"))
	wantErrno(t, opErr(err), byDaemon(s, syscall.ENOENT, syscall.EIO))
	_, err = c.Raw(ctx, xenstore.TypeTransactionEnd, 0, []byte("T\x00"))
	if !errors.Is(err, syscall.ENOENT) {
		t.Fatalf("END without tx: %v, want ENOENT", err)
	}
	tx, err := c.Begin(ctx)
	must(t, err)
	_, err = c.Raw(ctx, xenstore.TypeTransactionEnd, tx.ID(), []byte("X\x00"))
	if !errors.Is(err, syscall.EINVAL) {
		t.Fatalf("END with X: %v, want EINVAL", err)
	}
	_, err = c.Raw(ctx, xenstore.TypeTransactionStart, tx.ID(), []byte("\x00"))
	if !errors.Is(err, syscall.EBUSY) {
		t.Fatalf("nested START: %v, want EBUSY", err)
	}
	must(t, tx.Abort(ctx))
}

func testWatchInitial(t *testing.T, s xenstoretest.Store) {
	c := s.Dial(t)
	ctx := ctxT(t)
	ch, err := c.Watch(ctx, "/w0/not/there", "tok")
	must(t, err)
	ev := nextEvent(t, ch)
	if ev.Path != "/w0/not/there" || ev.Token != "tok" {
		t.Fatalf("initial event %+v", ev)
	}
	noEvent(t, c, ch)
}

func testWatchSemantics(t *testing.T, s xenstoretest.Store) {
	c := s.Dial(t)
	w := s.Dial(t)
	ctx := ctxT(t)
	must(t, c.Write(ctx, "/ws/a", nil))
	ch, err := w.Watch(ctx, "/ws/a", "t1")
	must(t, err)
	nextEvent(t, ch)
	steps := []struct {
		do   func() error
		want string
	}{
		{func() error { return c.Write(ctx, "/ws/a", []byte("v")) }, "/ws/a"},
		{func() error { return c.Write(ctx, "/ws/a/b/c", nil) }, "/ws/a/b/c"},
		{func() error { return c.Mkdir(ctx, "/ws/a/d") }, "/ws/a/d"},
		{func() error {
			return c.SetPerms(ctx, "/ws/a/d", xenstore.Perms{{Access: xenstore.AccessRead, Domid: 0}})
		}, "/ws/a/d"},
		{func() error { return c.Rm(ctx, "/ws/a/d") }, "/ws/a/d"},
	}
	for i, st := range steps {
		must(t, st.do())
		if ev := nextEvent(t, ch); ev.Path != st.want || ev.Token != "t1" {
			t.Fatalf("step %d: event %+v, want %s", i, ev, st.want)
		}
	}
	// Changes elsewhere, or to a parent's value, do not fire.
	must(t, c.Write(ctx, "/ws", []byte("parent")))
	must(t, c.Write(ctx, "/ws/ab", nil))
	noEvent(t, w, ch)
	must(t, w.Unwatch(ctx, "/ws/a", "t1"))
	if _, ok := <-ch; ok {
		t.Fatal("channel still open after Unwatch")
	}
	// Relative watches give relative event paths.
	rch, err := w.Watch(ctx, "relw", "r")
	must(t, err)
	if ev := nextEvent(t, rch); ev.Path != "relw" {
		t.Fatalf("relative initial event %+v", ev)
	}
	must(t, c.Write(ctx, "/local/domain/0/relw/x", nil))
	if ev := nextEvent(t, rch); ev.Path != "relw/x" {
		t.Fatalf("relative event %+v", ev)
	}
}

func testWatchRmParent(t *testing.T, s xenstoretest.Store) {
	c := s.Dial(t)
	ctx := ctxT(t)
	must(t, c.Write(ctx, "/wr/a/b/c", nil))
	ch, err := c.Watch(ctx, "/wr/a/b", "t")
	must(t, err)
	nextEvent(t, ch)
	must(t, c.Rm(ctx, "/wr/a"))
	got := map[string]bool{}
	got[nextEvent(t, ch).Path] = true
	if !got["/wr/a/b"] {
		t.Fatalf("removing a parent fired %v, want the watched path /wr/a/b", got)
	}
}

func testWatchInTransaction(t *testing.T, s xenstoretest.Store) {
	c := s.Dial(t)
	w := s.Dial(t)
	ctx := ctxT(t)
	ch, err := w.Watch(ctx, "/wt", "t")
	must(t, err)
	nextEvent(t, ch)
	tx, err := c.Begin(ctx)
	must(t, err)
	must(t, tx.Write(ctx, "/wt/x", []byte("1")))
	noEvent(t, w, ch)
	must(t, tx.Commit(ctx))
	if ev := nextEvent(t, ch); ev.Path != "/wt/x" {
		t.Fatalf("event at commit %+v", ev)
	}
	tx, err = c.Begin(ctx)
	must(t, err)
	must(t, tx.Write(ctx, "/wt/y", []byte("1")))
	must(t, tx.Abort(ctx))
	noEvent(t, w, ch)
}

func testWatchErrors(t *testing.T, s xenstoretest.Store) {
	c := s.Dial(t)
	ctx := ctxT(t)
	_, err := c.Watch(ctx, "/we", "dup")
	must(t, err)
	// The same path and token again: the store says EEXIST.
	_, err = c.Raw(ctx, xenstore.TypeWatch, 0, []byte("/we\x00dup\x00"))
	if !errors.Is(err, syscall.EEXIST) {
		t.Fatalf("duplicate watch: %v, want EEXIST", err)
	}
	wantErrno(t, c.Unwatch(ctx, "/we", "never"), syscall.ENOENT)
	_, err = c.Raw(ctx, xenstore.TypeWatch, 0, []byte("/bad//path\x00t\x00"))
	if !errors.Is(err, syscall.EINVAL) {
		t.Fatalf("watch on a bad path: %v, want EINVAL", err)
	}
}

func testSpecialWatches(t *testing.T, s xenstoretest.Store) {
	c := s.Dial(t)
	ctx := ctxT(t)
	intro, err := c.Watch(ctx, "@introduceDomain", "i")
	must(t, err)
	if ev := nextEvent(t, intro); ev.Path != "@introduceDomain" {
		t.Fatalf("initial %+v", ev)
	}
	rel, err := c.Watch(ctx, "@releaseDomain", "r")
	must(t, err)
	nextEvent(t, rel)
	must(t, c.Introduce(ctx, 21, 1, 1))
	if ev := nextEvent(t, intro); ev.Path != "@introduceDomain" || ev.Token != "i" {
		t.Fatalf("introduce fired %+v", ev)
	}
	ok, err := c.IsDomainIntroduced(ctx, 21)
	must(t, err)
	if !ok {
		t.Fatal("domain 21 not introduced")
	}
	must(t, c.Release(ctx, 21))
	if ev := nextEvent(t, rel); ev.Path != "@releaseDomain" {
		t.Fatalf("release fired %+v", ev)
	}
	ok, err = c.IsDomainIntroduced(ctx, 21)
	must(t, err)
	if ok {
		t.Fatal("domain 21 still introduced after release")
	}
	wantErrno(t, c.Release(ctx, 21), byDaemon(s, syscall.ENOENT, syscall.EINVAL))
	wantErrno(t, c.Release(ctx, 0), syscall.EINVAL) // the client refuses it for every daemon
	_, err = c.Raw(ctx, xenstore.TypeIntroduce, 0, []byte("22\x001\x000\x00"))
	if s.Name() == xenstoretest.KindOxenstored {
		must(t, err) // oxenstored takes event channel port 0
	} else if !errors.Is(err, syscall.EINVAL) {
		t.Fatalf("introduce with port 0: %v, want EINVAL", err)
	}
}

func testReleaseRemovesOwned(t *testing.T, s xenstoretest.Store) {
	c := s.Dial(t)
	ctx := ctxT(t)
	must(t, c.Introduce(ctx, 31, 1, 1))
	must(t, c.Write(ctx, "/local/domain/31/owned/sub", []byte("x")))
	must(t, c.SetPerms(ctx, "/local/domain/31/owned", xenstore.Perms{{Access: xenstore.AccessNone, Domid: 31}}))
	must(t, c.Write(ctx, "/local/domain/31/kept", []byte("y")))
	must(t, c.Release(ctx, 31))
	_, err := c.Read(ctx, "/local/domain/31/owned")
	wantErrno(t, err, syscall.ENOENT)
	_, err = c.Read(ctx, "/local/domain/31/kept")
	must(t, err)
}

func testDomainQueries(t *testing.T, s xenstoretest.Store) {
	c := s.Dial(t)
	ctx := ctxT(t)
	p, err := c.GetDomainPath(ctx, 7)
	must(t, err)
	if p != "/local/domain/7" {
		t.Fatalf("domain path %q", p)
	}
	ok, err := c.IsDomainIntroduced(ctx, 0)
	must(t, err)
	if !ok {
		t.Fatal("dom0 not introduced")
	}
	ok, err = c.IsDomainIntroduced(ctx, 999)
	must(t, err)
	if ok {
		t.Fatal("domain 999 introduced")
	}
}

func testMalformed(t *testing.T, s xenstoretest.Store) {
	c := s.Dial(t)
	ctx := ctxT(t)
	for _, tc := range []struct {
		name    string
		typ     xenstore.MsgType
		payload string
		want    syscall.Errno
	}{
		{"read bad char", xenstore.TypeRead, "/a b\x00", syscall.EINVAL},
		{"read trailing slash", xenstore.TypeRead, "/tool/\x00", syscall.EINVAL},
		{"read double slash", xenstore.TypeRead, "/tool//x\x00", syscall.EINVAL},
		{"write without NUL", xenstore.TypeWrite, "/x", syscall.EINVAL},
		{"unknown type", xenstore.MsgType(99), "", syscall.ENOSYS},
		{"removed RESTRICT", xenstore.MsgType(20), "", syscall.ENOSYS},
		{"client sends ERROR", xenstore.TypeError, "", syscall.ENOSYS},
		{"mkdir root child bad", xenstore.TypeMkdir, "/x\x01\x00", syscall.EINVAL},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := rawAnswered(ctx, t, c, tc.typ, []byte(tc.payload))
			if !errors.Is(err, tc.want) {
				t.Fatalf("%v, want %s", err, xenstore.ErrnoName(tc.want))
			}
		})
	}
	// Arguments that are not one NUL-terminated string: the C daemon
	// answers with whatever errno it last saw, so only an error is certain
	// (the embedded server says EINVAL).
	for _, p := range []string{"/tool", "/tool\x00x\x00", ""} {
		for _, typ := range []xenstore.MsgType{xenstore.TypeRead, xenstore.TypeDirectory, xenstore.TypeRm, xenstore.TypeMkdir, xenstore.TypeGetPerms} {
			if _, err := rawAnswered(ctx, t, c, typ, []byte(p)); err == nil {
				t.Fatalf("%v %q succeeded", typ, p)
			}
		}
	}
	// The connection still works.
	_, err := c.Read(ctx, "/tool")
	must(t, err)
}

// rawAnswered sends a raw request and waits for its answer. oxenstored
// answers a request with no payload only once more bytes arrive on the
// connection, so reads follow it until the answer comes.
func rawAnswered(ctx context.Context, t *testing.T, c *xenstore.Conn, typ xenstore.MsgType, payload []byte) ([]byte, error) {
	t.Helper()
	type answer struct {
		r   []byte
		err error
	}
	done := make(chan answer, 1)
	go func() {
		r, err := c.Raw(ctx, typ, 0, payload)
		done <- answer{r, err}
	}()
	for {
		select {
		case a := <-done:
			return a.r, a.err
		default:
		}
		if _, err := c.Read(ctx, "/tool"); err != nil {
			t.Fatalf("read after %v: %v", typ, err)
		}
	}
}

// A request with no payload: the C daemon answers it at once; oxenstored
// only when the next request arrives, and then answers both.
func testEmptyPayload(t *testing.T, s xenstoretest.Store) {
	c := s.Dial(t)
	ctx := ctxT(t)
	if s.Name() != xenstoretest.KindOxenstored {
		if _, err := c.Raw(ctx, xenstore.MsgType(99), 0, nil); !errors.Is(err, syscall.ENOSYS) {
			t.Fatalf("unknown type with no payload: %v, want ENOSYS", err)
		}
		return
	}
	// Not answered at all: a short wait shows it as well as a long one.
	quick, cancel := context.WithTimeout(ctx, 200*time.Millisecond)
	defer cancel()
	if _, err := c.Raw(quick, xenstore.MsgType(99), 0, nil); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("oxenstored answered a request with no payload alone: %v", err)
	}
	if _, err := rawAnswered(ctx, t, c, xenstore.MsgType(99), nil); !errors.Is(err, syscall.ENOSYS) {
		t.Fatalf("unknown type with no payload, followed: %v, want ENOSYS", err)
	}
}

// testGuestQuotas checks each daemon's quotas on a guest: how many watches
// and transactions it may hold, how large a value, and the errors.
func testGuestQuotas(t *testing.T, s xenstoretest.Store) {
	s = xenstoretest.Start(t, s.Name()) // a fresh guest with no watches yet
	d0 := s.Dial(t)
	ctx := ctxT(t)
	must(t, d0.Write(ctx, "/local/domain/6/q", nil))
	must(t, d0.SetPerms(ctx, "/local/domain/6", xenstore.Perms{{Access: xenstore.AccessNone, Domid: 6}}))
	g := s.Guest(t, 6)
	watches := map[string]int{xenstoretest.KindEmbedded: 128, xenstoretest.KindXenstored: 129, xenstoretest.KindOxenstored: 101}[s.Name()]
	var err error
	n := 0
	for ; n <= watches; n++ {
		if _, err = g.Raw(ctx, xenstore.TypeWatch, 0, fmt.Appendf(nil, "/local/domain/6/w%d\x00t\x00", n)); err != nil {
			break
		}
	}
	if n != watches {
		t.Fatalf("guest held %d watches, want %d", n, watches)
	}
	wantErrno(t, opErr(err), byDaemon(s, syscall.E2BIG, syscall.ENOSPC))

	txs := map[string]int{xenstoretest.KindEmbedded: 10, xenstoretest.KindXenstored: 11, xenstoretest.KindOxenstored: 11}[s.Name()]
	for n = 0; n <= txs; n++ {
		if _, err = g.Begin(ctx); err != nil {
			break
		}
	}
	if n != txs {
		t.Fatalf("guest held %d transactions, want %d", n, txs)
	}
	wantErrno(t, err, syscall.ENOSPC)

	wantErrno(t, g.Write(ctx, "/local/domain/6/big", make([]byte, 2100)), byDaemon(s, syscall.ENOSPC, syscall.E2BIG))
	must(t, g.Write(ctx, "/local/domain/6/big", make([]byte, 2000)))
}

func testErrorStrings(t *testing.T, s xenstoretest.Store) {
	c := s.Dial(t)
	ctx := ctxT(t)
	_, err := c.Read(ctx, "/does/not/exist")
	var oe *xenstore.OpError
	if !errors.As(err, &oe) || oe.Op != "READ" || oe.Path != "/does/not/exist" {
		t.Fatalf("error %#v", err)
	}
	if got := err.Error(); got != "xenstore: READ /does/not/exist: no such file or directory" {
		t.Fatalf("message %q", got)
	}
	// Client-side checks never reach the store.
	err = c.Write(ctx, "/bad path", nil)
	if !errors.Is(err, xenstore.ErrInvalidPath) {
		t.Fatalf("bad path: %v", err)
	}
	err = c.Write(ctx, "/big", make([]byte, 5000))
	if err == nil || !strings.Contains(err.Error(), "exceeds 4096") {
		t.Fatalf("oversized write: %v", err)
	}
}

// testBatches checks that requests sent together in one write get the
// answers each would get alone, errors included, inside a transaction too.
func testBatches(t *testing.T, s xenstoretest.Store) { batches(t, s.Dial(t)) }

// The same batches through a device that takes a message a write, as
// Linux's /dev/xen/xenbus: each batch must go out message by message.
func testBatchesOnXenbus(t *testing.T, s xenstoretest.Store) {
	raw, err := net.Dial("unix", s.SocketPath())
	must(t, err)
	c := xenstore.NewMessageConn(&xenbusDevice{Conn: raw})
	t.Cleanup(func() { c.Close() })
	for _, p := range []string{"/batch", "/batchafter", "/batchbig"} { // Batches' nodes
		c.Rm(ctxT(t), p)
	}
	batches(t, c)
}

// xenbusDevice writes as the kernel's xenbus_file_write does: a write
// longer than its buffer (a header and 4096 bytes) is EINVAL; of a write
// holding more than one message, the first is sent and the rest dropped,
// though the whole length is reported written.
type xenbusDevice struct {
	net.Conn
	buf []byte
}

func (d *xenbusDevice) Write(b []byte) (int, error) {
	const max = 16 + 4096
	if len(b) > max-len(d.buf) {
		d.buf = d.buf[:0]
		return 0, syscall.EINVAL
	}
	d.buf = append(d.buf, b...)
	if len(d.buf) < 16 {
		return len(b), nil
	}
	n := 16 + int(binary.LittleEndian.Uint32(d.buf[12:16]))
	if len(d.buf) < n {
		return len(b), nil
	}
	_, err := d.Conn.Write(d.buf[:n])
	d.buf = d.buf[:0]
	return len(b), err
}

func batches(t *testing.T, c *xenstore.Conn) {
	ctx := ctxT(t)
	must(t, c.WriteMany(ctx, [][2]string{{"/batch/a", "1"}, {"/batch/b/c", "2"}, {"/batch/a", "3"}}))
	vals, errs := c.ReadMany(ctx, []string{"/batch/a", "/batch/missing", "/batch/b/c", "no-slash"})
	if string(vals[0]) != "3" || string(vals[2]) != "2" || errs[0] != nil || errs[2] != nil {
		t.Fatalf("ReadMany = %q %v, want the last write of each", vals, errs)
	}
	wantErrno(t, errs[1], syscall.ENOENT)
	if errs[3] == nil {
		t.Fatalf("ReadMany of a relative path: no error")
	}
	// Sent first and awaited later, the same answers.
	pend := c.StartReadMany(ctx, []string{"/batch/a", "/batch/missing", "/batch/b/c", "no-slash"})
	must(t, c.Write(ctx, "/batchafter", nil)) // the connection serves others meanwhile
	if v2, e2 := pend.Wait(ctx); !slices.EqualFunc(v2, vals, bytes.Equal) || e2[0] != nil || e2[2] != nil || e2[3] == nil {
		t.Fatalf("StartReadMany = %q %v, want %q", v2, e2, vals)
	} else {
		wantErrno(t, e2[1], syscall.ENOENT)
	}
	for i := range 400 {
		must(t, c.Write(ctx, fmt.Sprintf("/batchbig/child-with-a-rather-long-name-%04d", i), nil))
	}
	got := c.Gets(ctx, []xenstore.Get{{Path: "/batch", Dir: true}, {Path: "/batch/a"}, {Path: "/batchbig", Dir: true}, {Path: "/nowhere", Dir: true}})
	if !slices.Equal(got[0].Names, []string{"a", "b"}) || got[0].Err != nil {
		t.Fatalf("Gets listing = %q %v", got[0].Names, got[0].Err)
	}
	if string(got[1].Value) != "3" || got[1].Err != nil {
		t.Fatalf("Gets read = %q %v", got[1].Value, got[1].Err)
	}
	if len(got[2].Names) != 400 || got[2].Err != nil { // too large for one reply: fetched in parts
		t.Fatalf("Gets large listing: %d names, %v", len(got[2].Names), got[2].Err)
	}
	wantErrno(t, got[3].Err, syscall.ENOENT)

	// A failed write among others fails alone and names its path.
	err := c.WriteMany(ctx, [][2]string{{"/batch/d", "4"}, {"/batch/" + strings.Repeat("x", 3000), "5"}})
	if err == nil || !strings.Contains(err.Error(), "/batch/xxx") {
		t.Fatalf("WriteMany with a too-long path: %v", err)
	}
	if v, err := c.Read(ctx, "/batch/d"); err != nil || string(v) != "4" {
		t.Fatalf("the good write of a failed batch: %q %v", v, err)
	}

	// Inside a transaction, batched writes commit together.
	must(t, c.Update(ctx, func(ctx context.Context, tx *xenstore.Tx) error {
		vals, errs := tx.ReadMany(ctx, []string{"/batch/a"})
		if errs[0] != nil {
			return errs[0]
		}
		return tx.WriteMany(ctx, [][2]string{{"/batch/tx1", string(vals[0])}, {"/batch/tx2", "y"}})
	}))
	vals, errs = c.ReadMany(ctx, []string{"/batch/tx1", "/batch/tx2"})
	if string(vals[0]) != "3" || string(vals[1]) != "y" || errors.Join(errs...) != nil {
		t.Fatalf("after the transaction: %q %v", vals, errs)
	}
}

// A transaction conflicting on most of its tries still commits, and one
// whose context ends while it waits to try again stops with that.
func testTransactionUpdateUnderContention(t *testing.T, s xenstoretest.Store) {
	c := s.Dial(t)
	other := s.Dial(t)
	ctx := ctxT(t)
	must(t, c.Write(ctx, "/txq/n", []byte("0")))
	runs := 0
	// body conflicts on its runs before stop (someone else writes the node
	// it read, a new value each time) and calls cancel on run cancelAt.
	body := func(stop, cancelAt int, cancel func()) func(context.Context, *xenstore.Tx) error {
		return func(ctx context.Context, tx *xenstore.Tx) error {
			runs++
			v, err := tx.Read(ctx, "/txq/n")
			if err != nil {
				return err
			}
			if runs < stop {
				if err := other.Write(ctx, "/txq/n", []byte(strconv.Itoa(runs))); err != nil {
					return err
				}
			}
			if runs == cancelAt {
				cancel()
			}
			return tx.Write(ctx, "/txq/n", append(v, '+'))
		}
	}
	must(t, c.Update(ctx, body(12, 0, nil)))
	if runs != 12 {
		t.Fatalf("body ran %d times, want 12", runs)
	}
	runs = 0
	cctx, cancel := context.WithCancel(ctx)
	defer cancel()
	if err := c.Update(cctx, body(1<<30, 3, cancel)); !errors.Is(err, context.Canceled) {
		t.Fatalf("a cancelled update: %v", err)
	}
	if runs != 3 {
		t.Fatalf("the cancelled update ran its body %d times, want 3", runs)
	}
}
