package policy_test

import (
	"fmt"
	"testing"

	"github.com/usbhotplugd/usbhotplugd/policy"
)

// manyRules is a policy of n specific rules, as a large site's generated
// policy would be: one per device, by id and serial, over 50 guests.
func manyRules(n int) []byte {
	var b []byte
	for i := range n {
		b = fmt.Appendf(b, "[[rule]]\nname = \"r%d\"\naction = \"attach\"\nmatch = { id = \"%04x:%04x\", serial = \"S%d\" }\ntarget = { domain = \"vm%d\" }\n\n",
			i, i%65536, (i*7)%65536, i, i%50)
	}
	return b
}

// The parse of 100 000 rules and every check of them: what `check` does.
func BenchmarkCheck100k(b *testing.B) {
	src := manyRules(100_000)
	b.SetBytes(int64(len(src)))
	for b.Loop() {
		p, err := policy.Parse("big.toml", src, nil)
		if err != nil {
			b.Fatal(err)
		}
		if w := p.Warnings(); len(w) != 0 {
			b.Fatal(w[0])
		}
	}
}

// 100 000 rules (20 000 under the race detector) parse, every one kept
// in order, none shadowed. No time is
// asserted: BenchmarkCheck100k measures it.
func TestManyRules(t *testing.T) {
	if testing.Short() {
		t.Skip("-short")
	}
	n := 100_000
	if raceEnabled {
		n = 20_000
	}
	p, err := policy.Parse("big.toml", manyRules(n), nil)
	if err != nil {
		t.Fatal(err)
	}
	if last := p.Rules[len(p.Rules)-1]; len(p.Rules) != n || last.Name != fmt.Sprintf("r%d", n-1) || last.Index != n {
		t.Fatalf("%d rules, last %v", len(p.Rules), p.Rules[len(p.Rules)-1])
	}
	if f := p.Shadowed(); len(f) != 0 {
		t.Fatalf("shadowed: %v", f[0])
	}
}
