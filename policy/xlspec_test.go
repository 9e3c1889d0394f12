package policy_test

import (
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/usbhotplugd/usbhotplugd/policy"
)

// Every key and combination of pvusb-reference.md section 5, read as xl
// reads it, and every refusal; the golden file holds the results.
func TestSpecStrings(t *testing.T) {
	var out strings.Builder
	ctrl := func(kind string, f func() (policy.CtrlSpec, error)) {
		c, err := f()
		if err != nil {
			if !errors.Is(err, policy.ErrSpec) {
				t.Errorf("%s: error without ErrSpec: %v", kind, err)
			}
			fmt.Fprintf(&out, "%s => error: %v\n", kind, err)
			return
		}
		fmt.Fprintf(&out, "%s => type=%q version=%d ports=%d\n", kind, c.Type, c.Version, c.Ports)
	}
	dev := func(kind string, f func() (policy.DevSpec, error)) {
		d, err := f()
		if err != nil {
			if !errors.Is(err, policy.ErrSpec) {
				t.Errorf("%s: error without ErrSpec: %v", kind, err)
			}
			fmt.Fprintf(&out, "%s => error: %v\n", kind, err)
			return
		}
		fmt.Fprintf(&out, "%s => hostbus=%d hostaddr=%d busid=%q controller=%d port=%d\n", kind, d.HostBus, d.HostAddr, d.BusID, d.Controller, d.Port)
	}
	fmt.Fprintln(&out, "# usbctrl specs (xl.cfg)")
	for _, s := range []string{
		"", "version=2, ports=4", "version=1,ports=4", "type=pv,version=2,ports=8", "type=PV", "type=QUSB, version=1, ports=31",
		"type=devicemodel,version=3,ports=15", "type=devicemodel,version=1", "type=devicemodel,version=1,ports=2", "type=devicemodel,version=2,ports=6",
		"type=devicemodel,version=2,ports=8", "type=devicemodel,version=3,ports=16", "type=devicemodel,version=4", "type=auto,version=3",
		",,version=2,,", "   ports=4", "type=pv ", "ports=4 ", "ports= 4", "ports=32", "ports=0", "version=0", "version=3,type=pv", "ports=4x",
		"ports=", "ports=-1", "version=2;ports=4", "speed=high", "version", "type=usb", "TYPE=pv", " version=2 , ports=4",
	} {
		ctrl(fmt.Sprintf("usbctrl %q", s), func() (policy.CtrlSpec, error) { return policy.ParseCtrlSpec(s) })
	}
	fmt.Fprintln(&out, "# xl usbctrl-attach words")
	for _, w := range [][]string{
		{}, {"version=2", "ports=4"}, {"type=qusb"}, {"version=1,ports=4"}, {"ports=4", "ports=6"}, {"bogus=1"}, {"type=PV", "ports=99"},
	} {
		ctrl(fmt.Sprintf("usbctrl-attach %q", w), func() (policy.CtrlSpec, error) { return policy.ParseCtrlArgs(w) })
	}
	fmt.Fprintln(&out, "# usbdev specs (xl.cfg)")
	for _, s := range []string{
		"hostbus=1, hostaddr=6", "hostbus=1,hostaddr=6,controller=0,port=2", "hostbus=0x1,hostaddr=0x1a", "hostbus=1,hostaddr=010",
		"hostbus=1,hostaddr=08", "hostbus=1,hostaddr=256", "hostbus=0,hostaddr=6", "hostbus=1", "hostaddr=6", "type=hostdev,hostbus=1,hostaddr=6",
		"type=HOSTDEV,hostbus=1,hostaddr=6", "type=pv,hostbus=1,hostaddr=6", "hostbus=1,hostaddr=6,port=2", "hostbus=1,hostaddr=6,controller=1",
		"hostbus=1,hostaddr=6,controller=0,port=0", "hostbus=1,hostaddr=6,busid=1-1", "hostbus=-1,hostaddr=6", "hostbus=1,hostaddr=6x",
		"hostbus=1 ,hostaddr=6 ", "hostbus=1,hostaddr=0x", "hostbus=1,hostaddr=6,controller=-1", "hostbus=1,hostaddr=6,hostaddr=7",
	} {
		dev(fmt.Sprintf("usbdev %q", s), func() (policy.DevSpec, error) { return policy.ParseDevSpec(s) })
	}
	fmt.Fprintln(&out, "# usbdev-attach words")
	for _, w := range [][]string{
		{"hostbus=1", "hostaddr=6"}, {"busid=1-1.6"}, {"busid=1-1.6", "controller=0", "port=3"}, {"busid=../x"}, {"busid=usb1"},
		{"busid=1-1.6", "hostbus=1", "hostaddr=6"}, {}, {"hostbus=1,hostaddr=6"}, {"controller=0", "port=1"}, {"busid=1-2", "busid=1-3"},
	} {
		dev(fmt.Sprintf("usbdev-attach %q", w), func() (policy.DevSpec, error) { return policy.ParseDevArgs(w) })
	}
	golden(t, "spec.golden", out.String())
}

func TestCtrlSpecString(t *testing.T) {
	for in, want := range map[string]string{"version=2, ports=4": "version=2,ports=4", "type=PV": "type=pv", "": ""} {
		c, err := policy.ParseCtrlSpec(in)
		if err != nil || c.String() != want {
			t.Errorf("%q: %q %v, want %q", in, c.String(), err, want)
		}
	}
}
