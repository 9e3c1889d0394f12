package policygen

import (
	"strings"
	"testing"

	"github.com/usbhotplugd/usbhotplugd/internal/usbsysfs"
)

// noDevices is a host with nothing plugged in.
type noDevices struct{}

func (noDevices) Devices() ([]usbsysfs.Device, error)       { return nil, nil }
func (noDevices) BusIDByAddr(bus, addr int) (string, error) { return "", nil }

// A file whose name is missing, a number or no domain name is not
// converted, and the problem says why, at the name's line.
func TestImportRefusesABadName(t *testing.T) {
	for src, want := range map[string]string{
		"memory = 512\n":         "g.cfg:1: name: not converted: the file has no name",
		"\nname = 7\n":           "g.cfg:2: name: not converted: name is not a domain name in quotes (a list or a number)",
		"\n\nname = [ \"a\" ]\n": "g.cfg:3: name: not converted: name is not a domain name in quotes (a list or a number)",
		"\n\n\nname = \"a/b\"\n": `g.cfg:4: name: not converted: name is not a domain name in quotes (domain "a/b": `,
	} {
		c, err := ParseXLConfig("g.cfg", []byte(src))
		if err != nil {
			t.Fatal(err)
		}
		_, probs, err := Import([]*XLConfig{c}, noDevices{}, "")
		if err != nil {
			t.Fatal(err)
		}
		if len(probs) != 1 || !strings.HasPrefix(probs[0].String(), want) || !strings.HasSuffix(probs[0].String(), "; nothing of this file is converted") {
			t.Errorf("%q: %v, want one problem starting %q", src, probs, want)
		}
	}
}
