package policygen

import (
	"strings"
	"testing"

	"github.com/usbhotplugd/usbhotplugd/internal/usbsysfs"
	"github.com/usbhotplugd/usbhotplugd/policy"
)

// A rule named after a serial policy would refuse in a name (not UTF-8,
// a bidirectional override, a C1 control, too long in Greek) is still a
// name the policy takes.
func TestRuleNameIsAlwaysValid(t *testing.T) {
	d := usbsysfs.Device{BusID: "1-2", Vendor: 0x0781, Product: 0x5581}
	for _, serial := range []string{"AB\xffCD", "AB\u202eDC", "AB\u0085CD", "AB\tCD", strings.Repeat("σ", 100), strings.Repeat("x", 100)} {
		n := ruleName(d, Identity{Key: BySerial, Value: serial})
		if _, err := policy.FormatRule(policy.RuleSpec{Name: n, Action: policy.Attach, Domain: "kiosk"}); err != nil {
			t.Errorf("serial %q: name %q: %v", serial, n, err)
		}
	}
}
