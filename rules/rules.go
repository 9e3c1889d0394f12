// Package rules holds the policy files usbhotplugd ships (the reference,
// the examples, the deny defaults) and the demo trace, embedded so that
// `usbhotplugd replay` works anywhere.
package rules

import (
	"embed"
	"path"

	"github.com/usbhotplugd/usbhotplugd/policy"
)

//go:embed *.toml examples/*.toml demo/*
var files embed.FS

// Read returns an embedded file ("examples/kiosk.toml", "demo/kiosk-day.jsonl").
func Read(name string) ([]byte, error) { return files.ReadFile(name) }

// Parse parses an embedded policy, its includes resolved among the
// embedded files.
func Parse(name string) (*policy.Policy, error) {
	b, err := files.ReadFile(name)
	if err != nil {
		return nil, err
	}
	return policy.Parse("rules/"+name, b, func(from, inc string) (string, []byte, error) {
		p := path.Join(path.Dir(from), inc)
		b, err := files.ReadFile(p[len("rules/"):])
		return p, b, err
	})
}
