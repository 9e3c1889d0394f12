package agent_test

import (
	"bufio"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"github.com/rs/zerolog"

	"github.com/usbhotplugd/usbhotplugd/internal/agent"
	"github.com/usbhotplugd/usbhotplugd/internal/assign"
	"github.com/usbhotplugd/usbhotplugd/internal/xenstore/xenstoretest"
	"github.com/usbhotplugd/usbhotplugd/policy"
)

// hookPipe makes a FIFO that hook scripts write lines to, and returns a
// function that waits for the next line. The test holds the FIFO open for
// writing too, so a read waits for a script instead of seeing the end.
func hookPipe(t *testing.T, e *env) (string, func() string) {
	fifo := filepath.Join(t.TempDir(), "hooks")
	if err := syscall.Mkfifo(fifo, 0o600); err != nil {
		t.Fatal(err)
	}
	f, err := os.OpenFile(fifo, os.O_RDWR|syscall.O_NONBLOCK, 0)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.Close() })
	r := bufio.NewReader(f)
	return fifo, func() string {
		t.Helper()
		if dl, ok := e.ctx.Deadline(); ok {
			f.SetReadDeadline(dl)
		}
		line, err := r.ReadString('\n')
		if err != nil {
			t.Fatalf("no hook line: %v\nlog:\n%s", err, e.logText())
		}
		return strings.TrimSuffix(line, "\n")
	}
}

func script(t *testing.T, body string) string {
	p := filepath.Join(t.TempDir(), "hook.sh")
	if err := os.WriteFile(p, []byte("#!/bin/sh\n"+body+"\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	return p
}

func hookPolicy(exec string) string {
	return fmt.Sprintf(`
[[rule]]
name = "audio"
action = "attach"
match = { id = "0d8c:0014" }
target = { domain = "kiosk" }
exec = %s
`, exec)
}

// A rule's command runs after each of its decisions, with the decision in
// its environment and nothing from the daemon's.
func TestHookRunsWithTheDecision(t *testing.T) {
	s := xenstoretest.Embedded(t)
	e := newEnv(t, s)
	e.hooks = true
	fifo, next := hookPipe(t, e)
	t.Setenv("USBHOTPLUGD_LEAK", "from the daemon")
	sh := script(t, `printf '%s|%s|%s|%s|%s|%s|%s|%s|%s\n' "$1" "$USBHOTPLUGD_ACTION" "$USBHOTPLUGD_BUSID" "$USBHOTPLUGD_ID" "$USBHOTPLUGD_RULE@$USBHOTPLUGD_RULE_SOURCE" "$USBHOTPLUGD_DOMAIN" "$USBHOTPLUGD_PORT" "$USBHOTPLUGD_LEAK" "$PATH" > `+fifo)
	e.run(hookPolicy(fmt.Sprintf("[%q, \"first arg\"]", sh)), false)
	got := next()
	a, ok := e.at("1-2")
	if !ok {
		t.Fatal("audio not attached")
	}
	want := fmt.Sprintf("first arg|attached|1-2|0d8c:0014|audio@test.toml:2|kiosk|%d:%d||/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", a.Controller, a.Port)
	if got != want {
		t.Errorf("hook saw\n%s\nwant\n%s", got, want)
	}
	e.awaitLog("the rule's command ran")
	// The device leaves: the rule that attached it hears that too, and
	// where it is written, though the cleared record does not say.
	if err := e.kernel.Unplug("1-2"); err != nil {
		t.Fatal(err)
	}
	e.a.Handle(e.ctx, removeEvent(t, "1-2"))
	want = fmt.Sprintf("first arg|cleared|1-2|0d8c:0014|audio@test.toml:2|kiosk|%d:%d||/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", a.Controller, a.Port)
	if got := next(); got != want {
		t.Errorf("hook saw\n%s\nwant\n%s", got, want)
	}
}

// A command that fails or cannot run is logged, and the agent goes on
// deciding.
func TestHookFailuresAreLogged(t *testing.T) {
	for _, c := range []struct{ name, exec, log string }{
		{"exit", fmt.Sprintf("[%q]", "/bin/false"), "the rule's command failed (exit status 1)"},
		{"missing", `["/nonexistent/hook"]`, "the rule's command could not run"},
	} {
		t.Run(c.name, func(t *testing.T) {
			s := xenstoretest.Embedded(t)
			e := newEnv(t, s)
			e.hooks = true
			e.run(hookPolicy(c.exec), false)
			e.awaitLog(c.log)
			if _, ok := e.at("1-2"); !ok {
				t.Error("the decision was not carried out")
			}
		})
	}
}

// A dry run says what would run, and runs nothing.
func TestHookDryRun(t *testing.T) {
	s := xenstoretest.Embedded(t)
	e := newEnv(t, s)
	e.hooks = true
	marker := filepath.Join(t.TempDir(), "ran")
	e.run(hookPolicy(fmt.Sprintf("[%q, %q]", "/usr/bin/touch", marker)), true)
	e.awaitLog("dry run: the rule's command would run")
	if _, err := os.Stat(marker); err == nil {
		t.Error("a dry run ran the command")
	}
}

// Commands past a full queue are skipped, counted, and the count is in
// the agent's stats (status shows it).
func TestHookDroppedAreCounted(t *testing.T) {
	p, err := policy.Parse("test.toml", []byte(hookPolicy(`["/bin/true"]`)), nil)
	if err != nil {
		t.Fatal(err)
	}
	var log strings.Builder
	a := agent.New(agent.Config{Host: &assign.Host{}, Policy: p, Hooks: true, Log: zerolog.New(&log)})
	r := agent.Audit{BusID: "1-2", Rule: "audio", Action: agent.ActAttached}
	for range agent.HookQueue + 5 {
		a.QueueHook(r) // nothing runs them: the queue fills
	}
	if st := a.Stats(); st.HooksDropped != 5 {
		t.Errorf("dropped %d, want 5", st.HooksDropped)
	}
	if !strings.Contains(log.String(), `"hooks_dropped":5`) {
		t.Errorf("the log does not count them:\n%s", log.String())
	}
}
