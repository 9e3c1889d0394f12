package agent

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/usbhotplugd/usbhotplugd/internal/safetext"
)

// Hook limits: commands wait in a bounded queue and run one at a time, in
// the order of the decisions, so a slow command never holds up a decision
// and a storm of decisions never forks a storm of processes.
const (
	hookQueue          = 256
	defaultHookTimeout = 30 * time.Second
	hookOutputMax      = 4096
)

// hookPath is the only PATH a command gets: it runs as the daemon does,
// and must not depend on whoever started it.
const hookPath = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

// A hookJob is one run of a rule's command for one decision.
type hookJob struct {
	argv []string
	env  []string
	r    Audit
}

// hookEnv is what a command learns of the decision: one variable per
// audit field, empty when the field does not apply.
func hookEnv(r Audit) []string {
	port := ""
	if r.Port > 0 {
		port = fmt.Sprintf("%d:%d", r.Ctrl, r.Port)
	}
	domid := ""
	if r.Domid > 0 {
		domid = strconv.Itoa(r.Domid)
	}
	kv := [][2]string{
		{"ACTION", string(r.Action)}, {"BUSID", r.BusID}, {"PORT_PATH", r.PortPath}, {"ID", r.ID}, {"SERIAL", r.Serial}, {"NAME", r.Name},
		{"RULE", r.Rule}, {"RULE_INDEX", strconv.Itoa(r.RuleNo)}, {"RULE_SOURCE", r.RuleAt}, {"DOMAIN", r.Domain}, {"DOMID", domid},
		{"PORT", port}, {"TRIGGER", string(r.Trigger)}, {"REASON", r.Reason}, {"DRY_RUN", strconv.FormatBool(r.DryRun)},
		// Busids are validated names: one word each, space-separated.
		{"TWINS", strings.Join(r.Twins, " ")}, {"FAILED_STEP", r.FailedStep},
		// The device's strings are whatever it sends: raw above, and as a
		// plain word for scripts that would use them unquoted.
		{"SERIAL_SAFE", safetext.Word(r.Serial)}, {"NAME_SAFE", safetext.Word(r.Name)},
		// The kernel names the port path, but a platform controller's
		// part of it comes from firmware: a word as well, for file names.
		{"PORT_PATH_SAFE", safetext.Word(r.PortPath)},
	}
	env := []string{hookPath, "LANG=C.UTF-8"}
	for _, x := range kv {
		// Device strings come from the device: a NUL would make exec fail.
		env = append(env, "USBHOTPLUGD_"+x[0]+"="+strings.ReplaceAll(x[1], "\x00", ""))
	}
	return env
}

// hook queues the command of the rule that made decision r, or attached
// the device that r says left, if the rule has one. A dry run says what
// would run instead.
func (a *Agent) hook(r Audit) {
	if r.Rule == "" || !a.cfg.Hooks && !a.cfg.DryRun {
		return // no command runs, or is said to: no need to find it
	}
	// Names are unique in a policy; a decision of a rule a reload removed
	// runs nothing.
	var argv []string
	if pol := a.pol.Load(); pol != nil {
		for _, rule := range pol.Rules {
			if rule.Name == r.Rule {
				argv = rule.Exec
				if r.RuleAt == "" {
					// A cleared record names the rule that attached the
					// device, not where it is: the command is told.
					r.RuleAt = fmt.Sprintf("%s:%d", rule.File, rule.Line)
				}
				break
			}
		}
	}
	if len(argv) == 0 {
		return
	}
	if a.cfg.DryRun {
		a.cfg.Log.Info().Str("busid", r.BusID).Str("rule", r.Rule).Str("action", string(r.Action)).Strs("exec", argv).Msg("dry run: the rule's command would run")
		return
	}
	select {
	case a.hooks <- hookJob{argv: argv, env: hookEnv(r), r: r}:
	default:
		n := a.hooksDropped.Add(1)
		a.warn.Warn().Str("busid", r.BusID).Str("rule", r.Rule).Str("action", string(r.Action)).Strs("exec", argv).Uint64("hooks_dropped", n).
			Msgf("%d commands already wait: this one is skipped", hookQueue)
	}
}

// RunHooks runs the queued commands one at a time until ctx ends; the
// command running then is killed with its process group. It returns
// ctx's error.
func (a *Agent) RunHooks(ctx context.Context) error {
	timeout := a.cfg.HookTimeout
	if timeout <= 0 {
		timeout = defaultHookTimeout
	}
	for {
		select {
		case j := <-a.hooks:
			a.runHook(ctx, j, timeout)
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

// errHookTimeout is the cause of a command's end at its timeout.
var errHookTimeout = errors.New("hook timeout")

// hookContext bounds one command's run (tests end it at a moment they
// choose instead of on the clock).
var hookContext = func(ctx context.Context, timeout time.Duration) (context.Context, context.CancelFunc) {
	return context.WithTimeoutCause(ctx, timeout, errHookTimeout)
}

func (a *Agent) runHook(ctx context.Context, j hookJob, timeout time.Duration) {
	ctx, cancel := hookContext(ctx, timeout)
	defer cancel()
	start := time.Now()
	var out limitedBuffer
	cmd := exec.CommandContext(ctx, j.argv[0], j.argv[1:]...)
	cmd.Env, cmd.Dir = j.env, "/"
	cmd.Stdout, cmd.Stderr = &out, &out
	cmd.WaitDelay = time.Second // a child that keeps the output open does not hold the queue
	// The command leads a process group of its own, and a timeout ends the
	// whole group: a script's children do not outlive it.
	ownGroup(cmd)
	err := cmd.Run()
	a.hooksRun.Add(1)
	ev := a.cfg.Log.Info()
	if err != nil {
		ev = a.warn.Warn().Err(err)
	}
	ev = ev.Str("busid", j.r.BusID).Str("rule", j.r.Rule).Str("action", string(j.r.Action)).Strs("exec", j.argv).Dur("duration_ms", time.Since(start))
	if s := strings.TrimSpace(out.String()); s != "" {
		ev = ev.Str("output", s)
	}
	var ee *exec.ExitError
	switch {
	case err == nil:
		ev.Msg("the rule's command ran")
	case errors.Is(context.Cause(ctx), errHookTimeout):
		ev.Msgf("the rule's command did not finish within %v and was killed", timeout)
	case errors.As(err, &ee):
		ev.Msgf("the rule's command failed (exit status %d)", ee.ExitCode())
	default:
		ev.Msg("the rule's command could not run: check the exec path in the policy")
	}
}

// limitedBuffer keeps the first hookOutputMax bytes written to it, so a
// chatty command cannot grow the daemon.
type limitedBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
	cut bool
}

func (b *limitedBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if room := hookOutputMax - b.buf.Len(); room < len(p) {
		b.buf.Write(p[:max(room, 0)])
		b.cut = true
	} else {
		b.buf.Write(p)
	}
	return len(p), nil
}

func (b *limitedBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.cut {
		return b.buf.String() + " [output cut]"
	}
	return b.buf.String()
}
