package policy_test

import (
	"errors"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/usbhotplugd/usbhotplugd/policy"
)

var update = flag.Bool("update", false, "rewrite the golden files")

// golden compares got with testdata/NAME, or rewrites it with -update.
func golden(t *testing.T, name, got string) {
	t.Helper()
	path := filepath.Join("testdata", name)
	if *update {
		if err := os.WriteFile(path, []byte(got), 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run go test ./policy -update to create it)", err)
	}
	if got != string(want) {
		t.Errorf("%s differs (go test ./policy -update rewrites it); got:\n%s", name, got)
	}
}

func parse(t testing.TB, src string) *policy.Policy {
	t.Helper()
	p, err := policy.Parse("test.toml", []byte(src), nil)
	if err != nil {
		t.Fatalf("policy refused:\n%v", err)
	}
	return p
}

// Every file we ship parses, includes and all.
func TestRulesDirectoryParses(t *testing.T) {
	n := 0
	err := filepath.WalkDir("../rules", func(path string, d os.DirEntry, err error) error {
		if err != nil || d.IsDir() || !strings.HasSuffix(path, ".toml") {
			return err
		}
		n++
		p, err := policy.ParseFile(path)
		if err != nil {
			t.Errorf("%s:\n%v", path, err)
			return nil
		}
		if len(p.Rules) == 0 {
			t.Errorf("%s has no rules", path)
		}
		for _, f := range p.Shadowed() {
			t.Errorf("%s: %s", path, f)
		}
		return nil
	})
	if err != nil || n < 4 {
		t.Fatalf("walked %d files: %v", n, err)
	}
}

// The reference names every key the parser knows.
func TestReferenceHasEveryKey(t *testing.T) {
	b, err := os.ReadFile("../rules/reference.toml")
	if err != nil {
		t.Fatal(err)
	}
	for _, k := range []string{"name", "description", "action", "duplicates", "takeover", "exec", "include", "usbctrl",
		"bus", "addr", "id", "serial", "port", "class", "interface", "interfaces", "manufacturer", "product_name", "when",
		"domain", "type", "version", "ports", "controller", "authorize"} {
		if !strings.Contains(string(b), "\n"+k+" = ") && !strings.Contains(string(b), " "+k+" = ") {
			t.Errorf("reference.toml does not show %s", k)
		}
	}
}

// One policy with a mistake of every kind; every error is reported at once,
// each naming file, line, rule and key. The golden file is the contract.
func TestErrors(t *testing.T) {
	cases := []struct{ name, src string }{
		{"syntax", "[[rule]\nname = 1\n"},
		{"unknown top-level keys", "rules = 1\ninclude = \"x\"\n[[rule]]\nname = \"a\"\naction = \"deny\"\n"},
		{"rule keys", `
[[rule]]
name = "first"
action = "attach"
target = { domain = "kiosk" }

[[rule]]
action = "maybe"
to = "kiosk"

[[rule]]
name = ""
action = "deny"
target = { domain = "kiosk" }
duplicates = "first"
takeover = true

[[rule]]
name = "first"
action = "attach"
duplicates = "some"
takeover = "yes"
`},
		{"match keys", `
[[rule]]
name = "ok"
action = "deny"
match = { id = "046d:c31c" }

[[rule]]
name = "ids"
action = "deny"
[rule.match]
id = ["046d:c31", "*:*", "046D:C31C", "xyz"]
vendor = "046d"

[[rule]]
name = "numbers"
action = "deny"
[rule.match]
id = 0x046d
bus = 0
addr = 200
class = 3
interface = 3

[[rule]]
name = "pairs"
action = "deny"
match = { bus = 1 }

[[rule]]
name = "pairs-2"
action = "deny"
match = { addr = 6, busid = "1-1" }

[[rule]]
name = "strings"
action = "deny"
[rule.match]
serial = ["", "ok"]
port = ["usb1", "1-1/2", "*", "1-1.4", "1-*"]
class = "hubby"
interface = ["03:1:1", "*:*:*", "hid:01:01:00", "storage"]
interfaces = "most"
manufacturer = ""
product = "Keyboard"
when = "boot"

[[rule]]
name = "hub"
action = "attach"
match = { class = "hub" }
target = { domain = "kiosk" }

[[rule]]
name = "empty-list"
action = "deny"
match = { serial = [] }

[[rule]]
name = "interfaces-alone"
action = "deny"
match = { interfaces = "all" }
`},
		{"target keys", `
[[rule]]
name = "domid"
action = "attach"
target = { domain = "7" }

[[rule]]
name = "bad-controller"
action = "attach"
[rule.target]
domain = "kiosk"
type = "usb3"
version = "2"
port = 3
domid = 5

[[rule]]
name = "pv-v3"
action = "attach"
target = { domain = "kiosk", type = "pv", version = 3 }

[[rule]]
name = "dm-ports"
action = "attach"
target = { domain = "hvm", type = "devicemodel", version = 1, ports = 4 }

[[rule]]
name = "port-beyond"
action = "attach"
target = { domain = "kiosk", controller = 0, port = 5, ports = 4 }

[[rule]]
name = "port-32"
action = "attach"
target = { domain = "kiosk", controller = 1, port = 32 }

[[rule]]
name = "no-domain"
action = "attach"
target = { type = "pv" }

[[rule]]
name = "bad-name"
action = "attach"
target = { domain = "a/b" }
`},
		{"domains", `
[domain.kiosk]
usbctrl = ["version=2, ports=4", "version=1,ports=40", "type=pv ", "speed=3"]
usbdev = ["hostbus=1"]

[domain.5]
usbctrl = []

[domain.vm]
usbctrl = "version=2"

[domain.other]
usbctrl = [2]
`},
		{"wrong shapes", `
rule = 5
domain = "x"
`},
		{"match and target not tables", `
[[rule]]
name = "a"
action = "attach"
match = "046d:c31c"
target = "kiosk"
`},
		{"exec", `
[[rule]]
name = "relative"
action = "deny"
exec = ["notify-send", "x"]

[[rule]]
name = "empty"
action = "deny"
exec = []

[[rule]]
name = "not-strings"
action = "deny"
exec = ["/bin/logger", 5]

[[rule]]
name = "unclean"
action = "deny"
exec = "/usr/local/../bin/x"

[[rule]]
name = "shell-line"
action = "deny"
exec = "/bin/sh -c 'echo hi'"

[[rule]]
name = "a-number"
action = "deny"
exec = 7
`},
		{"include without a reader", `
[[rule]]
include = "deny-defaults.toml"
action = "deny"
`},
	}
	var out strings.Builder
	for _, c := range cases {
		_, err := policy.Parse("test.toml", []byte(c.src), nil)
		fmt.Fprintf(&out, "== %s\n", c.name)
		if err == nil {
			t.Errorf("%s: accepted", c.name)
			continue
		}
		var es policy.Errors
		if !errors.As(err, &es) {
			t.Errorf("%s: error is %T, not policy.Errors", c.name, err)
		}
		for _, e := range es {
			if e.File != "test.toml" || (e.Line == 0 && !errors.Is(e, policy.ErrSyntax)) {
				t.Errorf("%s: unpositioned error %v", c.name, e)
			}
		}
		fmt.Fprintf(&out, "%v\n", err)
	}
	golden(t, "errors.golden", out.String())
}

// The library keys positions by name, without the array index; errors
// must name the rule they are in, inside [[rule]] arrays, in subtables and
// in inline tables, and in included files.
func TestErrorsNameTheRightRule(t *testing.T) {
	src := `# three rules; the mistake is in the third
[[rule]]
name = "one"
action = "deny"
[rule.match]
id = "046d:c31c"

[[rule]]
name = "two"
action = "deny"
[rule.match]
id = "046d:c31c"

[[rule]]
name = "three"
action = "deny"
[rule.match]
id = "046d:c31"
`
	_, err := policy.Parse("p.toml", []byte(src), nil)
	var es policy.Errors
	if !errors.As(err, &es) || len(es) != 1 {
		t.Fatalf("errors: %v", err)
	}
	if e := es[0]; e.Line != 18 || e.Rule != 3 || e.RuleName != "three" || e.Key != "match.id" || !errors.Is(e, policy.ErrValue) {
		t.Fatalf("error %+v: want line 18, rule 3 \"three\", key match.id", e)
	}

	files := map[string]string{
		"main.toml": "[[rule]]\nname = \"a\"\naction = \"deny\"\n\n[[rule]]\ninclude = \"inc.toml\"\n\n[[rule]]\nname = \"c\"\naction = \"deny\"\nmatch = { port = \"x\" }\n",
		"inc.toml":  "[[rule]]\nname = \"b1\"\naction = \"deny\"\n\n[[rule]]\nname = \"b2\"\naction = \"deny\"\nmatch = { serial = \"\" }\n",
	}
	read := func(from, name string) (string, []byte, error) {
		b, ok := files[name]
		if !ok {
			return name, nil, os.ErrNotExist
		}
		return name, []byte(b), nil
	}
	_, err = policy.Parse("main.toml", []byte(files["main.toml"]), read)
	want := "main.toml:11: rule 4 \"c\": match.port: \"x\" is not a port such as 1-1.4 (a busid, as `usbhotplugd devices` shows; * and ? allowed)\n" +
		"inc.toml:8: rule 3 \"b2\": match.serial: \"\": a serial is a non-empty string as sysfs shows it, without control characters (usbhotplugd devices lists them)"
	if err == nil || err.Error() != want {
		t.Fatalf("include errors:\n%v\nwant\n%s", err, want)
	}

	files["inc.toml"] = "[[rule]]\ninclude = \"main.toml\"\n"
	_, err = policy.Parse("main.toml", []byte(files["main.toml"]), read)
	if !errors.Is(err, policy.ErrInclude) || !strings.Contains(err.Error(), "inc.toml:2: include: \"main.toml\" includes itself (through main.toml → inc.toml)") {
		t.Fatalf("include cycle: %v", err)
	}
	files["inc.toml"] = "[[rule]]\ninclude = \"gone.toml\"\n"
	_, err = policy.Parse("main.toml", []byte(files["main.toml"]), read)
	if !errors.Is(err, policy.ErrInclude) || !strings.Contains(err.Error(), "inc.toml:2: include: file does not exist") {
		t.Fatalf("missing include: %v", err)
	}
}

func TestParseFileErrors(t *testing.T) {
	if _, err := policy.ParseFile("testdata/none.toml"); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("missing file: %v", err)
	}
}

func TestExec(t *testing.T) {
	p := parse(t, `
[[rule]]
name = "list"
action = "deny"
exec = ["/usr/bin/logger", "-t", "usb", "a b"]

[[rule]]
name = "program"
action = "deny"
exec = "/usr/local/sbin/notify-badge"

[[rule]]
name = "none"
action = "deny"
`)
	if got := strings.Join(p.Rules[0].Exec, "|"); got != "/usr/bin/logger|-t|usb|a b" {
		t.Errorf("list: %q", got)
	}
	if got := strings.Join(p.Rules[1].Exec, "|"); got != "/usr/local/sbin/notify-badge" {
		t.Errorf("program: %q", got)
	}
	if p.Rules[2].Exec != nil {
		t.Errorf("none: %q", p.Rules[2].Exec)
	}
}

func TestWhen(t *testing.T) {
	p := parse(t, `
[[rule]]
name = "boot-devices"
action = "attach"
match = { id = "046d:c31c", when = "present" }
target = { domain = "kiosk" }

[[rule]]
name = "later"
action = "deny"
match = { id = "046d:c31c", when = "plugged" }
`)
	d := policy.Device{BusID: "1-4", Vendor: 0x046d, Product: 0xc31c, Present: true}
	if dec := p.Match(&d, nil); dec.Rule == nil || dec.Rule.Name != "boot-devices" {
		t.Errorf("present: %+v", dec)
	}
	d.Present = false
	ex := p.Explain(&d, nil)
	if ex.Rule == nil || ex.Rule.Name != "later" || len(ex.Skipped) != 1 || !strings.Contains(ex.Skipped[0].Why, `when = "present"`) {
		t.Errorf("plugged: %+v", ex)
	}
	// Neither covers the other: no shadowing is reported.
	if f := p.Shadowed(); len(f) != 0 {
		t.Errorf("shadowed: %v", f)
	}
}

// A name of the wrong type is one error, not two.
func TestNameOfTheWrongTypeIsOneError(t *testing.T) {
	_, err := policy.Parse("n.toml", []byte("[[rule]]\nname = 5\naction = \"deny\"\n"), nil)
	var es policy.Errors
	if !errors.As(err, &es) || len(es) != 1 || !strings.Contains(es[0].Error(), "n.toml:2: rule 1: name: a string in quotes, not a number") {
		t.Fatalf("%v", err)
	}
}
