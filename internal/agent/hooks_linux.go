package agent

import (
	"os/exec"
	"syscall"
)

// ownGroup starts cmd in a new process group, and makes its cancellation
// kill that group, not only its leader.
func ownGroup(cmd *exec.Cmd) {
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.Cancel = func() error {
		// The group's id is the leader's pid (Setpgid with Pgid 0).
		return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
	}
}
