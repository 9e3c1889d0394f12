package daemon

import (
	"fmt"
	"net"
	"os"
	"os/user"
	"slices"
	"strconv"

	"golang.org/x/sys/unix"
)

// peerRole tells what the process at the other end of conn may do, from
// its credentials as the kernel gives them (SO_PEERCRED): root (or the
// agent's own user) may do everything; a member of the control group may
// read. The socket's mode already keeps others out; this is the check
// that does not depend on the file.
func (c *control) peerRole(conn *net.UnixConn) (role, error) {
	raw, err := conn.SyscallConn()
	if err != nil {
		return roleNone, err
	}
	var cred *unix.Ucred
	var cerr error
	if err := raw.Control(func(fd uintptr) { cred, cerr = unix.GetsockoptUcred(int(fd), unix.SOL_SOCKET, unix.SO_PEERCRED) }); err != nil {
		return roleNone, err
	}
	if cerr != nil {
		return roleNone, fmt.Errorf("peer credentials: %w", cerr)
	}
	return c.roleOf(cred.Uid, cred.Gid)
}

func (c *control) roleOf(uid, gid uint32) (role, error) {
	if uid == 0 || int(uid) == os.Geteuid() {
		return roleAdmin, nil
	}
	if c.gid >= 0 && (int(gid) == c.gid || inGroup(uid, c.gid)) {
		return roleReader, nil
	}
	return roleNone, fmt.Errorf("uid %d is neither root nor in the control group", uid)
}

// inGroup says the user uid has gid among its supplementary groups.
func inGroup(uid uint32, gid int) bool {
	u, err := user.LookupId(strconv.FormatUint(uint64(uid), 10))
	if err != nil {
		return false
	}
	ids, err := u.GroupIds()
	return err == nil && slices.Contains(ids, strconv.Itoa(gid))
}

func lookupGroup(name string) (int, error) {
	if name == "" {
		return -1, fmt.Errorf("no group")
	}
	g, err := user.LookupGroup(name)
	if err != nil {
		return -1, err
	}
	return strconv.Atoi(g.Gid)
}
