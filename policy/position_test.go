package policy_test

import (
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/usbhotplugd/usbhotplugd/policy"
)

// Every error names the line the mistake is on, whatever TOML forms come
// before it. Each case marks the wrong line with "# <-".
func TestErrorLines(t *testing.T) {
	const okRule = "[[rule]]\nname = \"ok\"\naction = \"deny\"\n"
	cases := []struct{ name, src, key string }{
		{"multi-line string with escaped quotes", okRule + `description = """one \""" two
three \"
four"""
[[rule]]
name = "b"
action = "deny"
match = { class = "nope" } # <-
`, "match.class"},
		{"literal multi-line string holding quotes", okRule + `description = '''a """ b
c'''
match = { when = "later" } # <-
`, "match.when"},
		{"multi-line inline table", okRule + `match = {
  id = "046d:c31c",
  serial = "A",
}
[[rule]]
name = "b"
action = "deny"
match = {
  when = "x", # <-
}
`, "match.when"},
		{"multi-line array", "[[rule]]\nname = \"a\"\naction = \"deny\"\nmatch = { id = [\n  \"046d:c31c\",\n  \"nope\", # <-\n] }\n", "match.id"},
		{"escaped newline in a string", okRule + "description = \"\"\"a \\\n  b\"\"\"\n[[rule]]\nname = \"b\"\naction = \"deny\"\nmatch.class = \"nope\" # <-\n", "match.class"},
		{"brackets inside strings and comments", okRule + "description = \"[[rule]] # }\" # [x]\n[[rule]]\nname = \"b\"\naction = \"maybe\" # <-\n", "action"},
		{"[[rules]] at the top", okRule + "[[rules]] # <-\nname = \"x\"\n", "rules"},
		{"[[domain]] at the top", okRule + "\n[[domain]] # <-\nname = \"x\"\n", "domain"},
		{"a deep table header", okRule + "[rule.match.extra] # <-\nx = 1\n", "match.extra"},
		{"a deeper one", "[[rule]]\nname = \"t\"\naction = \"attach\"\n[rule.target]\ndomain = \"vm\"\n[rule.target.more.still] # <-\nx = 1\n", "target.more"},
		{"the second rule", okRule + "\n[[rule]]\nname = \"b\"\naction = \"attach\"\n[rule.target] # <-\n", "target.domain"},
		{"dotted keys", okRule + "match.id = \"046d:c31c\"\nmatch.serial = \"\" # <-\n", "match.serial"},
		{"a domain", "[domain.vm]\nusbctrl = [\n  \"version=2\",\n  \"version=9\", # <-\n]\n", "domain.vm.usbctrl[1]"},
		{"a pinned controller beyond the domain's", "[domain.vm]\nusbctrl = [\"version=2, ports=4\"]\n" + okRule + "[[rule]]\nname = \"p\"\naction = \"attach\"\n[rule.target]\ndomain = \"vm\"\ncontroller = 1 # <-\n", "target.controller"},
		{"a pinned port beyond the controller's", "[domain.vm]\nusbctrl = [\"version=2, ports=4\"]\n[[rule]]\nname = \"p\"\naction = \"attach\"\ntarget = { domain = \"vm\",\n  controller = 0,\n  port = 5 } # <-\n", "target.port"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			want := 0
			for i, l := range strings.Split(c.src, "\n") {
				if strings.HasSuffix(l, "# <-") {
					want = i + 1
				}
			}
			_, err := policy.Parse("t.toml", []byte(c.src), nil)
			var es policy.Errors
			if !errors.As(err, &es) {
				t.Fatalf("want errors, got %v", err)
			}
			for _, e := range es {
				if e.Key == c.key {
					if e.Line != want {
						t.Errorf("%s at line %d, want %d:\n%v", c.key, e.Line, want, err)
					}
					return
				}
			}
			t.Errorf("no error for %s:\n%v", c.key, err)
		})
	}
}

// Errors about a limit name the file; a file is refused before TOML reads it.
func TestLimits(t *testing.T) {
	deep := "a = " + strings.Repeat("[", policy.MaxNesting+1) + strings.Repeat("]", policy.MaxNesting+1) + "\n"
	long := "[rule" + strings.Repeat(".x", policy.MaxNesting) + "]\n"
	fine := "a = " + strings.Repeat("[", policy.MaxNesting) + strings.Repeat("]", policy.MaxNesting) + "\nb = \"" + strings.Repeat("[", 100) + "\"\n"
	for _, src := range []string{deep, long, "\n\n" + deep} {
		_, err := policy.Parse("t.toml", []byte(src), nil)
		if !errors.Is(err, policy.ErrLimit) || !strings.HasPrefix(err.Error(), "t.toml:") {
			t.Errorf("%.40q: want a limit error naming t.toml, got %v", src, err)
		}
	}
	if _, err := policy.Parse("t.toml", []byte(fine), nil); errors.Is(err, policy.ErrLimit) {
		t.Errorf("nesting at the limit refused: %v", err)
	}
	big := make([]byte, policy.MaxFileSize+1)
	if _, err := policy.Parse("t.toml", big, nil); !errors.Is(err, policy.ErrLimit) {
		t.Errorf("a file over the size limit: %v", err)
	}
}

// The include depth limit is the one its message gives: the main file is
// level 0, and a chain of exactly MaxIncludeDepth includes is read.
func TestIncludeDepth(t *testing.T) {
	for _, depth := range []int{policy.MaxIncludeDepth, policy.MaxIncludeDepth + 1} {
		inc := func(from, name string) (string, []byte, error) {
			var n int
			fmt.Sscanf(name, "f%d.toml", &n)
			if n == depth {
				return name, []byte("[[rule]]\nname = \"leaf\"\naction = \"deny\"\n"), nil
			}
			return name, fmt.Appendf(nil, "[[rule]]\ninclude = \"f%d.toml\"\n", n+1), nil
		}
		_, err := policy.Parse("f0.toml", []byte("[[rule]]\ninclude = \"f1.toml\"\n"), inc)
		if depth <= policy.MaxIncludeDepth && err != nil {
			t.Errorf("%d levels refused: %v", depth, err)
		}
		want := fmt.Sprintf("include level %d: includes nest at most %d deep", policy.MaxIncludeDepth+1, policy.MaxIncludeDepth)
		if depth > policy.MaxIncludeDepth && (err == nil || !strings.Contains(err.Error(), want)) {
			t.Errorf("%d levels: want %q, got %v", depth, want, err)
		}
	}
}

// A cycle is found however the path is spelled.
func TestIncludeCycleCleanPath(t *testing.T) {
	inc := func(from, name string) (string, []byte, error) {
		return "./sub/../" + name, []byte("[[rule]]\ninclude = \"main.toml\"\n"), nil
	}
	_, err := policy.Parse("./main.toml", []byte("[[rule]]\ninclude = \"main.toml\"\n"), inc)
	if !errors.Is(err, policy.ErrInclude) || !strings.Contains(err.Error(), "includes itself") {
		t.Fatalf("want a cycle, got %v", err)
	}
}

// A syntax error names the line it is on, counted from where the TOML
// library stopped (its own line count is off by one for some errors).
func TestSyntaxErrorLines(t *testing.T) {
	for src, want := range map[string]int{
		"\n\na = \"x\r\n":         3,
		"\"\r\n":                  1,
		"[[rule]\nname = 1\n":     1,
		"a = 1\nb = \"\"\"x\n\ny": 4, // at the end, where the string should have ended
		"a = 1\n\n\nb = = 2\n":    4,
	} {
		_, err := policy.Parse("t.toml", []byte(src), nil)
		var es policy.Errors
		if !errors.As(err, &es) || len(es) != 1 || !errors.Is(es[0], policy.ErrSyntax) || es[0].Line != want {
			t.Errorf("%q: want a syntax error on line %d, got %v", src, want, err)
		}
	}
}

// A quoted key with escapes is found on its line as TOML decodes it.
func TestEscapedKeysHaveLines(t *testing.T) {
	for _, src := range []string{"\n[\"\\b\"]\n", "\n\"\\u0041\" = 1\n", "\n[\"\\x41\"]\n", "\n[\"a\\tb\"]\n", "\n[\"\\U00000041\\\\\\\"\"]\n"} {
		_, err := policy.Parse("p.toml", []byte(src), nil)
		if err == nil || !strings.Contains(err.Error(), "p.toml:2:") {
			t.Errorf("%q: %v, want an error on line 2", src, err)
		}
	}
}

// A file included twice is one error at the second include, naming the
// first, rather than one error per rule it holds (each a duplicate name).
// A file two others include is the same file.
func TestIncludeTwice(t *testing.T) {
	inc := func(from, name string) (string, []byte, error) {
		if name == "a.toml" || name == "b.toml" {
			return name, []byte("[[rule]]\ninclude = \"./deny-defaults.toml\"\n"), nil
		}
		return "deny-defaults.toml", []byte("[[rule]]\nname = \"one\"\naction = \"deny\"\n[[rule]]\nname = \"two\"\naction = \"deny\"\n"), nil
	}
	for _, src := range []string{
		"[[rule]]\ninclude = \"deny-defaults.toml\"\n\n[[rule]]\ninclude = \"deny-defaults.toml\"\n",
		"[[rule]]\ninclude = \"a.toml\"\n\n[[rule]]\ninclude = \"b.toml\"\n",
	} {
		_, err := policy.Parse("main.toml", []byte(src), inc)
		var es policy.Errors
		if !errors.As(err, &es) || len(es) != 1 || !errors.Is(es[0], policy.ErrInclude) || !strings.Contains(es[0].Error(), "is included already, at ") {
			t.Errorf("%q: want one error naming the first include, got %v", src, err)
		}
	}
}

// An empty usbctrl list is told as what it is for a domain section, not
// in the words of an empty match list.
func TestEmptyUsbctrl(t *testing.T) {
	_, err := policy.Parse("p.toml", []byte("[domain.kiosk]\nusbctrl = []\n"), nil)
	var es policy.Errors
	if !errors.As(err, &es) || len(es) != 1 || es[0].Line != 2 || es[0].Key != "domain.kiosk.usbctrl" || !strings.Contains(es[0].Error(), "declares no controller") {
		t.Errorf("got %v", err)
	}
}
