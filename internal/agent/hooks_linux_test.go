package agent_test

import (
	"fmt"
	"strconv"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/usbhotplugd/usbhotplugd/internal/agent"
	"github.com/usbhotplugd/usbhotplugd/internal/xenstore/xenstoretest"
)

// A command that outlives its timeout is killed with its whole process
// group: a child it left in the background ends too. The test ends the
// timeout itself, once the command runs, so the clock plays no part.
func TestHookTimeoutKillsTheGroup(t *testing.T) {
	fire, restore := agent.HookTimeoutNow()
	defer restore()
	s := xenstoretest.Embedded(t)
	e := newEnv(t, s)
	e.hooks = true
	fifo, next := hookPipe(t, e)
	sh := script(t, "sleep 60 &\necho $! > "+fifo+"\nwait")
	e.run(hookPolicy(fmt.Sprintf("[%q]", sh)), false)
	child, err := strconv.Atoi(next())
	if err != nil {
		t.Fatal(err)
	}
	pidfd, err := unix.PidfdOpen(child, 0)
	if err != nil {
		t.Fatalf("the command's child %d: %v", child, err)
	}
	defer unix.Close(pidfd)
	fire()
	e.awaitLog("did not finish within")
	// A pidfd turns readable when its process ends.
	dl, _ := e.ctx.Deadline()
	for {
		fds := []unix.PollFd{{Fd: int32(pidfd), Events: unix.POLLIN}}
		n, err := unix.Poll(fds, int(time.Until(dl).Milliseconds()))
		if err == unix.EINTR {
			continue
		}
		if err != nil || n == 0 {
			unix.Kill(child, unix.SIGKILL)
			t.Fatalf("the command's child %d outlived the timeout (%v)", child, err)
		}
		break
	}
	if _, ok := e.at("1-2"); !ok {
		t.Error("the decision was not carried out")
	}
}
