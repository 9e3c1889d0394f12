package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"reflect"
	"regexp"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/usbhotplugd/usbhotplugd/internal/agent"
	"github.com/usbhotplugd/usbhotplugd/internal/daemon"
	"github.com/usbhotplugd/usbhotplugd/internal/fakekernel"
	"github.com/usbhotplugd/usbhotplugd/internal/xenstore/xenstoretest"
)

// The kinds of a JSON value.
const (
	kString = "string"
	kNumber = "number"
	kBool   = "bool"
	kObject = "object"
	kArray  = "array"
)

// A jsonKey is what one key of the JSON outputs names, and the form of its
// values: kind, and for strings a pattern they match.
type jsonKey struct {
	what string
	kind string
	form *regexp.Regexp
}

var (
	busidForm      = regexp.MustCompile(`^(usb[0-9]+|[0-9]+-[0-9]+(\.[0-9]+)*)$`)
	idForm         = regexp.MustCompile(`^[0-9a-f]{4}:[0-9a-f]{4}$`)
	hex4Form       = regexp.MustCompile(`^[0-9a-f]{4}$`)
	hex2Form       = regexp.MustCompile(`^[0-9a-f]{2}$`)
	ruleSourceForm = regexp.MustCompile(`^.+:[0-9]+$`)
	timeForm       = regexp.MustCompile(`^[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9:.]+(Z|[+-][0-9]{2}:[0-9]{2})$`)
)

// jsonVocabulary is every key of every JSON the commands print, the agent
// answers on its control socket or writes (status.json, the ownership
// records in xenstore): one key per thing, the same key for it in every
// output, with one form of value. Times are RFC 3339 under a key ending
// in _at, durations milliseconds under a key ending in _ms.
//
// A key may stand in several objects for the same thing (busid in a
// device, an audit record, a port). name, type, state, version and ports
// are said of the object they are in.
//
// Not in it: the traces record writes and replay reads (the kernel's
// uevents in its own words: devpath, subsystem, seqnum, env), and the
// JSON log, whose envelope is zerolog's (time, level, message).
var jsonVocabulary = map[string]jsonKey{
	// A device (devices --json, an explanation's device, a port, an audit record).
	"busid":                       {"a device's busid: its physical port (1-1.6), as xl's busid=", kString, busidForm},
	"bus":                         {"a device's bus number, as match.bus and xl's hostbus=", kNumber, nil},
	"addr":                        {"a device's address on its bus, as match.addr and xl's hostaddr=", kNumber, nil},
	"id":                          {"a device's vendor:product, in hex as lsusb prints it", kString, idForm},
	"vendor":                      {"a device's vendor id, hex", kString, hex4Form},
	"product":                     {"a device's product id, hex", kString, hex4Form},
	"bcd_device":                  {"a device's release number, hex", kString, hex4Form},
	"class":                       {"a device's or an interface's class, hex", kString, hex2Form},
	"sub_class":                   {"a device's or an interface's subclass, hex", kString, hex2Form},
	"protocol":                    {"a device's or an interface's protocol, hex", kString, hex2Form},
	"serial":                      {"a device's serial string, exact", kString, nil},
	"manufacturer":                {"a device's manufacturer string, exact", kString, nil},
	"product_name":                {"a device's product string, exact", kString, nil},
	"speed_mbps":                  {"a device's speed in Mbit/s, as the kernel prints it (\"1.5\", \"480\")", kString, regexp.MustCompile(`^([0-9]+(\.[0-9]+)?)?$`)},
	"version":                     {"a device's USB version (2.00); the agent's build (status)", kString, nil},
	"ports":                       {"the ports below the root hub (a device: 1.6, sysfs's devpath); a controller's ports (usb-list)", "", nil},
	"port_path":                   {"a device's socket named for good (udev's ID_PATH), as match.port_path", kString, nil},
	"port_path_with_usb_revision": {"port_path with the root hub's USB revision", kString, nil},
	"hash":                        {"a device's descriptor hash, as match.hash and USBGuard's", kString, nil},
	"parent_hash":                 {"the hub's descriptor hash, as match.parent_hash", kString, nil},
	"parent":                      {"the busid of a device's hub", kString, busidForm},
	"num_configs":                 {"a device's number of configurations", kNumber, nil},
	"num_interfaces":              {"a device's number of interfaces", kNumber, nil},
	"removable":                   {"removable, fixed or unknown, as sysfs says", kString, nil},
	"unconfigured":                {"the kernel has not configured the device yet (no interfaces)", kBool, nil},
	"authorized":                  {"drivers may probe a device or an interface", kBool, nil},
	"interfaces":                  {"a device's interfaces", kArray, nil},
	"name":                        {"the name of what the object is: an interface (1-1.6:1.0), a metric family; a device's strings (an audit record)", kString, nil},
	"number":                      {"an interface's number", kNumber, nil},
	"driver":                      {"the driver bound to an interface", kString, nil},

	// A guest, its controllers and ports.
	"domain":        {"a guest by its name, as the policy's target.domain", kString, nil},
	"domid":         {"a guest by its domain id", kNumber, nil},
	"controller":    {"a guest's USB controller by its devid, as xl's controller=", kNumber, nil},
	"port":          {"a port of a guest's controller, from 1, as xl's port=", kNumber, nil},
	"controllers":   {"a guest's controllers (usb-list)", kArray, nil},
	"type":          {"the kind of what the object is: a controller's (pv, qusb, devicemodel), a metric family's", kString, nil},
	"backend_domid": {"the domain serving a controller", kNumber, nil},
	"state":         {"the agent's state (status); a controller's xenbus state, a number (usb-list)", "", nil},
	"usb_version":   {"a controller's USB version", kNumber, nil},
	"present":       {"the device a port names is on the host", kBool, nil},
	"create":        {"the controller an attach creates when no port is free", kObject, nil},
	"port_count":    {"the ports of a controller to create", kNumber, nil},
	"drivers":       {"the dom0 drivers an attach took a device's interfaces from, by interface (ownership records)", kObject, nil},

	// A decision: the policy's (explain) and the agent's (audit records).
	"device":                  {"the device explained, as devices --json prints it", kObject, nil},
	"action":                  {"what the policy does (explain: attach, deny, ...) or what the agent did (an audit record: attached, denied, ...)", kString, nil},
	"rule":                    {"a rule by its name", kString, nil},
	"rule_index":              {"a rule by its place in the order rules are tried, from 1", kNumber, nil},
	"rule_source":             {"where a rule is written: FILE:LINE", kString, ruleSourceForm},
	"guard":                   {"the built-in guard that decided (hub, in-use)", kString, nil},
	"target":                  {"where an attach rule sends a device", kObject, nil},
	"reason":                  {"why, in words: a decision, a rule skipped, a controller skipped", kString, nil},
	"twins":                   {"the busids of the twins a rule cannot tell a device from", kArray, nil},
	"exec":                    {"the command a rule runs after its decisions", kArray, nil},
	"skipped":                 {"the rules before the deciding one that did not match", kArray, nil},
	"last":                    {"the agent's last decision for a device (an audit record)", kObject, nil},
	"decided_at":              {"when a decision was made", kString, timeForm},
	"trigger":                 {"what asked for the pass that decided", kString, nil},
	"deauthorized_interfaces": {"a device's interfaces no driver may probe", kArray, nil},
	"failed_step":             {"the step that failed", kString, nil},
	"duration_ms":             {"how long a decision took", kNumber, nil},
	"dry_run":                 {"decided, nothing changed", kBool, nil},

	// The agent's status.
	"pid":                 {"the agent's process id", kNumber, nil},
	"started_at":          {"when the agent (or the replayed trace) started", kString, timeForm},
	"uptime_ms":           {"how long the agent has run", kNumber, nil},
	"xenstore":            {"the agent's connection to xenstored", kObject, nil},
	"connected":           {"the agent is connected to xenstored", kBool, nil},
	"last_error":          {"why the last dial failed or the connection was lost", kString, nil},
	"retry_in_ms":         {"when the next dial is", kNumber, nil},
	"reconnects":          {"how many times the agent reconnected", kNumber, nil},
	"policy":              {"the policy in force", kObject, nil},
	"file":                {"the policy file the agent reads", kString, nil},
	"rules":               {"how many rules the policy has", kNumber, nil},
	"loaded_at":           {"when the policy in force was loaded", kString, timeForm},
	"reload_error":        {"why the last reload was refused", kString, nil},
	"reload_refused_at":   {"when the last reload was refused", kString, timeForm},
	"stats":               {"the agent's counters", kObject, nil},
	"events":              {"kernel events read", kNumber, nil},
	"passes":              {"passes made", kNumber, nil},
	"hooks_run":           {"rule commands run", kNumber, nil},
	"hooks_dropped":       {"rule commands dropped, their queue full", kNumber, nil},
	"overruns":            {"kernel event overruns", kNumber, nil},
	"refused_events":      {"kernel events that failed validation", kNumber, nil},
	"devices_updated_at":  {"when the last decision changed devices", kString, timeForm},
	"devices":             {"each device's last decision (audit records)", kArray, nil},
	"skipped_controllers": {"guests' controllers the agent cannot use", kArray, nil},

	// The control socket's requests and answers.
	"request":    {"what a client asks", kString, nil},
	"ok":         {"the request was served", kBool, nil},
	"error":      {"why a request was refused", kString, nil},
	"error_code": {"why a request was refused, as a code", kString, nil},
	"status":     {"the agent's status", kObject, nil},
	"explain":    {"the explanation of each present device", kArray, nil},
	"reload":     {"the policy a reload put in force", kObject, nil},
	"watching":   {"watch is acknowledged", kBool, nil},
	"decision":   {"one decision, after watch (an audit record)", kObject, nil},
	"metrics":    {"the agent's metric families", kArray, nil},
	"help":       {"a metric family's help", kString, nil},
	"labels":     {"a metric family's label names", kArray, nil},
	"series":     {"a metric family's series", kArray, nil},
	"values":     {"a series' label values", kArray, nil},
	"value":      {"a series' value", kNumber, nil},
	"histogram":  {"a histogram family's buckets", kObject, nil},
	"bounds":     {"a histogram's bucket bounds", kArray, nil},
	"cumulative": {"a histogram's counts at or below each bound", kArray, nil},
	"sum":        {"a histogram's sum", kNumber, nil},
	"count":      {"a histogram's count", kNumber, nil},

	// replay --json.
	"timeline":  {"a replay's lines", kArray, nil},
	"at_ms":     {"a replay line's time since started_at", kNumber, nil},
	"text":      {"a replay line as the text output prints it", kString, nil},
	"audit":     {"a replay line's audit record", kObject, nil},
	"lists":     {"each guest's controllers (usb-list --json's), by name", kObject, nil},
	"list_text": {"each guest's xl usb-list text, by name", kObject, nil},
	"domains":   {"the guests' names, in start order", kArray, nil},
}

// retiredKeys are other spellings of things that have a key: those the
// outputs once used, xl's and sysfs's, and the obvious others. None is to
// be used.
var retiredKeys = map[string]string{
	"busnum": "bus", "devnum": "addr", "hostbus": "bus", "hostaddr": "addr",
	"devid": "controller", "ctrl": "controller",
	"time": "decided_at", "start": "started_at", "updated": "devices_updated_at",
	"why": "reason", "index": "rule_index", "line": "rule_source", "rule_at": "rule_source",
	"domain_name": "domain", "domain_id": "domid", "vid": "vendor",
	"duration": "duration_ms", "uptime": "uptime_ms",
}

// dataKeys hold objects whose keys are names (of guests, interfaces), not
// vocabulary.
var dataKeys = map[string]bool{"lists": true, "list_text": true, "drivers": true}

func TestJSONVocabulary(t *testing.T) {
	for k, v := range jsonVocabulary {
		if r, ok := retiredKeys[k]; ok {
			t.Errorf("%s is in the vocabulary and retired (spelled %s)", k, r)
		}
		if strings.HasSuffix(k, "_at") != (v.form == timeForm) {
			t.Errorf("%s: a time is RFC 3339 under a key ending in _at, and only a time", k)
		}
		if strings.HasSuffix(k, "_ms") && v.kind != kNumber {
			t.Errorf("%s: milliseconds are a number", k)
		}
		if !snake.MatchString(k) {
			t.Errorf("%s is not snake_case", k)
		}
	}
	// Each thing once: no two keys say the same.
	seen := map[string]string{}
	for k, v := range jsonVocabulary {
		if o, dup := seen[v.what]; dup {
			t.Errorf("%s and %s both name %q", k, o, v.what)
		}
		seen[v.what] = k
	}
}

// jsonFindings are what checkJSON found, each said once: by output and
// key path, array indices left out.
type jsonFindings map[string]bool

var index = regexp.MustCompile(`\[[0-9]+\]`)

func (f jsonFindings) add(out, path, format string, a ...any) {
	f[out+": "+index.ReplaceAllString(path, "[]")+": "+fmt.Sprintf(format, a...)] = true
}

func (f jsonFindings) report(t *testing.T) {
	t.Helper()
	var msgs []string
	for m := range f {
		msgs = append(msgs, m)
	}
	sort.Strings(msgs)
	for _, m := range msgs {
		t.Error(m)
	}
}

// checkJSON checks every key of v (found in output out at path) against
// the vocabulary, and the form of its value.
func (f jsonFindings) checkJSON(out, path string, v any) {
	switch v := v.(type) {
	case []any:
		for i, e := range v {
			f.checkJSON(out, fmt.Sprintf("%s[%d]", path, i), e)
		}
	case map[string]any:
		_, hasPort := v["port"]
		_, hasCtrl := v["controller"]
		_, hasDomain := v["domain"]
		_, hasDomid := v["domid"]
		if hasPort && !hasCtrl && (hasDomain || hasDomid) {
			f.add(out, path, "names a guest's port but not its controller")
		}
		for k, e := range v {
			at := path + "." + k
			key, ok := jsonVocabulary[k]
			switch {
			case retiredKeys[k] != "":
				f.add(out, at, "%s is spelled %s", k, retiredKeys[k])
				continue
			case !ok:
				f.add(out, at, "key %q is not in jsonVocabulary: if it names a thing that has a key, use that key; else add it, with what it names", k)
				continue
			}
			if key.kind != "" && kindOf(e) != key.kind {
				f.add(out, at, "a %s (%v), not a %s", kindOf(e), e, key.kind)
			}
			if s, isStr := e.(string); isStr {
				if key.form != nil && !key.form.MatchString(s) {
					f.add(out, at, "%q is not of the form %s", s, key.form)
				}
				if key.form != timeForm && timeForm.MatchString(s) {
					f.add(out, at, "%q: a time under a key that does not end in _at", s)
				}
			}
			if k == "twins" {
				for _, b := range e.([]any) {
					if s, _ := b.(string); !busidForm.MatchString(s) {
						f.add(out, at, "twin %v is not a busid", b)
					}
				}
			}
			if dataKeys[k] {
				if m, isMap := e.(map[string]any); isMap {
					for _, x := range m {
						f.checkJSON(out, at+"[NAME]", x)
					}
				}
				continue
			}
			f.checkJSON(out, at, e)
		}
	}
}

func kindOf(v any) string {
	switch v.(type) {
	case string:
		return kString
	case float64:
		return kNumber
	case bool:
		return kBool
	case map[string]any:
		return kObject
	case []any:
		return kArray
	}
	return "null"
}

// decodeAll reads every JSON value of b (one, or JSON lines).
func decodeAll(t *testing.T, out string, b []byte) []any {
	t.Helper()
	dec := json.NewDecoder(bytes.NewReader(b))
	var vs []any
	for dec.More() {
		var v any
		if err := dec.Decode(&v); err != nil {
			t.Fatalf("%s: not JSON: %v\n%s", out, err, b)
		}
		vs = append(vs, v)
	}
	if len(vs) == 0 {
		t.Fatalf("%s: no JSON", out)
	}
	return vs
}

// ask sends the agent's control socket one request and returns its answer
// as written.
func ask(t *testing.T, state, req string) []byte {
	t.Helper()
	c, err := net.Dial("unix", filepath.Join(state, daemon.ControlSocket))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if _, err := c.Write([]byte(req + "\n")); err != nil {
		t.Fatal(err)
	}
	line, err := bufio.NewReader(c).ReadBytes('\n')
	if err != nil {
		t.Fatalf("%s: %v", req, err)
	}
	return line
}

const vocabularyPolicy = `[domain.kiosk]
usbctrl = ["version=2, ports=4"]

[[rule]]
name = "badge"
action = "attach"
match = { id = "0c27:3bfa" }
target = { domain = "kiosk" }

[[rule]]
name = "audio"
action = "attach"
match = { id = "0d8c:0014" }
target = { domain = "kiosk", controller = 0, port = 2 }
exec = ["/bin/true"]

[[rule]]
name = "mouse-a"
action = "attach"
match = { serial = "MOUSE-A" }
target = { domain = "kiosk", type = "pv", version = 2, ports = 4 }

[[rule]]
name = "stick"
action = "block"
match = { id = "0781:5567" }

[[rule]]
name = "rest"
action = "deny"
`

// Every JSON output, from a running agent with devices attached and
// others denied, blocked and refused, spells each thing as
// jsonVocabulary does; and explain --json prints what the control socket
// answers for the same host and policy.
func TestJSONOutputsOneSpelling(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	s := kioskStore(ctx, t, xenstoretest.KindXenstored)
	dir, root, _ := denyAllHost(t)
	if err := fakekernel.AddDriver(root, "usbback"); err != nil {
		t.Fatal(err)
	}
	pol := writeFile(t, dir, "vocabulary.toml", vocabularyPolicy)
	state := filepath.Join(dir, "state")
	noUevents(t)
	fakeKernelWrites(t, root)
	runCtx, stop := context.WithCancel(ctx)
	ready := &lineWatch{want: `"message":"ready`, seen: make(chan struct{})}
	done := make(chan int, 1)
	go func() {
		done <- run(runCtx, []string{"run", "--policy", pol, "--state-dir", state, "--xenstore", s.SocketPath(), "--sysfs", root, "--log-format", "json"}, ready, ready)
	}()
	defer func() {
		stop()
		<-done
	}()
	select {
	case <-ready.seen:
	case <-ctx.Done():
		t.Fatalf("not ready:\n%s", ready.String())
	}

	outputs := map[string][]byte{}
	cmd := func(args ...string) []byte {
		t.Helper()
		code, out, errs := runCmd(t, args...)
		if code != 0 {
			t.Fatalf("%s: exit %d %s", strings.Join(args, " "), code, errs)
		}
		return []byte(out)
	}
	mountinfo := writeFile(t, dir, "mountinfo", "")
	outputs["devices --json"] = cmd("devices", "--json", "--sysfs", root)
	outputs["devices --json (a real host's tree)"] = cmd("devices", "--json", "--sysfs", realTree)
	outputs["explain --json"] = cmd("explain", "--json", "--policy", pol, "--sysfs", root, "--mountinfo", mountinfo)
	outputs["status --json"] = cmd("status", "--json", "--state-dir", state)
	outputs["usb-list --json"] = cmd("usb-list", "--json", "--xenstore", s.SocketPath(), "--sysfs", root, "kiosk")
	outputs["replay --json"] = cmd("replay", "--json")
	for _, req := range []string{`{"request":"status"}`, `{"request":"explain"}`, `{"request":"explain","busid":"1-2"}`, `{"request":"explain","busid":"9-9"}`,
		`{"request":"metrics"}`, `{"request":"nonsense"}`, `{"request":"reload"}`} {
		outputs["control socket "+req] = ask(t, state, req)
	}
	var err error
	if outputs["status.json"], err = os.ReadFile(filepath.Join(state, daemon.StatusFile)); err != nil {
		t.Fatal(err)
	}
	xs := s.Dial(t)
	names, err := xs.Directory(ctx, agent.RecordRoot)
	if err != nil || len(names) == 0 {
		t.Fatalf("ownership records: %v %v", names, err)
	}
	for _, n := range names {
		b, err := xs.Read(ctx, agent.RecordRoot+"/"+n)
		if err != nil {
			t.Fatal(err)
		}
		outputs["ownership record "+n] = b
	}

	// watch, on the socket and by the command, while a reload makes
	// decisions.
	raw, err := net.Dial("unix", filepath.Join(state, daemon.ControlSocket))
	if err != nil {
		t.Fatal(err)
	}
	defer raw.Close()
	if _, err := raw.Write([]byte(`{"request":"watch"}` + "\n")); err != nil {
		t.Fatal(err)
	}
	rawLines := bufio.NewReader(raw)
	ack, err := rawLines.ReadBytes('\n')
	if err != nil {
		t.Fatal(err)
	}
	wctx, wstop := context.WithCancel(ctx)
	wout := &lineWatch{want: `"rule":"stick2"`, seen: make(chan struct{})}
	werr := &lineWatch{want: "watching the agent's decisions", seen: make(chan struct{})}
	wdone := make(chan int, 1)
	go func() { wdone <- run(wctx, []string{"watch", "--state-dir", state}, wout, werr) }()
	select {
	case <-werr.seen:
	case <-ctx.Done():
		t.Fatalf("watch did not start: %s", werr.String())
	}
	writeFile(t, dir, "vocabulary.toml", strings.Replace(vocabularyPolicy, `name = "stick"`, `name = "stick2"`, 1))
	cmd("reload", "--state-dir", state)
	select {
	case <-wout.seen:
	case <-ctx.Done():
		t.Fatalf("watch saw no decision:\n%s", wout.String())
	}
	wstop()
	<-wdone
	outputs["watch"] = []byte(wout.String())
	decision, err := rawLines.ReadBytes('\n')
	if err != nil {
		t.Fatal(err)
	}
	outputs[`control socket {"request":"watch"}`] = append(ack, decision...)

	found := jsonFindings{}
	for name, b := range outputs {
		for _, v := range decodeAll(t, name, b) {
			found.checkJSON(name, "", v)
		}
	}
	found.report(t)
	// The vocabulary's things all show up somewhere, or the table and the
	// fixtures have drifted apart.
	used := map[string]bool{}
	for _, b := range outputs {
		for _, v := range decodeAll(t, "", b) {
			keysOf(v, used)
		}
	}
	var unused []string
	for k := range jsonVocabulary {
		if !used[k] && !neverHere[k] {
			unused = append(unused, k)
		}
	}
	sort.Strings(unused)
	if len(unused) > 0 {
		t.Errorf("keys of the vocabulary no output here has (add them to neverHere, or make the fixtures show them): %v", unused)
	}

	// explain --json and the control socket: one shape, the same values
	// for the same host and policy (the socket adds the agent's last
	// decision). The policy was reloaded meanwhile: explain it again.
	cli := decodeAll(t, "explain --json", cmd("explain", "--json", "--policy", pol, "--sysfs", root, "--mountinfo", mountinfo))[0].([]any)
	sock := decodeAll(t, "explain", ask(t, state, `{"request":"explain"}`))[0].(map[string]any)["explain"].([]any)
	if len(cli) != len(sock) || len(cli) < 9 {
		t.Fatalf("explain --json has %d devices, the socket %d", len(cli), len(sock))
	}
	lasts := 0
	for i := range cli {
		c, s := cli[i].(map[string]any), sock[i].(map[string]any)
		if s["last"] != nil {
			lasts++
		}
		delete(s, "last")
		if !reflect.DeepEqual(c, s) {
			cb, _ := json.Marshal(c)
			sb, _ := json.Marshal(s)
			t.Errorf("explain --json and the control socket differ:\n%s\n%s", cb, sb)
		}
	}
	if lasts < len(sock)-1 { // the root hub is never decided
		t.Errorf("%d of %d explanations on the socket have the agent's last decision", lasts, len(sock))
	}
}

// neverHere are keys of the vocabulary the fixtures above do not make:
// errors and states a healthy agent on them never reaches. The type test
// (TestJSONSpelling) still finds them in the types.
var neverHere = map[string]bool{
	"last_error": true, "retry_in_ms": true, "reload_error": true, "reload_refused_at": true,
	"failed_step": true, "skipped_controllers": true, "unconfigured": true,
	"request": true, // what a client writes
}

func keysOf(v any, into map[string]bool) {
	switch v := v.(type) {
	case []any:
		for _, e := range v {
			keysOf(e, into)
		}
	case map[string]any:
		for k, e := range v {
			into[k] = true
			if dataKeys[k] {
				if m, ok := e.(map[string]any); ok {
					for _, x := range m {
						keysOf(x, into)
					}
				}
				continue
			}
			keysOf(e, into)
		}
	}
}
