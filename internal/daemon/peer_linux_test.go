package daemon

import (
	"bytes"
	"crypto/rand"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"syscall"
	"testing"

	"golang.org/x/sys/unix"
)

// The check behind the socket's mode, from the peer's credentials alone.
func TestPeerRoles(t *testing.T) {
	c := &control{gid: 4242}
	for _, x := range []struct {
		uid, gid uint32
		groups   []uint32
		want     role
	}{{0, 0, nil, roleAdmin}, {65534, 4242, nil, roleReader}, {65534, 65534, []uint32{4242}, roleReader},
		{65534, 65534, []uint32{4241, 4243}, roleNone}, {65534, 65534, nil, roleNone}} {
		if got, _ := c.roleOf(x.uid, x.gid, x.groups); got != x.want && !(x.want == roleNone && os.Geteuid() == 65534) {
			t.Errorf("uid %d gid %d groups %v: role %d, want %d", x.uid, x.gid, x.groups, got, x.want)
		}
	}
	if got, _ := (&control{gid: -1}).roleOf(65534, 65534, []uint32{65534}); got != roleNone && os.Geteuid() != 65534 {
		t.Errorf("without a control group, a peer's own group reads: role %d", got)
	}
}

// The kernel's record of a socket pair's creator is this process's own
// groups, whatever they are (no root needed).
func TestPeerGroupsOfThisProcess(t *testing.T) {
	fds, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Close(fds[0])
	defer unix.Close(fds[1])
	got, err := peerGroups(fds[0])
	if err != nil {
		t.Fatal(err)
	}
	own, err := unix.Getgroups()
	if err != nil {
		t.Fatal(err)
	}
	var want []uint32
	for _, g := range own {
		want = append(want, uint32(g))
	}
	slices.Sort(got)
	slices.Sort(want)
	if !slices.Equal(got, want) {
		t.Errorf("SO_PEERGROUPS %v, getgroups %v", got, want)
	}
}

// A client whose control group is a supplementary one (a systemd
// DynamicUser with SupplementaryGroups=, which no file lists) may read;
// one whose groups do not include it may not, however many it has. The
// clients are this test binary run as nobody with those groups; the test
// holds the agent's end of each connection.
func TestPeerRoleFromSupplementaryGroups(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root, to run a client with other supplementary groups")
	}
	bin := binaryForNobody(t)
	ln, err := net.ListenUnix("unix", &net.UnixAddr{Name: "@usbhotplugd-test-peer-" + rand.Text(), Net: "unix"})
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	many := []uint32{}
	for g := range uint32(150) { // more than peerGroups' first buffer
		many = append(many, 5000+g)
	}
	c := &control{gid: 4242}
	for _, x := range []struct {
		gid    uint32
		groups []uint32
		want   role
	}{
		{65534, []uint32{4242}, roleReader},
		{65534, append(slices.Clone(many), 4242), roleReader},
		{65534, many, roleNone},
		{65534, []uint32{4241, 4243}, roleNone},
		{4242, []uint32{}, roleReader},
		{65534, []uint32{}, roleNone},
	} {
		conn := connectAs(t, bin, ln, 65534, x.gid, x.groups)
		got, err := c.peerRole(conn)
		if got != x.want || (got == roleNone) != (err != nil) {
			t.Errorf("gid %d, %d supplementary groups: role %d (%v), want %d", x.gid, len(x.groups), got, err, x.want)
		}
		raw, _ := conn.SyscallConn()
		var groups []uint32
		var gerr error
		raw.Control(func(fd uintptr) { groups, gerr = peerGroups(int(fd)) })
		want := slices.Sorted(slices.Values(x.groups))
		if slices.Sort(groups); gerr != nil || !slices.Equal(groups, want) {
			t.Errorf("SO_PEERGROUPS: %v (%v), want %v", groups, gerr, want)
		}
		conn.Close()
	}
}

// binaryForNobody is a copy of the test binary that nobody may run.
func binaryForNobody(t *testing.T) string {
	dir, err := os.MkdirTemp("", "usbhotplugd-peer")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	bin := filepath.Join(dir, "peer.test")
	if err := copyFile(bin, os.Args[0]); err != nil {
		t.Fatal(err)
	}
	return bin
}

// connectAs runs bin as uid:gid with the supplementary groups, connecting
// to ln, and returns the accepted end: what the agent sees of such a
// client. The client holds the connection until the test closes it.
func connectAs(t *testing.T, bin string, ln *net.UnixListener, uid, gid uint32, groups []uint32) *net.UnixConn {
	t.Helper()
	cmd := exec.CommandContext(t.Context(), bin)
	cmd.Env = []string{holdEnv + "=" + ln.Addr().String()}
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: uid, Gid: gid, Groups: groups}}
	var out bytes.Buffer // read only once Wait returned
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan struct{})
	var werr error
	go func() { werr = cmd.Wait(); close(exited) }()
	t.Cleanup(func() { cmd.Process.Kill(); <-exited })
	accepted := make(chan *net.UnixConn, 1)
	go func() {
		conn, err := ln.AcceptUnix()
		if err != nil {
			conn = nil
		}
		accepted <- conn
	}()
	select {
	case conn := <-accepted:
		if conn == nil {
			t.Fatal("accept failed")
		}
		return conn
	case <-exited:
		ln.Close() // ends the accept
		<-accepted
		t.Fatalf("the client ended before connecting: %v\n%s", werr, out.String())
	}
	return nil
}
