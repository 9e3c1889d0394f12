package daemon

import (
	"errors"
	"fmt"
	"net"
	"os"
	"os/user"
	"slices"
	"strconv"
	"unsafe"

	"golang.org/x/sys/unix"
)

// peerRole tells what the process at the other end of conn may do, from
// its credentials as the kernel recorded them when it connected: root (or
// the agent's own user) may do everything; a process whose primary group
// (SO_PEERCRED) or one of whose supplementary groups (SO_PEERGROUPS) is
// the control group may read. The socket's mode already keeps others out;
// this is the check that does not depend on the file. The kernel's record,
// not /etc/group (a systemd DynamicUser is in no file) nor /proc/PID (the
// pid may be another process's by then).
func (c *control) peerRole(conn *net.UnixConn) (role, error) {
	raw, err := conn.SyscallConn()
	if err != nil {
		return roleNone, err
	}
	var cred *unix.Ucred
	var groups []uint32
	var cerr, gerr error
	if err := raw.Control(func(fd uintptr) {
		cred, cerr = unix.GetsockoptUcred(int(fd), unix.SOL_SOCKET, unix.SO_PEERCRED)
		if cerr == nil && c.gid >= 0 {
			groups, gerr = peerGroups(int(fd))
		}
	}); err != nil {
		return roleNone, err
	}
	if cerr != nil {
		return roleNone, fmt.Errorf("peer credentials: %w", cerr)
	}
	r, err := c.roleOf(cred.Uid, cred.Gid, groups)
	if err != nil && gerr != nil {
		err = fmt.Errorf("%w (its supplementary groups are unknown: %w)", err, gerr)
	}
	return r, err
}

func (c *control) roleOf(uid, gid uint32, groups []uint32) (role, error) {
	if uid == 0 || int(uid) == os.Geteuid() {
		return roleAdmin, nil
	}
	if c.gid >= 0 && (int64(gid) == int64(c.gid) || slices.Contains(groups, uint32(c.gid))) {
		return roleReader, nil
	}
	return roleNone, fmt.Errorf("uid %d is neither root nor in the control group", uid)
}

// maxGroups is the kernel's NGROUPS_MAX: no process has more.
const maxGroups = 65536

// peerGroups are the supplementary groups of the process at the other end
// of the connected unix socket fd, as the kernel recorded them when it
// connected (SO_PEERGROUPS, Linux 4.13). A buffer too short gets ERANGE
// and the size needed, from which the second call is sized; the record
// does not change, so two calls suffice. Before Linux 4.13 the error is
// ENOPROTOOPT: then only the primary group counts.
func peerGroups(fd int) ([]uint32, error) {
	buf := make([]uint32, 64)
	for range 2 {
		size := uint32(len(buf) * 4)
		_, _, e := unix.Syscall6(unix.SYS_GETSOCKOPT, uintptr(fd), unix.SOL_SOCKET, unix.SO_PEERGROUPS,
			uintptr(unsafe.Pointer(&buf[0])), uintptr(unsafe.Pointer(&size)), 0)
		switch {
		case e == 0 && size <= uint32(len(buf)*4):
			return buf[:size/4], nil
		case e == unix.ERANGE && size > uint32(len(buf)*4) && size <= maxGroups*4:
			buf = make([]uint32, (size+3)/4)
		case e == 0 || e == unix.ERANGE:
			return nil, fmt.Errorf("getsockopt SO_PEERGROUPS: the kernel gave %d bytes for a buffer of %d", size, len(buf)*4)
		default:
			return nil, os.NewSyscallError("getsockopt SO_PEERGROUPS", e)
		}
	}
	return nil, errors.New("getsockopt SO_PEERGROUPS: the peer's groups changed size between two calls")
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
