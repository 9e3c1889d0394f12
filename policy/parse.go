package policy

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"slices"
	"strconv"
	"strings"

	"github.com/BurntSushi/toml"

	"github.com/usbhotplugd/usbhotplugd/internal/usbname"
)

// An IncludeFunc reads an included policy: name as written in the
// including file, from the file that includes it. It returns the name to
// use in errors and the content.
type IncludeFunc func(from, name string) (string, []byte, error)

// ParseFile reads the policy at path with its drop-ins, as Load does for
// this host.
func ParseFile(path string) (*Policy, error) {
	return Load(context.Background(), path, Options{})
}

// readInclude reads includes relative to the directory of the file that
// includes them.
func readInclude(from, name string) (string, []byte, error) {
	if !filepath.IsAbs(name) {
		name = filepath.Join(filepath.Dir(from), name)
	}
	b, err := readRegular(name)
	return name, b, err
}

// Parse reads a policy from data; name is used in errors. include reads
// included files; when it is nil, an include is an error. The error, if
// any, is an Errors listing every problem found, each positioned.
func Parse(name string, data []byte, include IncludeFunc) (*Policy, error) {
	return ParseContext(context.Background(), name, data, include)
}

// ParseContext is Parse that stops when ctx is done, with an error that
// wraps ctx.Err().
func ParseContext(ctx context.Context, name string, data []byte, include IncludeFunc) (*Policy, error) {
	ps := newParseState(ctx, name, include)
	ps.file(name, data, nil, false)
	return ps.finish()
}

func newParseState(ctx context.Context, name string, include IncludeFunc) *parseState {
	return &parseState{ctx: ctx, include: include, pol: &Policy{File: name, Domains: map[string]*Domain{}}, fileSeq: map[string]int{}}
}

// finish numbers the rules and checks what spans files.
func (ps *parseState) finish() (*Policy, error) {
	if err := ps.ctx.Err(); err != nil {
		return nil, fmt.Errorf("policy %s: %w", ps.pol.File, err)
	}
	seen := make(map[string]*Rule, len(ps.pol.Rules))
	for i, r := range ps.pol.Rules {
		r.Index = i + 1
		if r.Name == "" {
			continue // reported as missing or empty
		}
		if first, dup := seen[r.Name]; dup {
			ps.errs = append(ps.errs, &Error{File: r.File, Line: r.Line, Rule: r.Index, RuleName: r.Name, Key: "name", Kind: ErrDuplicate,
				Msg: fmt.Sprintf("rule %d at %s:%d has the same name", first.Index, first.File, first.Line)})
			continue
		}
		seen[r.Name] = r
	}
	ps.checkPins()
	// Error rule numbers are known only now that includes are expanded.
	for _, e := range ps.pending {
		e.err.Rule = e.rule.Index
		ps.errs = append(ps.errs, e.err)
	}
	if len(ps.errs) > 0 {
		slices.SortStableFunc(ps.errs, func(a, b *Error) int {
			if a.File != b.File {
				return ps.fileSeq[a.File] - ps.fileSeq[b.File]
			}
			return a.Line - b.Line
		})
		return nil, ps.errs
	}
	return ps.pol, nil
}

type parseState struct {
	ctx      context.Context
	include  IncludeFunc
	host     string // the host drop-ins are selected for
	allHosts bool   // read every drop-in, as for writing one
	pol      *Policy
	errs     Errors
	pending  []pendingErr      // errors about rules, numbered once all are known
	fileSeq  map[string]int    // order in which files were read, for sorting errors
	included map[string]string // cleaned path of each file included -> where ("file:line")
}

type pendingErr struct {
	rule *Rule
	err  *Error
}

// fileParser holds what one file's parse needs.
type fileParser struct {
	ps   *parseState
	name string
	ix   lineIndex
}

// file parses one file; dropIn says it is one of rules.d, which may
// select hosts.
func (ps *parseState) file(name string, data []byte, stack []string, dropIn bool) {
	if ps.ctx.Err() != nil {
		return
	}
	if _, ok := ps.fileSeq[name]; !ok {
		ps.fileSeq[name] = len(ps.fileSeq)
	}
	if line, err := checkShape(data); err != nil {
		ps.errs = append(ps.errs, &Error{File: name, Line: line, Kind: ErrLimit, Msg: err.Error()})
		return
	}
	src := string(data)
	var raw map[string]any
	if _, err := toml.Decode(src, &raw); err != nil {
		e := &Error{File: name, Kind: ErrSyntax, Msg: err.Error()}
		var pe toml.ParseError
		if errors.As(err, &pe) {
			e.Line, e.Msg = syntaxLine(data, pe.Position), pe.Message
		}
		ps.errs = append(ps.errs, e)
		return
	}
	fp := &fileParser{ps: ps, name: name, ix: indexLines(src)}
	if !fp.selected(raw, dropIn) {
		return
	}
	stack = append(slices.Clone(stack), filepath.Clean(name))
	for _, k := range fp.sortedKeys(raw, nil) {
		v := raw[k]
		switch k {
		case "hosts": // read by selected
		case "agent":
			fp.agent(v, dropIn || len(stack) > 1)
		case "rule":
			rules, ok := tables(v)
			if !ok {
				fp.fail(nil, []string{k}, "rule", ErrType, "rules are written as [[rule]] sections")
				continue
			}
			for i, m := range rules {
				if i%1024 == 0 && ps.ctx.Err() != nil {
					return
				}
				fp.rule(m, i, stack)
			}
		case "domain":
			doms, ok := v.(map[string]any)
			if !ok {
				fp.fail(nil, []string{k}, "domain", ErrType, "domains are written as [domain.NAME] sections")
				continue
			}
			for _, dn := range fp.sortedKeys(doms, []string{"domain"}) {
				fp.domain(dn, doms[dn])
			}
		default:
			fp.fail(nil, []string{k}, k, ErrUnknownKey, "unknown key: a policy has [agent], [[rule]] and [domain.NAME] sections%s", hint(k, topHints))
		}
	}
}

// syntaxLine is the line of a syntax error, counted from its byte offset:
// the library's own line is one short for some errors (a newline in a
// one-line string).
func syntaxLine(data []byte, p toml.Position) int {
	if p.Start < 0 || p.Start > len(data) || p.Start == 0 && p.Line > 1 {
		return p.Line
	}
	return 1 + bytes.Count(data[:p.Start], []byte{'\n'})
}

// sortedKeys orders a table's keys by where they were written, so errors
// come in file order.
func (fp *fileParser) sortedKeys(m map[string]any, path []string) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	n := fp.ix.node(path)
	line := func(k string) int {
		if c := n.kid(k); c != nil {
			return c.line
		}
		return n.line
	}
	slices.SortFunc(keys, func(a, b string) int {
		la, lb := line(a), line(b)
		if la != lb {
			return la - lb
		}
		return strings.Compare(a, b)
	})
	return keys
}

func tables(v any) ([]map[string]any, bool) {
	switch t := v.(type) {
	case []map[string]any:
		return t, true
	case []any:
		out := make([]map[string]any, len(t))
		for i, x := range t {
			m, ok := x.(map[string]any)
			if !ok {
				return nil, false
			}
			out[i] = m
		}
		return out, true
	}
	return nil, false
}

// fail records an error at path (for the line); r is the rule it is
// about, if any.
func (fp *fileParser) fail(r *Rule, path []string, key string, kind error, format string, a ...any) {
	e := &Error{File: fp.name, Line: fp.ix.line(path...), Key: key, Kind: kind, Msg: fmt.Sprintf(format, a...)}
	if r != nil {
		e.RuleName = r.Name
		fp.ps.pending = append(fp.ps.pending, pendingErr{r, e})
		return
	}
	fp.ps.errs = append(fp.ps.errs, e)
}

var topHints = keyHints{
	{"rules", "rule"}, {"domains", "domain"},
	{"include", "!an include is a rule of its own: [[rule]] include = \"FILE\""},
}

var ruleKeys = []string{"name", "description", "action", "match", "target", "duplicates", "takeover", "exec", "include"}

var ruleHints = keyHints{
	{"domain", "target.domain"}, {"to", "target.domain"}, {"id", "match.id"}, {"serial", "match.serial"},
	{"port", "match.port (the physical socket) or target.port (the guest port)"}, {"class", "match.class"},
	{"deny", `action = "deny"`}, {"allow", `action = "attach"`}, {"run", "exec"}, {"command", "exec"},
	{"hook", "exec"},
}

var matchKeys = []string{"bus", "addr", "id", "serial", "port", "port_path", "hash", "parent_hash", "class", "interface", "interfaces", "manufacturer", "product_name", "when"}

var matchHints = keyHints{
	{"product", "id (vendor:product) or product_name"}, {"vendor", "id (vendor:product) or manufacturer"},
	{"vid", "id"}, {"pid", "id"}, {"busid", "port"}, {"hostbus", "bus"}, {"hostaddr", "addr"},
	{"devnum", "addr"}, {"busnum", "bus"}, {"subclass", "interface = \"CLASS:SUBCLASS:PROTOCOL\""},
	{"protocol", "interface = \"CLASS:SUBCLASS:PROTOCOL\""}, {"interface_class", "interface"},
	{"name", "product_name"}, {"domain", "target.domain"}, {"on", "when"}, {"at", "when"},
	{"startup", `when = "present"`}, {"hotplug", `when = "plugged"`}, {"coldplug", `when = "present"`},
}

var targetKeys = []string{"domain", "type", "version", "ports", "controller", "port"}

var targetHints = keyHints{
	{"domid", "domain (by name)"}, {"name", "domain"}, {"ctrl", "controller"}, {"devid", "controller"},
	{"usbctrl", "the domain's [domain.NAME] usbctrl list"},
}

// keyHints are the keys a policy's author may have meant, by the key
// written: static lists, not maps, that cost nothing until an unknown key
// is met.
type keyHints []struct{ key, hint string }

// hint suggests the key meant; a hint that begins with "!" is a sentence
// of its own.
func hint(k string, hints ...keyHints) string {
	for _, hs := range hints {
		for _, h := range hs {
			switch {
			case h.key != k:
				continue
			case strings.HasPrefix(h.hint, "!"):
				return "; " + h.hint[1:]
			}
			return "; did you mean " + h.hint + "?"
		}
	}
	return ""
}

func (fp *fileParser) unknown(r *Rule, m map[string]any, path []string, prefix string, allowed []string, hints ...keyHints) {
	all := true
	for k := range m {
		all = all && slices.Contains(allowed, k)
	}
	if all {
		return // the usual case: no need to order the keys for errors
	}
	for _, k := range fp.sortedKeys(m, path) {
		if !slices.Contains(allowed, k) {
			fp.fail(r, append(slices.Clone(path), k), prefix+k, ErrUnknownKey, "unknown key (keys: %s)%s", strings.Join(allowed, ", "), hint(k, hints...))
		}
	}
}

func (fp *fileParser) rule(m map[string]any, i int, stack []string) {
	path := []string{"rule", strconv.Itoa(i)}
	r := &Rule{File: fp.name, Line: fp.ix.line(path...), Match: Match{Class: -1}, Duplicates: DupRefuse}
	s, nameOK := fp.str(r, m, path, "name", "")
	if nameOK {
		r.Name = s
	}
	if inc, ok := m["include"]; ok {
		fp.includeRule(r, m, path, inc, stack)
		return
	}
	fp.ps.pol.Rules = append(fp.ps.pol.Rules, r)
	fp.unknown(r, m, path, "", ruleKeys, ruleHints)
	if _, ok := m["name"]; !ok {
		fp.fail(r, path, "name", ErrMissing, "every rule has a name, so that logs and `explain` can say which one decided")
	} else if err := checkRuleName(r.Name); err != nil && nameOK { // a name of the wrong type is said once, above
		fp.fail(r, append(path, "name"), "name", ErrValue, "%v", err)
	}
	if s, ok := fp.str(r, m, path, "description", ""); ok {
		r.Description = s
	}
	if s, ok := fp.str(r, m, path, "action", ""); ok {
		switch s {
		case "attach":
			r.Action = Attach
		case "deny":
			r.Action = Deny
		case "block":
			r.Action = Block
		default:
			fp.fail(r, append(path, "action"), "action", ErrValue, "%q: the action is \"attach\", \"deny\" or \"block\"", s)
		}
	} else if _, present := m["action"]; !present {
		fp.fail(r, path, "action", ErrMissing, "every rule has an action: \"attach\", \"deny\" or \"block\"")
	}
	if v, ok := m["match"]; ok {
		mm, ok := v.(map[string]any)
		if !ok {
			fp.fail(r, append(path, "match"), "match", ErrType, "match is a table: [rule.match] or match = { ... }")
		} else {
			fp.match(r, mm, append(path, "match"))
		}
	}
	tv, hasTarget := m["target"]
	switch {
	case r.Action == Attach && !hasTarget:
		fp.fail(r, path, "target", ErrMissing, "an attach rule has a target: [rule.target] domain = \"NAME\"")
	case (r.Action == Deny || r.Action == Block) && hasTarget:
		fp.fail(r, append(path, "target"), "target", ErrValue, "a %s rule has no target", r.Action)
	case hasTarget:
		tm, ok := tv.(map[string]any)
		if !ok {
			fp.fail(r, append(path, "target"), "target", ErrType, "target is a table: [rule.target] or target = { domain = \"NAME\" }")
		} else {
			r.Target = fp.target(r, tm, append(path, "target"))
		}
	}
	if s, ok := fp.str(r, m, path, "duplicates", ""); ok {
		switch Duplicates(s) {
		case DupRefuse, DupFirst, DupAll:
			r.Duplicates = Duplicates(s)
		default:
			fp.fail(r, append(path, "duplicates"), "duplicates", ErrValue, "%q: duplicates is \"refuse\", \"first\" or \"all\"", s)
		}
		if r.Action == Deny || r.Action == Block {
			fp.fail(r, append(path, "duplicates"), "duplicates", ErrValue, "a %s rule acts on every match; duplicates is for attach rules", r.Action)
		}
	}
	if v, ok := m["takeover"]; ok {
		b, isBool := v.(bool)
		switch {
		case !isBool:
			fp.fail(r, append(path, "takeover"), "takeover", ErrType, "takeover is true or false, not %s", typeName(v))
		case r.Action == Deny || r.Action == Block:
			fp.fail(r, append(path, "takeover"), "takeover", ErrValue, "takeover is for attach rules")
		default:
			r.Takeover = b
		}
	}
	if v, ok := m["exec"]; ok {
		argv, err := execArgs(v)
		if err == nil {
			err = checkExec(argv)
		}
		if err != nil {
			fp.fail(r, append(path, "exec"), "exec", ErrValue, "%v", err)
		} else {
			r.Exec = argv
		}
	}
	if r.Match.Class == 9 {
		fp.fail(r, append(path, "match", "class"), "match.class", ErrNeverMatches, "hubs are never passed through (a built-in guard decides first), so this rule never decides")
	}
}

func (fp *fileParser) includeRule(r *Rule, m map[string]any, path []string, inc any, stack []string) {
	for _, k := range fp.sortedKeys(m, path) {
		if k != "include" && k != "name" && k != "description" {
			fp.fail(nil, append(path, k), k, ErrUnknownKey, "an include rule has only include (and name, description): the included file's rules stand in its place")
		}
	}
	name, ok := inc.(string)
	if !ok {
		fp.fail(nil, append(path, "include"), "include", ErrType, "include is a file name in quotes")
		return
	}
	if name == "" {
		fp.fail(nil, append(path, "include"), "include", ErrValue, "include names no file: give the path of the file whose rules stand here")
		return
	}
	if fp.ps.include == nil {
		fp.fail(nil, append(path, "include"), "include", ErrInclude, "%q: includes are not available here", name)
		return
	}
	// stack holds the including files, the main file first: the file
	// read now is at level len(stack).
	if len(stack) > MaxIncludeDepth {
		fp.fail(nil, append(path, "include"), "include", ErrInclude, "%q would be include level %d: includes nest at most %d deep (through %s)", name, len(stack), MaxIncludeDepth, strings.Join(stack, " → "))
		return
	}
	full, data, err := fp.ps.include(fp.name, name)
	if err != nil {
		fp.fail(nil, append(path, "include"), "include", ErrInclude, "%v", err)
		return
	}
	clean := filepath.Clean(full)
	if slices.Contains(stack, clean) {
		fp.fail(nil, append(path, "include"), "include", ErrInclude, "%q includes itself (through %s)", name, strings.Join(stack, " → "))
		return
	}
	// Twice, its rules would stand twice: every one a duplicate name.
	at := fmt.Sprintf("%s:%d", fp.name, fp.ix.line(append(path, "include")...))
	if first, ok := fp.ps.included[clean]; ok {
		fp.fail(nil, append(path, "include"), "include", ErrInclude, "%q is included already, at %s: its rules would stand twice; include it once", name, first)
		return
	}
	if fp.ps.included == nil {
		fp.ps.included = map[string]string{}
	}
	fp.ps.included[clean] = at
	fp.ps.file(full, data, stack, false)
}

// str reads an optional string; ok is false when absent or of another
// type (which is reported).
func (fp *fileParser) str(r *Rule, m map[string]any, path []string, key, prefix string) (string, bool) {
	v, present := m[key]
	if !present {
		return "", false
	}
	s, ok := v.(string)
	if !ok {
		fp.fail(r, append(slices.Clone(path), key), prefix+key, ErrType, "a string in quotes, not %s", typeName(v))
		return "", false
	}
	return s, true
}

// strs reads a string or a list of strings.
func (fp *fileParser) strs(r *Rule, m map[string]any, path []string, key, prefix, hintMsg string) ([]string, bool) {
	v, present := m[key]
	if !present {
		return nil, false
	}
	bad := func() ([]string, bool) {
		fp.fail(r, append(slices.Clone(path), key), prefix+key, ErrType, "a string in quotes or a list of them, not %s%s", typeName(v), hintMsg)
		return nil, false
	}
	switch t := v.(type) {
	case string:
		return []string{t}, true
	case []any:
		if len(t) == 0 {
			fp.fail(r, append(slices.Clone(path), key), prefix+key, ErrNeverMatches, "an empty list matches nothing; leave the key out to match any")
			return nil, false
		}
		out := make([]string, len(t))
		for i, x := range t {
			s, ok := x.(string)
			if !ok {
				fp.fail(r, append(slices.Clone(path), key, strconv.Itoa(i)), fmt.Sprintf("%s%s[%d]", prefix, key, i), ErrType, "a string in quotes, not %s%s", typeName(x), hintMsg)
				return nil, false
			}
			out[i] = s
		}
		return out, true
	}
	return bad()
}

func (fp *fileParser) integer(r *Rule, m map[string]any, path []string, key, prefix, hintMsg string) (int64, bool) {
	v, present := m[key]
	if !present {
		return 0, false
	}
	n, ok := v.(int64)
	if !ok {
		fp.fail(r, append(slices.Clone(path), key), prefix+key, ErrType, "a number, not %s%s", typeName(v), hintMsg)
		return 0, false
	}
	return n, true
}

func typeName(v any) string {
	switch v.(type) {
	case string:
		return "a string"
	case int64:
		return "a number"
	case float64:
		return "a float"
	case bool:
		return "a boolean"
	case []any, []map[string]any:
		return "a list"
	case map[string]any:
		return "a table"
	}
	return fmt.Sprintf("%T", v)
}

func (fp *fileParser) match(r *Rule, m map[string]any, path []string) {
	fp.unknown(r, m, path, "match.", matchKeys, matchHints, identityHints)
	at := func(k string) []string { return append(slices.Clone(path), k) }
	bad := func(k string, kind error, format string, a ...any) {
		fp.fail(r, at(k), "match."+k, kind, format, a...)
	}
	// badAt reports element i of a list (or the key, for a single string),
	// so the error names the element's line.
	badAt := func(k string, i int, kind error, format string, a ...any) {
		p := at(k)
		if _, list := m[k].([]any); list {
			p = append(p, strconv.Itoa(i))
		}
		fp.fail(r, p, "match."+k, kind, format, a...)
	}
	mt := &r.Match
	bus, hasBus := fp.integer(r, m, path, "bus", "match.", " (bus = 1, as lsusb's \"Bus 001\")")
	addr, hasAddr := fp.integer(r, m, path, "addr", "match.", " (addr = 6, as lsusb's \"Device 006\")")
	if hasBus && (bus < 1 || bus > 255) {
		bad("bus", ErrValue, "%d: bus numbers are 1 to 255", bus)
		hasBus = false
	}
	if hasAddr && (addr < 1 || addr > 127) {
		bad("addr", ErrValue, "%d: USB device addresses are 1 to 127", addr)
		hasAddr = false
	}
	_, busGiven := m["bus"]
	_, addrGiven := m["addr"]
	switch {
	case busGiven && !addrGiven:
		msg := "bus needs addr (as xl's hostbus needs hostaddr)"
		if hasBus {
			msg += fmt.Sprintf("; for every device on a bus use port = \"%d-*\"", bus)
		}
		bad("bus", ErrMissing, "%s", msg)
	case addrGiven && !busGiven:
		bad("addr", ErrMissing, "addr needs bus (as xl's hostaddr needs hostbus)")
	case hasBus && hasAddr:
		mt.Bus, mt.Addr = int(bus), int(addr)
	}
	const idHint = ` (write IDs as quoted strings, as lsusb prints them: id = "046d:c31c")`
	if ids, ok := fp.strs(r, m, path, "id", "match.", idHint); ok {
		for i, s := range ids {
			p, err := parseID(s)
			if err != nil {
				badAt("id", i, ErrValue, "%v", err)
				continue
			}
			mt.IDs = append(mt.IDs, p)
		}
	}
	if ss, ok := fp.strs(r, m, path, "serial", "match.", ""); ok {
		for i, s := range ss {
			if !MatchableSerial(s) {
				badAt("serial", i, ErrValue, "%q: a serial is a non-empty string as sysfs shows it, without control characters (usbhotplugd devices lists them)", s)
				continue
			}
			mt.Serials = append(mt.Serials, s)
		}
	}
	if ps, ok := fp.strs(r, m, path, "port", "match.", ""); ok {
		for i, s := range ps {
			if err := checkPortGlob(s); err != nil {
				kind := kindOf(err)
				if strings.HasPrefix(s, "usb") {
					kind = ErrNeverMatches
				}
				badAt("port", i, kind, "%v", err)
				continue
			}
			mt.Ports = append(mt.Ports, s)
		}
	}
	fp.identity(r, m, path)
	if v, present := m["class"]; present {
		if _, isStr := v.(string); !isStr {
			bad("class", ErrType, "a string in quotes, not %s (class = \"hid\" or \"03\")", typeName(v))
		} else if s, ok := fp.str(r, m, path, "class", "match."); ok {
			c, err := ParseClass(s)
			if err != nil {
				bad("class", ErrValue, "%v", err)
			} else {
				mt.Class = int(c)
				r.classLine = fp.ix.line(at("class")...)
			}
		}
	}
	if is, ok := fp.strs(r, m, path, "interface", "match.", ` (interface = "03:01:01" or "hid:*:*")`); ok {
		for i, s := range is {
			p, err := parseIfPattern(s)
			if err != nil {
				badAt("interface", i, ErrValue, "%v", err)
				continue
			}
			mt.Interfaces = append(mt.Interfaces, p)
		}
	}
	if s, ok := fp.str(r, m, path, "interfaces", "match."); ok {
		switch s {
		case "any":
		case "all":
			mt.AllIfaces = true
		default:
			bad("interfaces", ErrValue, "%q: interfaces is \"any\" (one interface matches) or \"all\" (every interface does)", s)
		}
		if _, ok := m["interface"]; !ok {
			bad("interfaces", ErrMissing, "interfaces says how interface patterns apply; give interface too")
		}
	}
	for _, k := range []string{"manufacturer", "product_name"} {
		if s, ok := fp.str(r, m, path, k, "match."); ok {
			if s == "" {
				bad(k, ErrValue, "an empty pattern; leave the key out to match any")
				continue
			}
			if k == "manufacturer" {
				mt.Manufacturer = s
			} else {
				mt.ProductName = s
			}
		}
	}
	if s, ok := fp.str(r, m, path, "when", "match."); ok {
		switch When(s) {
		case WhenPresent, WhenPlugged:
			mt.When = When(s)
		default:
			bad("when", ErrValue, "%q: when is \"present\" (plugged before the agent first started since dom0 booted) or \"plugged\" (plugged in after); leave it out for both", s)
		}
	}
}

func (fp *fileParser) target(r *Rule, m map[string]any, path []string) *Target {
	fp.unknown(r, m, path, "target.", targetKeys, targetHints)
	at := func(k string) []string { return append(slices.Clone(path), k) }
	t := &Target{Controller: -1}
	if _, present := m["domain"]; !present {
		fp.fail(r, path, "target.domain", ErrMissing, "a target names its domain: domain = \"NAME\"")
	} else if s, ok := fp.str(r, m, path, "domain", "target."); ok {
		if err := checkDomainName(s); err != nil {
			fp.fail(r, at("domain"), "target.domain", kindOf(err), "%v", err)
		}
		t.Domain = s
	}
	if s, ok := fp.str(r, m, path, "type", "target."); ok {
		switch ls := strings.ToLower(s); ls {
		case TypeAuto, TypePV, TypeQUSB, TypeDeviceModel:
			t.Ctrl.Type = ls
		default:
			fp.fail(r, at("type"), "target.type", ErrValue, "%q: type is auto, pv, qusb or devicemodel", s)
		}
	}
	ctrlOK := true
	for _, k := range []string{"version", "ports", "controller", "port"} {
		n, ok := fp.integer(r, m, path, k, "target.", "")
		if !ok {
			if _, present := m[k]; present {
				ctrlOK = false
			}
			continue
		}
		if n < 0 || n > 1<<16 {
			fp.fail(r, at(k), "target."+k, ErrValue, "%d is out of range", n)
			ctrlOK = false
			continue
		}
		switch k {
		case "version":
			t.Ctrl.Version = int(n)
		case "ports":
			t.Ctrl.Ports = int(n)
		case "controller":
			t.Controller, t.ctrlLine = int(n), fp.ix.line(at(k)...)
		case "port":
			if n < 1 || n > MaxPVPorts {
				fp.fail(r, at(k), "target.port", ErrValue, "%d: ports are numbered 1 to %d", n, MaxPVPorts)
				ctrlOK = false
				continue
			}
			t.Port, t.portLine = int(n), fp.ix.line(at(k)...)
		}
	}
	if ctrlOK {
		if err := t.Ctrl.Check(); err != nil {
			var se *SpecError
			msg := err.Error()
			if errors.As(err, &se) {
				msg = se.Msg
			}
			fp.fail(r, path, "target", ErrValue, "%s", msg)
		}
	}
	if t.Port != 0 && t.Controller < 0 {
		fp.fail(r, at("port"), "target.port", ErrValue, "port needs controller (as in xl: a port is chosen within a controller)")
	}
	if t.Port != 0 && t.Ctrl.Ports != 0 && t.Port > t.Ctrl.Ports {
		fp.fail(r, at("port"), "target.port", ErrValue, "port %d is beyond ports = %d", t.Port, t.Ctrl.Ports)
	}
	return t
}

func (fp *fileParser) domain(name string, v any) {
	path := []string{"domain", name}
	key := "domain." + name
	if err := checkDomainName(name); err != nil {
		fp.fail(nil, path, key, kindOf(err), "%v", err)
		return
	}
	m, ok := v.(map[string]any)
	if !ok {
		fp.fail(nil, path, key, ErrType, "a domain is a [domain.NAME] section")
		return
	}
	if prev, dup := fp.ps.pol.Domains[name]; dup {
		fp.fail(nil, path, key, ErrDuplicate, "also declared at %s:%d", prev.File, prev.Line)
		return
	}
	d := &Domain{Name: name, File: fp.name, Line: fp.ix.line(path...)}
	fp.ps.pol.Domains[name] = d
	for _, k := range fp.sortedKeys(m, path) {
		if k != "usbctrl" {
			fp.fail(nil, append(slices.Clone(path), k), key+"."+k, ErrUnknownKey, "unknown key (keys: usbctrl)%s", hint(k, keyHints{{"usbdev", "a [[rule]] with target.domain = \"" + name + "\""}}))
		}
	}
	if l, isList := m["usbctrl"].([]any); isList && len(l) == 0 {
		fp.fail(nil, append(slices.Clone(path), "usbctrl"), key+".usbctrl", ErrValue,
			`an empty list declares no controller: list them (usbctrl = ["version=2, ports=4"], as in xl.cfg), or leave usbctrl out and a device's attach adds libxl's default one`)
		return
	}
	specs, ok := fp.strs(nil, m, path, "usbctrl", key+".", ` (usbctrl = ["version=2, ports=4"], as in xl.cfg)`)
	if !ok {
		return
	}
	for i, s := range specs {
		c, err := ParseCtrlSpec(s)
		if err != nil {
			fp.fail(nil, append(slices.Clone(path), "usbctrl", strconv.Itoa(i)), fmt.Sprintf("%s.usbctrl[%d]", key, i), ErrValue, "%v", err)
			continue
		}
		d.Controllers = append(d.Controllers, c)
	}
}

// kindOf is ErrNeverMatches for an error that wraps it, else ErrValue.
func kindOf(err error) error {
	if errors.Is(err, ErrNeverMatches) {
		return ErrNeverMatches
	}
	return ErrValue
}

// parseID reads "046d:c31c", "1050:*" or "*:c31c".
func parseID(s string) (IDPattern, error) {
	v, p, ok := strings.Cut(s, ":")
	if !ok {
		return IDPattern{}, fmt.Errorf("%q is not vendor:product (four hex digits each, as lsusb prints them: \"046d:c31c\")", s)
	}
	vv, err1 := hex4(v)
	pp, err2 := hex4(p)
	if err1 != nil || err2 != nil {
		return IDPattern{}, fmt.Errorf("%q is not vendor:product (four hex digits each, or *, as lsusb prints them: \"046d:c31c\")", s)
	}
	if vv < 0 && pp < 0 {
		return IDPattern{}, fmt.Errorf("%q matches every device; leave id out instead", s)
	}
	return IDPattern{vv, pp}, nil
}

func hex4(s string) (int, error) {
	if s == "*" {
		return -1, nil
	}
	if len(s) != 4 {
		return 0, errors.New("not four digits")
	}
	n, err := strconv.ParseUint(s, 16, 16)
	return int(n), err
}

// parseIfPattern reads "CLASS[:SUBCLASS[:PROTOCOL]]", each two hex digits
// or *, the class also by name ("hid:01:01").
func parseIfPattern(s string) (IfPattern, error) {
	parts := strings.Split(s, ":")
	if len(parts) > 3 || s == "" {
		return IfPattern{}, fmt.Errorf("%q is not CLASS:SUBCLASS:PROTOCOL (\"03:01:01\", \"hid:*:*\")", s)
	}
	p := IfPattern{-1, -1, -1}
	for i, f := range parts {
		if f == "*" {
			continue
		}
		var n uint8
		var err error
		if i == 0 {
			n, err = ParseClass(f)
		} else if len(f) == 2 {
			var u uint64
			u, err = strconv.ParseUint(f, 16, 8)
			n = uint8(u)
		} else {
			err = errors.New("two hex digits")
		}
		if err != nil {
			return IfPattern{}, fmt.Errorf("%q is not CLASS:SUBCLASS:PROTOCOL, each two hex digits or * (\"03:01:01\", \"hid:*:*\")", s)
		}
		switch i {
		case 0:
			p.Class = int(n)
		case 1:
			p.SubClass = int(n)
		case 2:
			p.Protocol = int(n)
		}
	}
	if p == (IfPattern{-1, -1, -1}) {
		return IfPattern{}, fmt.Errorf("%q matches every interface; leave interface out instead", s)
	}
	return p, nil
}

// checkPortGlob accepts busid patterns: "1-1.4", "1-1.*", "2-*".
func checkPortGlob(s string) error {
	if strings.HasPrefix(s, "usb") {
		return fmt.Errorf("%q is a root hub, which is never passed through; the devices on its ports are %s-*", s, strings.TrimPrefix(s, "usb"))
	}
	if s == "" || strings.Trim(s, "*") == "" {
		return fmt.Errorf("%q matches every port; leave port out instead", s)
	}
	for _, c := range s {
		if !(c >= '0' && c <= '9' || c == '-' || c == '.' || c == '*' || c == '?') {
			return fmt.Errorf("%q is not a port such as 1-1.4 (a busid, as `usbhotplugd devices` shows; * and ? allowed)", s)
		}
	}
	if why := portNever(s); why != "" {
		return fmt.Errorf("%q: %w: the kernel never names a device so (%s)", s, ErrNeverMatches, why)
	}
	return nil
}

// portNever says why no busid the kernel makes can match the pattern, or
// "". Each part between '-' and '.' that holds no glob is a number the
// kernel would print; a part that starts with 0 is none, whatever follows.
func portNever(s string) string {
	if !strings.ContainsAny(s, "*?") {
		if checkBusID(s) != nil {
			return fmt.Sprintf("bus 1 to %d, ports 1 to %d, at most %d deep, no leading zeros", usbname.MaxBus, usbname.MaxPort, usbname.MaxDepth)
		}
		return ""
	}
	bus, ports, ok := strings.Cut(s, "-")
	if !ok && !strings.Contains(s, "*") {
		return "a busid is BUS-PORT[.PORT...]"
	}
	parts := append([]string{bus}, strings.Split(ports, ".")...)
	if !ok {
		parts = parts[:1]
	}
	if len(parts)-1 > usbname.MaxDepth {
		return fmt.Sprintf("at most %d ports deep", usbname.MaxDepth)
	}
	for i, p := range parts {
		max, what := usbname.MaxPort, "ports are"
		if i == 0 {
			max, what = usbname.MaxBus, "buses are"
		}
		if strings.HasPrefix(p, "0") {
			return fmt.Sprintf("%s numbered from 1, without leading zeros", what)
		}
		if p == "" {
			return "no part of a busid is empty"
		}
		if strings.ContainsAny(p, "*?") {
			continue
		}
		if n, err := strconv.Atoi(p); err != nil || n > max {
			return fmt.Sprintf("%s 1 to %d", what, max)
		}
	}
	return ""
}

// Limits of a rule's exec command: a program and a few arguments, not a
// script in a string.
const (
	MaxExecArgs   = 32
	MaxExecArgLen = 1024
)

// execArgs reads exec: a program path, or a list of the program and its
// arguments.
func execArgs(v any) ([]string, error) {
	switch t := v.(type) {
	case string:
		if strings.ContainsAny(t, " \t") {
			return nil, fmt.Errorf("%q looks like a command line, but no shell runs it: write a list, exec = [\"/path/to/program\", \"arg\"]", t)
		}
		return []string{t}, nil
	case []any:
		if len(t) == 0 {
			return nil, errors.New("an empty command: give the program and its arguments, or leave exec out")
		}
		out := make([]string, len(t))
		for i, x := range t {
			s, ok := x.(string)
			if !ok {
				return nil, fmt.Errorf("word %d is %s: every word of the command is a string in quotes", i+1, typeName(x))
			}
			out[i] = s
		}
		return out, nil
	}
	return nil, fmt.Errorf("%s: exec is a list of strings, exec = [\"/path/to/program\", \"arg\"]", typeName(v))
}

// checkExec checks a rule's command: an absolute program path, since the
// agent runs it with a fixed PATH and no shell, then arguments.
func checkExec(argv []string) error {
	if len(argv) > MaxExecArgs {
		return fmt.Errorf("%d words: a command has at most %d (a program and its arguments; put more in a script)", len(argv), MaxExecArgs)
	}
	for i, a := range argv {
		if len(a) > MaxExecArgLen || strings.IndexByte(a, 0) >= 0 {
			return fmt.Errorf("word %d: at most %d bytes, no NUL", i+1, MaxExecArgLen)
		}
	}
	prog := argv[0]
	if !strings.HasPrefix(prog, "/") || filepath.Clean(prog) != prog || strings.HasSuffix(prog, "/") {
		return fmt.Errorf("%q: the program is an absolute path such as \"/usr/local/sbin/notify-badge\" (no shell runs it: write a list, exec = [\"/path\", \"arg\"])", prog)
	}
	return nil
}

// MatchableSerial says whether a rule can name a device by serial s: not
// empty, and without control characters (a device that reports one is
// named by its port path or descriptor hash instead).
func MatchableSerial(s string) bool {
	return s != "" && !strings.ContainsFunc(s, func(c rune) bool { return c < 0x20 })
}
