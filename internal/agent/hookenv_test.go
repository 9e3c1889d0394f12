package agent

import (
	"strings"
	"testing"
)

// A hook gets the device's strings and its port path raw, as documented,
// and as a plain word in the _SAFE variables; a NUL (which exec refuses)
// is dropped.
func TestHookEnvDeviceStrings(t *testing.T) {
	env := hookEnv(Audit{Serial: "A1\x1b[2J; rm -rf /\x00", Name: "Acme $(reboot) \u202e", PortPath: "platform-3f980000.usb-usb-0:1.2 x"})
	want := map[string]string{
		"USBHOTPLUGD_SERIAL":         "A1\x1b[2J; rm -rf /",
		"USBHOTPLUGD_SERIAL_SAFE":    "A1__2J__rm_-rf___",
		"USBHOTPLUGD_NAME":           "Acme $(reboot) \u202e",
		"USBHOTPLUGD_NAME_SAFE":      "Acme___reboot___",
		"USBHOTPLUGD_PORT_PATH":      "platform-3f980000.usb-usb-0:1.2 x",
		"USBHOTPLUGD_PORT_PATH_SAFE": "platform-3f980000.usb-usb-0:1.2_x",
	}
	for _, kv := range env {
		k, v, _ := strings.Cut(kv, "=")
		if w, ok := want[k]; ok {
			if v != w {
				t.Errorf("%s=%q, want %q", k, v, w)
			}
			delete(want, k)
		}
	}
	for k := range want {
		t.Errorf("no %s", k)
	}
}

// A hook learns where the rule is written, the twins that made a rule
// ambiguous, and which step failed; each is empty when it does not apply.
func TestHookEnvRuleTwinsFailedStep(t *testing.T) {
	for _, c := range []struct {
		r    Audit
		want map[string]string
	}{
		{Audit{Action: ActRefused, Rule: "badge", RuleAt: "/etc/usbhotplugd/policy.toml:12", Twins: []string{"1-3", "1-4.2"}},
			map[string]string{"RULE_SOURCE": "/etc/usbhotplugd/policy.toml:12", "TWINS": "1-3 1-4.2", "FAILED_STEP": ""}},
		{Audit{Action: ActFailed, Rule: "badge", RuleAt: "rules.d/10-x.toml:3", FailedStep: "attach"},
			map[string]string{"RULE_SOURCE": "rules.d/10-x.toml:3", "TWINS": "", "FAILED_STEP": "attach"}},
		{Audit{Action: ActUnmatched}, map[string]string{"RULE_SOURCE": "", "TWINS": "", "FAILED_STEP": ""}},
	} {
		got := map[string]string{}
		for _, kv := range hookEnv(c.r) {
			k, v, _ := strings.Cut(kv, "=")
			got[k] = v
		}
		for k, w := range c.want {
			if v, ok := got["USBHOTPLUGD_"+k]; !ok || v != w {
				t.Errorf("%s: USBHOTPLUGD_%s=%q (set: %v), want %q", c.r.Action, k, v, ok, w)
			}
		}
	}
}
