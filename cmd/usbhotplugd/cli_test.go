package main

import (
	"bytes"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"regexp"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"github.com/usbhotplugd/usbhotplugd/internal/agent"
	"github.com/usbhotplugd/usbhotplugd/internal/daemon"
	"github.com/usbhotplugd/usbhotplugd/internal/fakekernel"
	"github.com/usbhotplugd/usbhotplugd/internal/replay"
	"github.com/usbhotplugd/usbhotplugd/internal/xenstore/xenstoretest"
)

// A wrong command line is reported (exit 2) before anything is dialled:
// the socket here counts every connection and answers none, so a command
// that dialled would either hang or fail with exit 1.
func TestArgumentErrorsBeforeDial(t *testing.T) {
	sock := filepath.Join(t.TempDir(), "xs.sock")
	l, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	var dialled atomic.Int32
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			dialled.Add(1)
			c.Close() // the command fails at once instead of hanging
		}
	}()
	for _, args := range [][]string{
		{"usbdev-attach", "kiosk"},
		{"usbdev-attach", "kiosk", "hostbus=1,hostaddr=6"},
		{"usbdev-attach", "kiosk", "busid=../1-1"},
		{"usbdev-attach", "kiosk", "hostbus=1"},
		{"usbdev-detach", "kiosk", "x", "1"},
		{"usbdev-detach", "kiosk", "0"},
		{"usbctrl-detach", "kiosk", "zero"},
		{"usbctrl-attach", "kiosk", "ports=40"},
		{"usbctrl-attach", "kiosk", "colour=blue"},
		{"usb-list", "kiosk", "desk"},
		{"usb-list"},
		{"usb-list", "--bogus", "kiosk"},
		{"usbctrl-detach", "kiosk", "0", "--backend-timeout", "soon"},
		{"usbctrl-detach", "kiosk", "0", "--backend-timeout", "-5s"},
		{"usbctrl-attach", "kiosk", "--backend-timeout", "0s"},
		{"usb-list", "kiosk", "--backend-timeout", "5s"},
		{"repair", "--backend-timeout", "5s"},
		{"usbdev-attach", "kiosk", "busid=1-2", "busid=1-3"},
		{"usbctrl-attach", "kiosk", "type=pv", "type=qusb"},
		{"repair", "now"},
	} {
		code, _, errs := runCmd(t, append(args, "--xenstore", sock)...)
		if code != exitUsage {
			t.Errorf("%v: exit %d, want %d: %s", args, code, exitUsage, errs)
		}
		if !strings.HasPrefix(errs, "usbhotplugd ") {
			t.Errorf("%v: the message does not name the command: %q", args, errs)
		}
	}
	if n := dialled.Load(); n != 0 {
		t.Errorf("%d commands dialled the store before their arguments were checked", n)
	}
	// The same socket is dialled when the arguments are right, so the
	// count above means something.
	if code, _, _ := runCmd(t, "usb-list", "kiosk", "--xenstore", sock); code != exitFailure || dialled.Load() == 0 {
		t.Fatalf("a right command line: exit %d, %d dials", code, dialled.Load())
	}
}

// Flags go before or after the positional arguments, and -- ends them.
func TestFlagsAnywhere(t *testing.T) {
	root := t.TempDir()
	if err := fakekernel.Standard(root); err != nil {
		t.Fatal(err)
	}
	pol := "../../rules/examples/kiosk.toml"
	_, before, _ := runCmd(t, "explain", "--policy", pol, "--sysfs", root, "--json", "1-1.6")
	code, after, errs := runCmd(t, "explain", "1-1.6", "--json", "--sysfs", root, "--policy", pol)
	if code != 0 || after != before || !strings.Contains(after, `"busid": "1-1.6"`) {
		t.Fatalf("flags after the busid: exit %d %s\n%s\nbefore it:\n%s", code, errs, after, before)
	}
	dir := t.TempDir()
	shadow := writeFile(t, dir, "shadow.toml", "[[rule]]\nname = \"all\"\naction = \"deny\"\n\n[[rule]]\nname = \"kbd\"\naction = \"deny\"\nmatch = { id = \"046d:c31c\" }\n")
	if code, _, errs := runCmd(t, "check", shadow, "--strict"); code != exitFailure || !strings.Contains(errs, "1 warning with --strict") {
		t.Errorf("check FILE --strict: exit %d %s", code, errs)
	}
	// After --, "--strict" is the policy file's name (there is none).
	if code, _, errs := runCmd(t, "check", "--", "--strict"); code != exitFailure || !strings.Contains(errs, "--strict") || !strings.Contains(errs, "no such file") {
		t.Errorf("check -- --strict: exit %d %s", code, errs)
	}
}

func TestVersionFlag(t *testing.T) {
	// What cobra prints for them (the command, the root's template),
	// which run prints without it.
	cobraOut := func(arg string) string {
		var b bytes.Buffer
		root := newRoot([]string{arg})
		root.SetArgs([]string{arg})
		root.SetOut(&b)
		if err := root.Execute(); err != nil {
			t.Fatal(err)
		}
		return b.String()
	}
	want := cobraOut("version")
	if flag := cobraOut("--version"); flag != want {
		t.Fatalf("cobra prints %q for --version, %q for version", flag, want)
	}
	for _, flag := range []string{"version", "--version", "-v"} {
		if code, out, errs := runCmd(t, flag); code != 0 || out != want || !strings.HasPrefix(out, "usbhotplugd ") {
			t.Errorf("%s: exit %d %q %s; the version command prints %q", flag, code, out, errs, want)
		}
		if handlesSignals([]string{flag}) {
			t.Errorf("%s handles signals", flag)
		}
	}
}

// "1 error", "2 errors": counts agree with their nouns.
func TestPlurals(t *testing.T) {
	dir := t.TempDir()
	one := writeFile(t, dir, "one.toml", "[[rule]]\nname = \"a\"\naction = \"teleport\"\n")
	if code, _, errs := runCmd(t, "check", one); code != exitFailure || !strings.Contains(errs, ": 1 error;") {
		t.Errorf("one error: exit %d %s", code, errs)
	}
	ok := writeFile(t, dir, "ok.toml", "[[rule]]\nname = \"a\"\naction = \"deny\"\n")
	if code, out, _ := runCmd(t, "check", ok); code != 0 || !strings.Contains(out, "valid: 1 rule, 0 domain sections, 0 warnings") {
		t.Errorf("one rule: exit %d %s", code, out)
	}
	for n, want := range map[int]string{0: "0 passes", 1: "1 pass", 2: "2 passes"} {
		if got := plural(n, "pass"); got != want {
			t.Errorf("plural(%d, pass) = %q", n, got)
		}
	}
}

var snake = regexp.MustCompile(`^[a-z][a-z0-9]*(_[a-z0-9]+)*$`)

// One spelling per thing in every JSON the commands print or the agent
// writes: snake_case keys, each in jsonVocabulary (which says what each
// names, once), and durations as milliseconds in a key ending in _ms
// (never a time.Duration, which encoding/json writes in ns). The types
// hold the keys no fixture of TestJSONOutputsOneSpelling makes.
func TestJSONSpelling(t *testing.T) {
	for _, v := range []any{daemon.Status{}, daemon.Request{}, daemon.Response{}, agent.Audit{}, agent.Owned{}, replay.Result{}, daemon.Explanation{}, daemon.Device{}, usbListJSON{}} {
		checkJSONType(t, reflect.TypeOf(v), reflect.TypeOf(v).String(), map[reflect.Type]bool{})
	}
}

func checkJSONType(t *testing.T, ty reflect.Type, where string, seen map[reflect.Type]bool) {
	for ty.Kind() == reflect.Pointer || ty.Kind() == reflect.Slice || ty.Kind() == reflect.Map {
		ty = ty.Elem()
	}
	if ty.Kind() != reflect.Struct || seen[ty] || ty == reflect.TypeOf(time.Time{}) {
		return
	}
	seen[ty] = true
	for i := 0; i < ty.NumField(); i++ {
		f := ty.Field(i)
		if !f.IsExported() {
			continue
		}
		name, _, _ := strings.Cut(f.Tag.Get("json"), ",")
		if name == "-" {
			continue
		}
		if f.Anonymous && name == "" {
			checkJSONType(t, f.Type, where, seen)
			continue
		}
		at := where + "." + f.Name
		if !snake.MatchString(name) {
			t.Errorf("%s: JSON key %q is not snake_case", at, name)
		}
		if r, retired := retiredKeys[name]; retired {
			t.Errorf("%s: JSON key %q is spelled %s", at, name, r)
		} else if _, ok := jsonVocabulary[name]; !ok {
			t.Errorf("%s: JSON key %q is not in jsonVocabulary: if it names a thing that has a key, use that key; else add it, with what it names", at, name)
		}
		if strings.HasSuffix(name, "_at") && f.Type != reflect.TypeOf(time.Time{}) {
			t.Errorf("%s: %q ends in _at and is not a time", at, name)
		}
		if f.Type == reflect.TypeOf(time.Time{}) && !strings.HasSuffix(name, "_at") {
			t.Errorf("%s: a time under %q, a key without _at", at, name)
		}
		switch f.Type {
		case reflect.TypeOf(time.Duration(0)):
			t.Errorf("%s: a time.Duration (%q) is written in nanoseconds: use agent.Millis and a key ending in _ms", at, name)
		case reflect.TypeOf(agent.Millis(0)):
			if !strings.HasSuffix(name, "_ms") {
				t.Errorf("%s: milliseconds under %q, a key without _ms", at, name)
			}
		}
		checkJSONType(t, f.Type, at, seen)
	}
}

// Completion: domain names from xenstore, busids from sysfs, and a store
// that does not answer gives no names instead of a frozen prompt.
func TestCompletion(t *testing.T) {
	store := xenstoretest.Embedded(t)
	seedXL(t, store.Dial(t))
	root := t.TempDir()
	if err := fakekernel.Standard(root); err != nil {
		t.Fatal(err)
	}
	complete := func(args ...string) string {
		t.Helper()
		code, out, errs := runCmd(t, append([]string{"__complete"}, args...)...)
		if code != 0 {
			t.Fatalf("__complete %v: exit %d %s", args, code, errs)
		}
		return out
	}
	if out := complete("usbdev-attach", "--xenstore", store.SocketPath(), ""); !strings.Contains(out, "kiosk\tdomid 1\n") || strings.Contains(out, "Domain-0") {
		t.Errorf("domains:\n%s", out)
	}
	out := complete("usbdev-attach", "--sysfs", root, "kiosk", "busid=")
	if !strings.Contains(out, "busid=1-1.6\t046d:c31c Logitech USB Keyboard\n") || strings.Contains(out, "busid=1-1\t") {
		t.Errorf("busids (no hubs):\n%s", out)
	}
	// The few values a KEY= takes, with what each means; none for a key
	// the command has not.
	if out := complete("usbctrl-attach", "kiosk", "type="); !strings.Contains(out, "type=devicemodel\t") || !strings.Contains(out, "type=pv\t") {
		t.Errorf("type=:\n%s", out)
	}
	if out := complete("usbctrl-attach", "kiosk", "version="); !strings.Contains(out, "version=2\t") {
		t.Errorf("version=:\n%s", out)
	}
	if out := complete("usbdev-attach", "kiosk", "type="); strings.Contains(out, "type=pv") {
		t.Errorf("usbdev-attach has no type=:\n%s", out)
	}
	if out := complete("explain", "--sysfs", root, ""); !strings.Contains(out, "1-2\t0d8c:0014 C-Media USB Audio Device\n") {
		t.Errorf("explain's busid:\n%s", out)
	}
	if out := complete("run", "--log-format", ""); !strings.Contains(out, "console\n") {
		t.Errorf("--log-format:\n%s", out)
	}
	// assign: BUSID, then DOMAIN (the store found as the commands find it);
	// generate's --domain; --prefer.
	t.Setenv("XENSTORED_PATH", store.SocketPath())
	if out := complete("assign", "--sysfs", root, ""); !strings.Contains(out, "1-2\t0d8c:0014 C-Media USB Audio Device\n") {
		t.Errorf("assign's busid:\n%s", out)
	}
	if out := complete("assign", "--sysfs", root, "1-2", ""); !strings.Contains(out, "kiosk\tdomid 1\n") {
		t.Errorf("assign's domain:\n%s", out)
	}
	if out := complete("generate", "--domain", ""); !strings.Contains(out, "kiosk\tdomid 1\n") {
		t.Errorf("generate --domain:\n%s", out)
	}
	if out := complete("assign", "--prefer", ""); !strings.Contains(out, "port_path\n") {
		t.Errorf("--prefer:\n%s", out)
	}
	if out := complete("unassign", "--sysfs", root, ""); !strings.Contains(out, "1-2\t") {
		t.Errorf("unassign's busid:\n%s", out)
	}

	mute := filepath.Join(t.TempDir(), "mute.sock")
	l, err := net.Listen("unix", mute)
	if err != nil {
		t.Fatal(err)
	}
	held := make(chan net.Conn, 16)
	go func() {
		defer close(held)
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			held <- c // open, never answered
		}
	}()
	if out := complete("usb-list", "--xenstore", mute, ""); strings.Contains(out, "kiosk") {
		t.Errorf("a mute store: %s", out)
	}
	l.Close()
	for c := range held {
		c.Close()
	}

	for _, sh := range []string{"bash", "zsh", "fish"} {
		code, out, errs := runCmd(t, "completion", sh)
		if code != 0 || !strings.Contains(out, "__complete") {
			t.Errorf("completion %s: exit %d %s", sh, code, errs)
		}
		if bin, err := exec.LookPath(sh); err == nil && sh != "fish" {
			cmd := exec.Command(bin, "-n")
			cmd.Stdin = strings.NewReader(out)
			if b, err := cmd.CombinedOutput(); err != nil {
				t.Errorf("%s -n on its completion script: %v\n%s", sh, err, b)
			}
		}
	}
	if code, _, errs := runCmd(t, "completion", "tcsh"); code != exitUsage || errs != "usbhotplugd completion: tcsh is not supported (bash, zsh, fish)\n" {
		t.Errorf("completion tcsh: exit %d %q", code, errs)
	}
	if code, _, errs := runCmd(t, "completion"); code != exitUsage || !strings.Contains(errs, "name the shell") {
		t.Errorf("completion: exit %d %q", code, errs)
	}
}

// The man pages come from the same definitions as --help: a page per
// command with its flags and examples, and usbhotplugd(8) over them.
func TestManPages(t *testing.T) {
	t.Setenv("SOURCE_DATE_EPOCH", "1764547200")
	dir := t.TempDir()
	code, out, errs := runCmd(t, "man", dir)
	if code != 0 {
		t.Fatalf("man: exit %d %s", code, errs)
	}
	read := func(p string) string {
		t.Helper()
		b, err := os.ReadFile(filepath.Join(dir, p))
		if err != nil {
			t.Fatal(err)
		}
		return string(b)
	}
	root := read("man8/usbhotplugd.8")
	for _, want := range []string{".TH \"USBHOTPLUGD\" \"8\" \"2025-12-01\"", ".SH EXIT STATUS", ".SH FILES", `\fBusbhotplugd\-usbdev\-attach\fR(8)`, `usbhotplugd\-policy`, `\fB\-\-version\fR`} {
		if !strings.Contains(root, want) {
			t.Errorf("usbhotplugd.8 lacks %q:\n%s", want, root)
		}
	}
	for _, c := range commands {
		p := "man8/usbhotplugd-" + c.name + ".8"
		if !strings.Contains(out, filepath.Join(dir, p)+"\n") {
			t.Errorf("man did not write %s:\n%s", p, out)
		}
	}
	attach := read("man8/usbhotplugd-usbdev-attach.8")
	for _, want := range []string{`\fB\-\-force\fR`, `usbhotplugd usbdev\-attach kiosk hostbus=1 hostaddr=6`, `\fB\-\-xenstore\fR \fISOCKET\fR`} {
		if !strings.Contains(attach, want) {
			t.Errorf("usbhotplugd-usbdev-attach.8 lacks %q:\n%s", want, attach)
		}
	}
	if ctrl := read("man8/usbhotplugd-usbctrl-attach.8"); !strings.Contains(ctrl, `\fB\-\-backend\-timeout\fR \fIDURATION\fR`) {
		t.Errorf("usbhotplugd-usbctrl-attach.8 lacks --backend-timeout:\n%s", ctrl)
	}
	if !strings.Contains(read("man5/usbhotplugd-policy.5"), ".SH REFERENCE") {
		t.Error("usbhotplugd-policy.5 lacks the reference")
	}
	pages, _ := filepath.Glob(filepath.Join(dir, "man*", "*"))
	for _, p := range pages {
		// Options and paths copied from the page must work: every
		// "-" is groff's \- (a minus, ASCII), never a bare hyphen that
		// groff may print as U+2010 (lintian's hyphen-used-as-minus-sign).
		b, err := os.ReadFile(p)
		if err != nil {
			t.Fatal(err)
		}
		for n, l := range strings.Split(string(b), "\n") {
			if strings.HasPrefix(l, ".TH") {
				continue
			}
			if i := bareHyphen(l); i >= 0 {
				t.Errorf("%s:%d: a bare hyphen at %q", filepath.Base(p), n+1, l[max(0, i-20):min(len(l), i+10)])
			}
		}
	}
	groff, err := exec.LookPath("groff")
	if err != nil {
		t.Skip("groff not installed: the pages' roff is not checked")
	}
	for _, p := range pages {
		if b, err := exec.Command(groff, "-man", "-Tutf8", "-ww", "-z", p).CombinedOutput(); err != nil || len(b) > 0 {
			t.Errorf("groff on %s: %v\n%s", filepath.Base(p), err, b)
		}
	}
}

// A backtick in a flag's usage names its value for pflag ("--flag
// udevadm monitor --property"): no flag has one, and each flag's value is
// named as valueName names it, in --help and the man pages.
func TestFlagValueNames(t *testing.T) {
	root := newRoot(nil)
	var visit func(c *cobra.Command)
	visit = func(c *cobra.Command) {
		c.Flags().VisitAll(func(f *pflag.Flag) {
			if strings.ContainsRune(f.Usage, '`') {
				t.Errorf("%s --%s: a backtick in its usage: %q", c.CommandPath(), f.Name, f.Usage)
			}
			if n := valueName(f.Name); n != "" {
				if t0 := f.Value.Type(); t0 == "string" || t0 == "duration" {
					t.Errorf("%s --%s: value named %s, not %s", c.CommandPath(), f.Name, t0, n)
				}
			}
		})
		for _, sub := range c.Commands() {
			visit(sub)
		}
	}
	visit(root)
	_, out, _ := runCmd(t, "record", "--help")
	if !strings.Contains(out, "--import-udevadm FILE ") || strings.Contains(out, "--import-udevadm udevadm") {
		t.Errorf("record --help:\n%s", out)
	}
	dir := t.TempDir()
	if code, _, errs := runCmd(t, "man", dir); code != 0 {
		t.Fatalf("man: exit %d %s", code, errs)
	}
	if b, err := os.ReadFile(filepath.Join(dir, "man8/usbhotplugd-record.8")); err != nil || !strings.Contains(string(b), `\fB\-\-import\-udevadm\fR \fIFILE\fR`) {
		t.Errorf("usbhotplugd-record.8: %v\n%s", err, b)
	}
}

// --backend-timeout is for the commands that wait for a backend (a
// controller added or removed, the agent), and no other lists it.
func TestBackendTimeoutWhereUsed(t *testing.T) {
	uses := map[string]bool{"usbctrl-attach": true, "usbctrl-detach": true, "run": true}
	for _, c := range newRoot(nil).Commands() {
		if has := c.Flags().Lookup("backend-timeout") != nil; has != uses[c.Name()] {
			t.Errorf("%s: --backend-timeout listed %v, want %v", c.Name(), has, uses[c.Name()])
		}
	}
}

// bareHyphen is the index of the first "-" in a roff line that no
// backslash escapes, or -1.
func bareHyphen(l string) int {
	for i := 0; i < len(l); i++ {
		switch l[i] {
		case '\\':
			i++ // the escaped character
		case '-':
			return i
		}
	}
	return -1
}

// Every command pays for the start-up work of every package linked in, so
// none whose initialisation is heavy and that only one command would use:
// the HTTP stack, protobuf, the Prometheus client, a markdown renderer.
func TestNoHeavyStartUp(t *testing.T) {
	goTool, err := exec.LookPath("go")
	if err != nil {
		t.Skip("needs the go command to list the binary's packages")
	}
	out, err := exec.Command(goTool, "list", "-deps", ".").CombinedOutput()
	if err != nil {
		t.Fatalf("go list -deps: %v\n%s", err, out)
	}
	for _, p := range strings.Fields(string(out)) {
		for _, heavy := range []string{"net/http", "expvar", "google.golang.org/protobuf", "github.com/prometheus/client_golang", "github.com/spf13/cobra/doc", "github.com/russross/blackfriday"} {
			if p == heavy || strings.HasPrefix(p, heavy+"/") {
				t.Errorf("the binary links %s", p)
			}
		}
	}
}

// -h and --help before a command ask for that command's help, as after it.
func TestHelpFlagBeforeCommand(t *testing.T) {
	_, want, _ := runCmd(t, "check", "--help")
	if !strings.Contains(want, "usbhotplugd check [--strict]") {
		t.Fatalf("check --help:\n%s", want)
	}
	for _, args := range [][]string{{"-h", "check"}, {"--help", "check"}, {"check", "-h"}} {
		if code, out, errs := runCmd(t, args...); code != 0 || out != want {
			t.Errorf("%v: exit %d %s\n%s", args, code, errs, out)
		}
	}
	if _, out, _ := runCmd(t, "-h"); !strings.Contains(out, "Policy and devices:") {
		t.Errorf("-h:\n%s", out)
	}
}
