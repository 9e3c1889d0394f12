package server

import (
	"fmt"
	"net"
	"os"
	"strings"
	"unicode"

	"golang.org/x/sys/unix"
)

// peerName names the process at the other end of a unix connection, from
// the credentials the kernel recorded when it listened (SO_PEERCRED) and
// its /proc/PID/comm.
func peerName(nc net.Conn) string {
	uc, ok := nc.(*net.UnixConn)
	if !ok {
		return "another process"
	}
	rc, err := uc.SyscallConn()
	if err != nil {
		return "another process"
	}
	var cred *unix.Ucred
	var cerr error
	if err := rc.Control(func(fd uintptr) {
		cred, cerr = unix.GetsockoptUcred(int(fd), unix.SOL_SOCKET, unix.SO_PEERCRED)
	}); err != nil || cerr != nil || cred.Pid == 0 {
		return "another process (its pid is not visible here)"
	}
	comm, err := os.ReadFile(fmt.Sprintf("/proc/%d/comm", cred.Pid))
	if err != nil {
		return fmt.Sprintf("pid %d", cred.Pid)
	}
	// A process names itself: show its name, never its control bytes.
	name := strings.Map(func(r rune) rune {
		if unicode.IsPrint(r) {
			return r
		}
		return '?'
	}, strings.TrimSuffix(string(comm), "\n"))
	return fmt.Sprintf("pid %d (%s)", cred.Pid, name)
}
