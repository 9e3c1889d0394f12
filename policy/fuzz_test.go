package policy_test

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/usbhotplugd/usbhotplugd/policy"
)

func FuzzParse(f *testing.F) {
	files, _ := filepath.Glob("../rules/*.toml")
	more, _ := filepath.Glob("../rules/examples/*.toml")
	for _, p := range append(files, more...) {
		b, err := os.ReadFile(p)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	f.Add([]byte("[[rule]]\nname = \"a\"\naction = \"attach\"\nmatch = { id = \"046d:c31c\", interface = [\"hid:01:*\"] }\ntarget = { domain = \"vm\", controller = 0, port = 1 }\n"))
	f.Add([]byte("[domain.x]\nusbctrl = [\"version=2, ports=4\"]\n[[rule]]\ninclude = \"x\"\n"))
	f.Add([]byte("[[rule]]\nname = \"a\"\naction = \"deny\"\ndescription = \"\"\"x \\\"\"\" y\n\"\"\"\nmatch = {\n  id = \"046d:c31c\",\n  serial = [\n \"a\",\n ],\n}\n"))
	f.Add([]byte("hosts = [\"vdi-*\"]\n[[rules]]\n[rule.match.x.y]\na = [[[[1]]]]\n"))
	f.Add([]byte("[domain.vm]\nusbctrl = [\"version=2, ports=4\"]\n[[rule]]\nname = \"p\"\naction = \"attach\"\ntarget = { domain = \"vm\", controller = 0, port = 5 }\n"))
	inv := host()
	f.Fuzz(func(t *testing.T, b []byte) {
		p, err := policy.Parse("fuzz.toml", b, func(from, name string) (string, []byte, error) {
			return name, []byte("[[rule]]\nname = \"inc\"\naction = \"deny\"\nmatch = { class = \"storage\" }\n"), nil
		})
		if err != nil {
			var es policy.Errors
			if !errors.As(err, &es) || len(es) == 0 {
				t.Fatalf("error is not a non-empty policy.Errors: %v", err)
			}
			lines := bytes.Count(b, []byte("\n")) + 1
			for _, e := range es {
				if e.Kind == nil || !strings.HasPrefix(e.Error(), "fuzz.toml") && !strings.HasPrefix(e.Error(), "x") {
					t.Fatalf("error without kind or file: %v", e)
				}
				if e.File == "fuzz.toml" && (e.Line < 0 || e.Line > lines) {
					t.Fatalf("line %d of a %d-line file: %v", e.Line, lines, e)
				}
				// Past the size check, every error has its line.
				if e.File == "fuzz.toml" && e.Line == 0 && len(b) <= policy.MaxFileSize {
					t.Fatalf("an error without a line: %v", e)
				}
			}
			return
		}
		for i := range inv {
			d := p.Match(&inv[i], inv)
			if d.Action == policy.Attach && (d.Target == nil || d.Target.Domain == "") {
				t.Fatalf("attach without a target domain: %+v", d)
			}
			if d.Action == policy.Attach && inv[i].Class == 9 {
				t.Fatal("a hub was attached")
			}
			p.Explain(&inv[i], inv)
		}
		p.Shadowed()
	})
}

// FuzzInclude parses a main file whose includes all read inc: chains,
// cycles and depth limits end in errors, never a hang or a panic.
func FuzzInclude(f *testing.F) {
	f.Add([]byte("[[rule]]\ninclude = \"a\"\n"), []byte("[[rule]]\ninclude = \"./b/../a\"\n"))
	f.Add([]byte("[[rule]]\ninclude = \"a\"\n[[rule]]\nname = \"x\"\naction = \"deny\"\n"), []byte("[[rule]]\nname = \"x\"\naction = \"deny\"\n"))
	f.Add([]byte("[[rule]]\ninclude = \"a\"\n"), []byte("[[rule]]\ninclude = \"a\"\n[domain.d]\n"))
	f.Fuzz(func(t *testing.T, main, inc []byte) {
		reads := 0
		p, err := policy.Parse("main.toml", main, func(from, name string) (string, []byte, error) {
			reads++
			if reads > 1000 {
				t.Fatal("more than 1000 includes read")
			}
			return filepath.Join(filepath.Dir(from), name), inc, nil
		})
		if err != nil {
			var es policy.Errors
			if !errors.As(err, &es) || len(es) == 0 {
				t.Fatalf("error is not a non-empty policy.Errors: %v", err)
			}
			return
		}
		for i, r := range p.Rules {
			if r.Index != i+1 || r.Name == "" {
				t.Fatalf("rule %d: %+v", i, r)
			}
		}
	})
}

func FuzzSpec(f *testing.F) {
	for _, s := range []string{"version=2, ports=4", "type=devicemodel,version=3,ports=15", "hostbus=1,hostaddr=0x1a,controller=0,port=2", "busid=1-1.6", " ,,=", "hostaddr=08"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		if c, err := policy.ParseCtrlSpec(s); err == nil {
			if c.Check() != nil {
				t.Fatalf("accepted %q fails its own check", s)
			}
			again, err := policy.ParseCtrlSpec(c.String())
			if err != nil || again != c {
				t.Fatalf("%q → %q does not read back: %v", s, c.String(), err)
			}
		} else if !errors.Is(err, policy.ErrSpec) {
			t.Fatalf("error without ErrSpec: %v", err)
		}
		if d, err := policy.ParseDevSpec(s); err == nil {
			if d.HostBus < 1 || d.HostBus > 255 || d.HostAddr < 1 || d.HostAddr > 255 || d.Port != 0 && d.Controller < 0 {
				t.Fatalf("accepted %q as %+v", s, d)
			}
		} else if !errors.Is(err, policy.ErrSpec) {
			t.Fatalf("error without ErrSpec: %v", err)
		}
		words := strings.Fields(s)
		if _, err := policy.ParseDevArgs(words); err != nil && !errors.Is(err, policy.ErrSpec) {
			t.Fatalf("error without ErrSpec: %v", err)
		}
		if _, err := policy.ParseCtrlArgs(words); err != nil && !errors.Is(err, policy.ErrSpec) {
			t.Fatalf("error without ErrSpec: %v", err)
		}
	})
}

// bigPolicy is 1 000 rules of every kind, none of which matches the
// standard host's keyboard, ending with the one that does.
func bigPolicy() string {
	var b strings.Builder
	for i := range 999 {
		fmt.Fprintf(&b, "[[rule]]\nname = \"r%d\"\n", i)
		switch i % 5 {
		case 0:
			fmt.Fprintf(&b, "action = \"attach\"\nmatch = { id = \"%04x:%04x\" }\ntarget = { domain = \"vm%d\" }\n", 0x1000+i, i, i%7)
		case 1:
			fmt.Fprintf(&b, "action = \"deny\"\nmatch = { serial = \"SER-%d\" }\n", i)
		case 2:
			// Ports the kernel can name: 1 to 31 at each tier.
			fmt.Fprintf(&b, "action = \"attach\"\nmatch = { port = \"%d-%d.%d.*\" }\ntarget = { domain = \"vm%d\" }\n", 2+i%5, 1+i%31, 1+i/31%31, i%7)
		case 3:
			fmt.Fprintf(&b, "action = \"deny\"\nmatch = { interface = \"vendor:%02x:*\", manufacturer = \"M%d*\" }\n", i%256, i)
		case 4:
			fmt.Fprintf(&b, "action = \"attach\"\nmatch = { bus = %d, addr = %d }\ntarget = { domain = \"vm%d\", controller = 0, port = 1 }\n", 2+i%200, 1+i%127, i%7)
		}
	}
	b.WriteString("[[rule]]\nname = \"keyboard\"\naction = \"attach\"\nmatch = { id = \"046d:c31c\" }\ntarget = { domain = \"desk\" }\n")
	return b.String()
}

// inventory200 is 200 devices, twins among them.
func inventory200() []policy.Device {
	inv := make([]policy.Device, 0, 200)
	for i := range 200 {
		inv = append(inv, policy.Device{BusID: fmt.Sprintf("1-%d.%d", 1+i/14, 1+i%14), BusNum: 1, DevNum: 2 + i%126, Vendor: 0x046d, Product: uint16(0xc000 + i%50),
			Serial: fmt.Sprintf("S%d", i), Manufacturer: "Logitech", ProductName: "Device", Interfaces: []policy.Interface{{3, 1, 2}}, Plugged: uint64(i)})
	}
	inv[0].Product = 0xc31c
	return inv
}

func BenchmarkMatch1000Rules200Devices(b *testing.B) {
	p, err := policy.Parse("big.toml", []byte(bigPolicy()), nil)
	if err != nil {
		b.Fatal(err)
	}
	inv := inventory200()
	b.ReportAllocs()
	for b.Loop() {
		for i := range inv {
			p.Match(&inv[i], inv)
		}
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*len(inv))/1000, "µs/device")
}

func BenchmarkParse1000Rules(b *testing.B) {
	src := []byte(bigPolicy())
	b.SetBytes(int64(len(src)))
	b.ReportAllocs()
	for b.Loop() {
		if _, err := policy.Parse("big.toml", src, nil); err != nil {
			b.Fatal(err)
		}
	}
}
