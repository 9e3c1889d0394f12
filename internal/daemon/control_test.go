package daemon

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

const peerEnv = "USBHOTPLUGD_TEST_PEER_SOCKET"

const holdEnv = "USBHOTPLUGD_TEST_HOLD_SOCKET"

// hold is the test binary run with other credentials: it connects to the
// socket, says so, and holds the connection until the other end closes it.
func hold(path string) int {
	c, err := net.Dial("unix", path)
	if err != nil {
		fmt.Println("dial:", err)
		return 1
	}
	defer c.Close()
	fmt.Println("connected")
	c.SetDeadline(time.Now().Add(2 * time.Minute)) // an orphan does not stay
	io.Copy(io.Discard, c)
	return 0
}

func TestMain(m *testing.M) {
	if p := os.Getenv(peerEnv); p != "" {
		os.Exit(peer(p))
	}
	if p := os.Getenv(holdEnv); p != "" {
		os.Exit(hold(p))
	}
	os.Exit(m.Run())
}

// peer is the test binary run as another user: it asks for the status,
// then for a reload, and prints each reply line.
func peer(path string) int {
	c, err := net.Dial("unix", path)
	if err != nil {
		fmt.Println("dial:", err)
		return 0
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(30 * time.Second))
	buf := make([]byte, 1<<20)
	for _, req := range []string{`{"request":"status"}`, `{"request":"reload"}`} {
		io.WriteString(c, req+"\n")
		n, err := c.Read(buf)
		if err != nil {
			fmt.Println("read:", err)
			return 0
		}
		os.Stdout.Write(buf[:n])
	}
	return 0
}

// decode parses a reply line into a map, so the test reads it as any
// other program would, by its keys.
func decode(t *testing.T, line string) map[string]any {
	t.Helper()
	var m map[string]any
	if err := json.Unmarshal([]byte(line), &m); err != nil {
		t.Fatalf("reply %q: %v", line, err)
	}
	return m
}

func field(m map[string]any, path ...string) any {
	var v any = m
	for _, k := range path {
		mm, ok := v.(map[string]any)
		if !ok {
			return nil
		}
		v = mm[k]
	}
	return v
}

// The local API, driven as another program would: a unix socket, one JSON
// object a line each way.
func TestLocalAPI(t *testing.T) {
	h := newHost(t)
	h.startReady()
	r := h.dialRaw()

	st := decode(t, r.ask(`{"request":"status"}`))
	if st["ok"] != true || field(st, "status", "state") != "ready" || field(st, "status", "xenstore", "connected") != true {
		t.Fatalf("status: %v", st)
	}
	mustContain(t, "status", fmt.Sprint(field(st, "status", "devices")), "busid:1-2", "action:attached", "domain:kiosk")

	ex := decode(t, r.ask(`{"request":"explain","busid":"1-2"}`))
	e0, _ := field(ex, "explain").([]any)
	if ex["ok"] != true || len(e0) != 1 {
		t.Fatalf("explain: %v", ex)
	}
	if d := e0[0].(map[string]any); d["action"] != "attach" || d["rule"] != "audio" || field(d, "target", "domain") != "kiosk" || field(d, "device", "busid") != "1-2" ||
		field(d, "device", "id") != "0d8c:0014" || field(d, "last", "action") != "attached" {
		t.Errorf("explain 1-2: %v", d)
	}
	if m := decode(t, r.ask(`{"request":"explain","busid":"9-9"}`)); m["ok"] != false || m["error_code"] != "not_found" {
		t.Errorf("explain of an absent device: %v", m)
	}
	if m := decode(t, r.ask(`{"request":"teleport"}`)); m["error_code"] != "bad_request" {
		t.Errorf("unknown request: %v", m)
	}
	if m := decode(t, r.ask(`not json`)); m["error_code"] != "bad_request" {
		t.Errorf("not JSON: %v", m)
	}
	if field(st, "status", "uptime_ms") == nil || field(st, "status", "stats", "hooks_dropped") != 0.0 {
		t.Errorf("status: %v", st)
	}
}

// Reloads through the API, refused and taken, and a watcher that sees the
// decisions they make.
func TestLocalAPIReloadAndWatch(t *testing.T) {
	h := newHost(t)
	h.startReady()
	r := h.dialRaw()
	loaded := field(decode(t, r.ask(`{"request":"status"}`)), "status", "policy", "loaded_at")
	w := h.dialRaw()
	if m := decode(t, w.ask(`{"request":"watch"}`)); m["ok"] != true || m["watching"] != true {
		t.Fatalf("watch: %v", m)
	}
	// A refused reload leaves the policy, and its load time, as they were.
	h.writePolicy("[[rule]]\nname = \"x\"\naction = \"teleport\"\n")
	if m := decode(t, r.ask(`{"request":"reload"}`)); m["error_code"] != "policy_refused" || !strings.Contains(fmt.Sprint(m["error"]), "teleport") {
		t.Errorf("bad reload: %v", m)
	}
	st := decode(t, r.ask(`{"request":"status"}`))
	if field(st, "status", "policy", "loaded_at") != loaded || field(st, "status", "policy", "rules") != 1.0 ||
		!strings.Contains(fmt.Sprint(field(st, "status", "policy", "reload_error")), "teleport") {
		t.Errorf("status after a refused reload: %v", field(st, "status", "policy"))
	}
	h.writePolicy(goodPolicy + "[[rule]]\nname = \"mice\"\naction = \"deny\"\nmatch = { id = \"046d:c077\" }\n")
	if m := decode(t, r.ask(`{"request":"reload"}`)); m["ok"] != true || field(m, "reload", "rules") != 2.0 || field(m, "reload", "file") != h.cfg.PolicyPath {
		t.Errorf("reload: %v", m)
	}
	for {
		d := decode(t, w.line())
		if field(d, "decision", "rule") == "mice" {
			if field(d, "decision", "action") != "denied" || field(d, "decision", "busid") == nil {
				t.Errorf("decision: %v", d)
			}
			break
		}
	}
	st = decode(t, r.ask(`{"request":"status"}`))
	if field(st, "status", "policy", "loaded_at") == loaded || field(st, "status", "policy", "reload_error") != nil {
		t.Errorf("status after a reload: %v", field(st, "status", "policy"))
	}
}

// While xenstored is not there, the agent waits for it and says so.
func TestAPIWhileWaitingForXenstored(t *testing.T) {
	h := newHost(t)
	h.cfg.Xenstore = filepath.Join(h.dir, "no-xenstored")
	waiting := h.log.await("xenstore: ")
	h.start()
	h.await(waiting, "xenstore:")
	mustContain(t, "the log", h.log.String(), `"message":"xenstore: stat `+h.cfg.Xenstore+`: no such file or directory, retrying in 50ms"`)
	st := decode(t, h.dialRaw().ask(`{"request":"status"}`))
	if field(st, "status", "state") != "waiting_for_xenstored" || !strings.Contains(fmt.Sprint(field(st, "status", "xenstore", "last_error")), "no-xenstored") {
		t.Errorf("status: %v", st)
	}
}

// A member of the control group, by its primary or a supplementary
// group, may read, not reload; anyone else cannot connect. The peer is
// this test binary run as nobody.
func TestAPIPeerCredentials(t *testing.T) {
	h := newHost(t)
	bin := h.withPeers(t)
	h.startReady()
	asNobody := func(gid uint32, groups ...uint32) string {
		cmd := exec.Command(bin)
		cmd.Env = []string{peerEnv + "=" + filepath.Join(h.cfg.StateDir, ControlSocket)}
		cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: 65534, Gid: gid, Groups: append([]uint32{}, groups...)}}
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("peer: %v\n%s", err, out)
		}
		return string(out)
	}
	out := asNobody(65534)
	lines := strings.Split(strings.TrimSpace(out), "\n")
	if len(lines) != 2 || decode(t, lines[0])["ok"] != true || decode(t, lines[1])["error_code"] != "forbidden" {
		t.Errorf("a member of the group:\n%s", out)
	}
	// The group as a supplementary one (SupplementaryGroups= of a unit).
	out = asNobody(12345, 12346, 65534)
	lines = strings.Split(strings.TrimSpace(out), "\n")
	if len(lines) != 2 || decode(t, lines[0])["ok"] != true || decode(t, lines[1])["error_code"] != "forbidden" {
		t.Errorf("a supplementary member of the group:\n%s", out)
	}
	if out := asNobody(12345, 12346); !strings.Contains(out, "permission denied") {
		t.Errorf("a stranger:\n%s", out)
	}
	fi, err := os.Stat(filepath.Join(h.cfg.StateDir, ControlSocket))
	if err != nil || fi.Mode().Perm() != 0o660 {
		t.Errorf("the socket: %v %v", fi.Mode(), err)
	}
}

// The read-only group's clients, however many, cannot keep root out:
// with every shared slot held by a member's idle connection, root still
// reloads (systemctl reload goes through the socket).
func TestAPIGroupCannotFillRootsSlots(t *testing.T) {
	defer func(n int) { maxClients = n }(maxClients)
	maxClients = 3
	h := newHost(t)
	bin := h.withPeers(t)
	h.startReady()
	for range maxClients {
		cmd := exec.CommandContext(t.Context(), bin)
		cmd.Env = []string{holdEnv + "=" + filepath.Join(h.cfg.StateDir, ControlSocket)}
		cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: 65534, Gid: 65534}}
		out, err := cmd.StdoutPipe()
		if err != nil {
			t.Fatal(err)
		}
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
		// Connected: the agent accepts in order, so this peer has a slot
		// before root's connection is taken.
		line, _ := bufio.NewReader(out).ReadString('\n')
		if line != "connected\n" {
			t.Fatalf("a member's client: %q", line)
		}
	}
	for range 2 {
		r := h.dialRaw()
		if m := decode(t, r.ask(`{"request":"reload"}`)); m["ok"] != true {
			t.Fatalf("root's reload with the group's clients holding every shared slot: %v", m)
		}
	}
}

// withPeers makes h's control group nogroup, with its state directory
// where nobody can reach it, and returns a copy of the test binary that
// nobody may run as a peer. It skips without root or nogroup.
func (h *host) withPeers(t *testing.T) string {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root, to run a peer as another user")
	}
	if g, err := user.LookupGroup("nogroup"); err != nil || g.Gid != "65534" {
		t.Skipf("needs the group nogroup (65534), as Debian has it: %v", err)
	}
	shared, err := os.MkdirTemp("", "usbhotplugd-peer") // not t.TempDir: its parent is 0700
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(shared) })
	if err := os.Chmod(shared, 0o755); err != nil {
		t.Fatal(err)
	}
	h.cfg.StateDir, h.cfg.ControlGroup = filepath.Join(shared, "state"), "nogroup"
	bin := filepath.Join(shared, "peer.test")
	if err := copyFile(bin, os.Args[0]); err != nil {
		t.Fatal(err)
	}
	return bin
}

func copyFile(dst, src string) error {
	b, err := os.ReadFile(src)
	if err != nil {
		return err
	}
	return os.WriteFile(dst, b, 0o755)
}

// The agent logs what check warns of, at its start and at each reload it
// takes: a class given per interface matches almost nothing.
func TestPolicyWarningsAreLogged(t *testing.T) {
	h := newHost(t)
	h.writePolicy("[[rule]]\nname = \"no-storage\"\naction = \"deny\"\nmatch = { class = \"storage\" }\n" + goodPolicy)
	h.startReady()
	mustContain(t, "the log at start", h.log.String(),
		`"level":"warn","policy":"`+h.cfg.PolicyPath+`","message":"policy: `+h.cfg.PolicyPath+`:4: rule 1 \"no-storage\": match.class = \"storage\" matches almost no device`,
		`write interface = \"storage\" instead`)
	h.writePolicy(goodPolicy + "[[rule]]\nname = \"no-printers\"\naction = \"deny\"\nmatch = { class = \"printer\" }\n")
	if m := decode(t, h.dialRaw().ask(`{"request":"reload"}`)); m["ok"] != true {
		t.Fatalf("reload: %v", m)
	}
	mustContain(t, "the log after the reload", h.log.String(), `:9: rule 2 \"no-printers\": match.class = \"printer\" matches almost no device`)
}
