package nstest

import (
	"os"
	"os/exec"
	"strings"
	"syscall"
	"testing"
)

// Run runs the test binary again with env=1 and extra in the environment,
// args as its arguments, in a new user namespace (the caller's uid and gid
// mapped to root) and the namespaces flags name (syscall.CLONE_NEWNET,
// CLONE_NEWNS), and returns its combined output. Where user namespaces are
// not available the test is skipped, except in CI.
func Run(t testing.TB, env string, flags uintptr, extra []string, args ...string) ([]byte, error) {
	t.Helper()
	cmd := exec.Command(os.Args[0], args...)
	cmd.Env = append(append(os.Environ(), env+"=1"), extra...)
	cmd.SysProcAttr = &syscall.SysProcAttr{
		Cloneflags:  syscall.CLONE_NEWUSER | flags,
		UidMappings: []syscall.SysProcIDMap{{ContainerID: 0, HostID: os.Getuid(), Size: 1}},
		GidMappings: []syscall.SysProcIDMap{{ContainerID: 0, HostID: os.Getgid(), Size: 1}},
	}
	out, err := cmd.CombinedOutput()
	if err != nil && strings.Contains(err.Error(), "operation not permitted") && os.Getenv("CI") == "" {
		t.Skipf("user namespaces are not available here: %v", err)
	}
	return out, err
}
