package policy

import (
	"strings"
	"testing"
)

func TestAgentSection(t *testing.T) {
	p, err := Parse("p.toml", []byte("[agent]\nauthorize = \"before-probe\"\n"), nil)
	if err != nil {
		t.Fatal(err)
	}
	if !p.AuthorizesBeforeProbe() {
		t.Error("authorize not read")
	}
	p, err = Parse("p.toml", []byte(""), nil)
	if err != nil || p.AuthorizesBeforeProbe() {
		t.Errorf("the default must be off: %v %v", p, err)
	}
	for _, c := range []struct{ src, want string }{
		{"[agent]\nauthorize = \"always\"\n", `p.toml:2: agent.authorize: "always": authorize is "off" (the default) or "before-probe"`},
		{"[agent]\nauthorise = \"off\"\n", "p.toml:2: agent.authorise: unknown key"},
		{"[agent]\nauthorize = 1\n", "p.toml:2: agent.authorize: a string in quotes"},
		{"agent = 3\n", "p.toml:1: agent: agent is a table"},
	} {
		_, err := Parse("p.toml", []byte(c.src), nil)
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%q: got %v, want %q", c.src, err, c.want)
		}
	}
}

func TestAgentSectionOnlyInTheMainFile(t *testing.T) {
	inc := func(from, name string) (string, []byte, error) {
		return name, []byte("[agent]\nauthorize = \"before-probe\"\n[[rule]]\nname = \"x\"\naction = \"deny\"\nmatch = { id = \"1234:5678\" }\n"), nil
	}
	_, err := Parse("p.toml", []byte("[[rule]]\nname = \"inc\"\ninclude = \"more.toml\"\n"), inc)
	if err == nil || !strings.Contains(err.Error(), "main policy file only") {
		t.Errorf("[agent] in an include: %v", err)
	}
}

func TestBlockRules(t *testing.T) {
	src := "[[rule]]\nname = \"no-net\"\naction = \"block\"\nmatch = { interface = \"02:*:*\" }\n"
	p, err := Parse("p.toml", []byte(src), nil)
	if err != nil {
		t.Fatal(err)
	}
	d := Device{BusID: "1-2", Vendor: 0x0b95, Product: 0x1790, Interfaces: []Interface{{Class: 2, SubClass: 6, Protocol: 0}}}
	dec := p.Match(&d, nil)
	if dec.Action != Block || dec.Rule == nil || !strings.Contains(dec.Reason, "blocks 1-2") {
		t.Errorf("decision %+v", dec)
	}
	if Block.String() != "block" {
		t.Error(Block.String())
	}
	for _, c := range []struct{ src, want string }{
		{src + "target = { domain = \"kiosk\" }\n", "a block rule has no target"},
		{src + "takeover = true\n", "takeover is for attach rules"},
		{src + "duplicates = \"all\"\n", "a block rule acts on every match"},
		{"[[rule]]\nname = \"x\"\naction = \"reject\"\nmatch = { id = \"1234:5678\" }\n", `the action is "attach", "deny" or "block"`},
	} {
		_, err := Parse("p.toml", []byte(c.src), nil)
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%q: got %v, want %q", c.src, err, c.want)
		}
	}
}

func TestLockout(t *testing.T) {
	const on = "[agent]\nauthorize = \"before-probe\"\n"
	keep := "[[rule]]\nname = \"dom0 keyboards\"\naction = \"deny\"\nmatch = { interface = \"03:01:01\" }\n"
	allHID := "[[rule]]\nname = \"hid to kiosk\"\naction = \"attach\"\nmatch = { interface = \"03:*:*\" }\ntarget = { domain = \"kiosk\" }\nduplicates = \"all\"\n"
	for _, c := range []struct {
		name, src, want string
	}{
		{"mode off", allHID, ""},
		{"kept", on + keep + allHID, ""},
		{"unmatched", on, "no rule keeps a keyboard in dom0 (one no rule names goes to dom0 only because nothing matches it)"},
		{"sent to a guest", on + allHID, `no rule keeps a keyboard in dom0: rule 1 "hid to kiosk" (p.toml:3) attaches to kiosk any keyboard`},
	} {
		p, err := Parse("p.toml", []byte(c.src), nil)
		if err != nil {
			t.Fatalf("%s: %v", c.name, err)
		}
		got := p.Lockout()
		if c.want == "" && got != "" || c.want != "" && !strings.Contains(got, c.want) || strings.Contains(got, "9-9") {
			t.Errorf("%s: got %q, want %q", c.name, got, c.want)
		}
	}
}
