package main

import (
	"encoding/json"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/usbhotplugd/usbhotplugd/internal/fakekernel"
)

const realTree = "../../internal/usbsysfs/testdata/real/sys"

// fixtureTrees are the sysfs trees generate is tried on: the real
// kernel's, the same renumbered (buses 1 and 3, 2 and 4 swapped), and the
// built ones the other tests share.
func fixtureTrees(t *testing.T) map[string]string {
	t.Helper()
	dir := t.TempDir()
	trees := map[string]string{"real": realTree}
	renum := filepath.Join(dir, "renumbered")
	if err := fakekernel.Renumber(realTree, renum, map[int]int{1: 3, 3: 1, 2: 4, 4: 2}); err != nil {
		t.Fatal(err)
	}
	trees["renumbered"] = renum
	std, xl := filepath.Join(dir, "standard"), filepath.Join(dir, "xl")
	if err := fakekernel.Standard(std); err != nil {
		t.Fatal(err)
	}
	if err := fakekernel.XL(xl); err != nil {
		t.Fatal(err)
	}
	trees["standard"], trees["xl"] = std, xl
	return trees
}

type intfJSON struct {
	Class    string `json:"class"`
	SubClass string `json:"sub_class"`
	Protocol string `json:"protocol"`
}

type explained struct {
	Device struct {
		BusID      string     `json:"busid"`
		Class      string     `json:"class"`
		Interfaces []intfJSON `json:"interfaces"`
	} `json:"device"`
	Action    string `json:"action"`
	Guard     string `json:"guard"`
	Rule      string `json:"rule"`
	RuleIndex int    `json:"rule_index"`
	Target    *struct {
		Domain string `json:"domain"`
	} `json:"target"`
}

func explainAll(t *testing.T, pol, tree string) []explained {
	t.Helper()
	code, out, errs := runCmd(t, "explain", "--json", "--policy", pol, "--sysfs", tree, "--mountinfo", "/dev/null")
	if code != 0 {
		t.Fatalf("explain: exit %d\n%s%s", code, out, errs)
	}
	var ex []explained
	if err := json.Unmarshal([]byte(out), &ex); err != nil {
		t.Fatal(err)
	}
	return ex
}

// On every fixture tree, generate writes a policy that check accepts and
// that attaches each device to the domain named, each by a rule of its
// own, and nothing else: hubs stay, and a device plugged in later is
// named by no rule.
func TestGenerateOnFixtureTrees(t *testing.T) {
	for name, tree := range fixtureTrees(t) {
		t.Run(name, func(t *testing.T) {
			dir := t.TempDir()
			pol := filepath.Join(dir, "policy.toml")
			code, out, errs := runCmd(t, "generate", "--domain", "kiosk", "--sysfs", tree, "--mountinfo", "/dev/null", "-o", pol)
			if code != 0 {
				t.Fatalf("generate: exit %d\n%s%s", code, out, errs)
			}
			if code, out, errs = runCmd(t, "check", "--strict", pol); code != 0 || !strings.Contains(out, "valid:") || !strings.Contains(out, "0 warnings") {
				t.Fatalf("check: exit %d\n%s%s", code, out, errs)
			}
			rules := map[int]string{}
			console := ""
			for _, e := range explainAll(t, pol, tree) {
				d := e.Device.BusID
				if e.Device.Class == "09" {
					if e.Action != "deny" || e.Guard != "hub" {
						t.Errorf("hub %s: %s %s", d, e.Action, e.Guard)
					}
					continue
				}
				keyboard := slices.ContainsFunc(e.Device.Interfaces, func(i intfJSON) bool {
					return i.Class == "03" && i.SubClass == "01" && i.Protocol == "01"
				})
				if console == "" && keyboard {
					// The first keyboard stays with dom0's console.
					console = d
					if e.Action != "deny" || e.Rule == "" {
						t.Errorf("dom0's keyboard %s: %s by %q, want denied by its rule", d, e.Action, e.Rule)
					}
					continue
				}
				if e.Action != "attach" || e.Target == nil || e.Target.Domain != "kiosk" || e.Rule == "" {
					t.Errorf("%s: %s, not attached to kiosk", d, e.Action)
					continue
				}
				if other, dup := rules[e.RuleIndex]; dup {
					t.Errorf("rule %q decides for %s and %s", e.Rule, other, d)
				}
				rules[e.RuleIndex] = d
			}
			if len(rules) == 0 && console == "" {
				t.Fatal("no device attached")
			}
			// A device that was not there when the policy was written.
			if name == "standard" {
				err := (&fakekernel.Builder{Root: tree}).Add(fakekernel.Dev{BusID: "1-6", DevNum: 20, Vendor: "046d", Product: "c077", Class: "00",
					Serial: "MOUSE-C", Interfaces: []fakekernel.Intf{{Class: "03", SubClass: "01", Protocol: "02", Driver: "usbhid"}}}).Err()
				if err != nil {
					t.Fatal(err)
				}
				for _, e := range explainAll(t, pol, tree) {
					if e.Device.BusID == "1-6" && e.Action != "none" {
						t.Errorf("a device plugged in later: %s", e.Action)
					}
				}
			}
		})
	}
}

// The rules written for a renumbered tree are those written for the tree
// before: the identities do not carry bus numbers.
func TestGenerateSurvivesRenumbering(t *testing.T) {
	trees := fixtureTrees(t)
	rules := func(tree string) []string {
		code, out, errs := runCmd(t, "generate", "--domain", "kiosk", "--sysfs", tree, "--mountinfo", "/dev/null", "--prefer", "port_path")
		if code != 0 {
			t.Fatalf("generate: exit %d\n%s%s", code, out, errs)
		}
		var rs []string
		for _, l := range strings.Split(out, "\n") {
			if strings.HasPrefix(l, "match = ") {
				rs = append(rs, l)
			}
		}
		slices.Sort(rs)
		return rs
	}
	a, b := rules(trees["real"]), rules(trees["renumbered"])
	if len(a) == 0 || !slices.Equal(a, b) {
		t.Errorf("rules before renumbering:\n%s\nafter:\n%s", strings.Join(a, "\n"), strings.Join(b, "\n"))
	}
}

func TestGenerateOptions(t *testing.T) {
	for _, c := range []struct {
		args []string
		code int
		want string
	}{
		{[]string{"generate"}, exitUsage, "--domain NAME is required"},
		{[]string{"generate", "--domain", "7"}, exitUsage, `"7" is a domid`},
		{[]string{"generate", "--domain", "Domain-0"}, exitUsage, "is dom0 itself"},
		{[]string{"generate", "--domain", "kiosk", "--prefer", "busid"}, exitUsage, `--prefer "busid": serial, port_path or hash`},
		{[]string{"generate", "--domain", "kiosk", "--usbctrl", "version=9"}, exitUsage, "version 9"},
	} {
		code, out, errs := runCmd(t, append(c.args, "--sysfs", realTree)...)
		if code != c.code || !strings.Contains(out+errs, c.want) {
			t.Errorf("%v: exit %d\n%s%s", c.args, code, out, errs)
		}
	}
	code, out, _ := runCmd(t, "generate", "--domain", "kiosk", "--sysfs", realTree, "--usbctrl", "type=pv,version=2,ports=8", "--prefer", "hash")
	if code != 0 || !strings.Contains(out, "[domain.kiosk]\nusbctrl = [\"type=pv,version=2,ports=8\"]\n") ||
		!strings.Contains(out, `match = { id = "0627:0001", hash = "aiRHSJfz50dYJ9X5sFiPEeBJr10u2CYnT2GweD0Lq4I=" }`) ||
		!strings.Contains(out, `match = { id = "0627:0001", port_path = "pci-0000:00:01.0-usb-0:3.2" }`) {
		t.Errorf("--usbctrl, --prefer hash: exit %d\n%s", code, out)
	}
	// -o refuses to replace a file unless --force.
	pol := filepath.Join(t.TempDir(), "policy.toml")
	os.WriteFile(pol, []byte("# mine\n"), 0o644)
	if code, _, errs := runCmd(t, "generate", "--domain", "kiosk", "--sysfs", realTree, "-o", pol); code != exitFailure || !strings.Contains(errs, "give --force") {
		t.Errorf("-o over a file: exit %d %s", code, errs)
	}
	if b, _ := os.ReadFile(pol); string(b) != "# mine\n" {
		t.Error("the file was replaced")
	}
	if code, _, errs := runCmd(t, "generate", "--domain", "kiosk", "--sysfs", realTree, "-o", pol, "--force"); code != 0 {
		t.Errorf("--force: exit %d %s", code, errs)
	}
}

// devices --json prints each device's stable identities: its port paths,
// its descriptor hash and its hub's.
func TestDevicesJSONIdentities(t *testing.T) {
	code, out, errs := runCmd(t, "devices", "--json", "--sysfs", realTree)
	var devs []map[string]any
	if code != 0 || json.Unmarshal([]byte(out), &devs) != nil {
		t.Fatalf("exit %d %s", code, errs)
	}
	byID := map[string]map[string]any{}
	for _, d := range devs {
		byID[d["busid"].(string)] = d
	}
	m1, m2, hub := byID["1-3.1"], byID["1-3.2"], byID["1-3"]
	if m1["hash"] != "8/lRg7fpexFN+jJomk6FgUUsLpiO7e+jszr8VYERqBk=" || m1["hash"] != m2["hash"] || m1["parent_hash"] != hub["hash"] ||
		m2["port_path"] != "pci-0000:00:01.0-usb-0:3.2" || byID["2-4"]["port_path_with_usb_revision"] != "pci-0000:00:01.0-usbv3-0:4" {
		t.Errorf("identities in JSON: %v\n%v\n%v", m1, m2, hub)
	}
}
