//go:build !linux

package daemon

import (
	"errors"
	"net"
	"os"
)

// peerRole: without SO_PEERCRED, only the agent's own user is trusted,
// and the socket's mode is the only gate.
func (c *control) peerRole(conn *net.UnixConn) (role, error) {
	if os.Geteuid() == 0 {
		return roleAdmin, nil
	}
	return roleNone, errors.New("peer credentials are not available on this system")
}

func lookupGroup(name string) (int, error) { return -1, errors.New("no group") }
