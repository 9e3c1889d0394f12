package policygen

import (
	"errors"
	"fmt"
	"strings"

	"github.com/usbhotplugd/usbhotplugd/internal/usbsysfs"
	"github.com/usbhotplugd/usbhotplugd/policy"
)

// Options say what Generate writes.
type Options struct {
	Domain string // the guest every device goes to
	Prefer string // a key of Prefer; "" for BySerial
	// Usbctrl, if given, is the domain's controller list (xl.cfg specs),
	// written as its [domain.NAME] section; else the section is a comment.
	Usbctrl []string
	// InUse says why dom0 uses a device ("" when it does not): such a
	// device gets no rule, since the guard would keep it anyway.
	InUse func(usbsysfs.Device) string
}

// Generate writes a policy that attaches every device present (devs, as
// usbsysfs.Devices reads them) to o.Domain, each by its most stable
// identity; hubs, and devices dom0 uses, are listed as comments.
func Generate(devs []usbsysfs.Device, o Options) ([]byte, error) {
	if err := checkDomain(o.Domain); err != nil {
		return nil, err
	}
	var specs []policy.CtrlSpec
	for _, s := range o.Usbctrl {
		c, err := policy.ParseCtrlSpec(s)
		if err != nil {
			return nil, fmt.Errorf("usbctrl %q: %w", s, err)
		}
		specs = append(specs, c)
	}
	var b strings.Builder
	b.WriteString(header)
	writeDomain(&b, o.Domain, specs)
	used := names{}
	for _, d := range devs {
		label := fmt.Sprintf("%s  %s  %s", d.BusID, d.ID(), deviceName(d))
		if d.IsHub() || d.IsRootHub() {
			fmt.Fprintf(&b, "\n# %s: a hub; hubs are never passed through\n", comment(label))
			continue
		}
		if o.InUse != nil {
			if why := o.InUse(d); why != "" {
				fmt.Fprintf(&b, "\n# %s: in use by dom0 (%s); it stays there\n", comment(label), comment(why))
				continue
			}
		}
		id, err := Choose(d, devs, o.Prefer)
		if err != nil {
			return nil, err
		}
		r := Rule{
			Comments: []string{label, "  " + id.Why},
			Name:     used.unique(ruleBase(d)),
			Action:   "attach",
			Match:    id.Match(d),
			Target:   []KV{Str("domain", o.Domain)},
		}
		b.WriteString("\n" + r.TOML())
	}
	out := []byte(b.String())
	// What is written must parse: a device's strings are only ever quoted,
	// but this is the one place that proves it.
	if _, err := policy.Parse("generated policy", out, nil); err != nil {
		return nil, fmt.Errorf("policygen: the policy written does not parse: %w", err)
	}
	return out, nil
}

const header = `# A usbhotplugd policy for the USB devices present when it was written
# (usbhotplugd generate). Each rule names one device by the most stable
# identity it offers: its serial when no other device present has it, else
# the socket it is plugged into (port_path: anchored at the controller's
# PCI address, it survives bus renumbering). The first rule that matches a
# device decides; a device no rule names stays with dom0.
#
#   usbhotplugd check FILE                 is it valid?
#   usbhotplugd explain --policy FILE      what does it do with each device?
`

func writeDomain(b *strings.Builder, domain string, specs []policy.CtrlSpec) {
	if len(specs) == 0 {
		fmt.Fprintf(b, "\n# The controllers the agent creates for %s when it has none, as xl.cfg's usbctrl:\n", comment(domain))
		fmt.Fprintf(b, "# [domain.%s]\n# usbctrl = [\"version=2, ports=8\"]\n", comment(key(domain)))
		return
	}
	quoted := make([]string, len(specs))
	for i, c := range specs {
		quoted[i] = quote(c.String())
	}
	fmt.Fprintf(b, "\n[domain.%s]\nusbctrl = [%s]\n", key(domain), strings.Join(quoted, ", "))
}

func deviceName(d usbsysfs.Device) string {
	if n := strings.TrimSpace(d.Manufacturer + " " + d.ProductName); n != "" {
		return n
	}
	return "(no name)"
}

func ruleBase(d usbsysfs.Device) string {
	if s := slug(d.ProductName); s != "" {
		return s
	}
	return "device-" + strings.ReplaceAll(d.ID(), ":", "-")
}

// checkDomain refuses what policy would: a domain is named, never a domid.
func checkDomain(name string) error {
	src := "[[rule]]\nname = \"x\"\naction = \"attach\"\ntarget = { domain = " + quote(name) + " }\n"
	_, err := policy.Parse("domain", []byte(src), nil)
	var es policy.Errors
	if errors.As(err, &es) && len(es) > 0 {
		return fmt.Errorf("domain %q: %s", name, es[0].Msg)
	}
	return err
}

// key writes a table key: bare when TOML allows, else quoted.
func key(s string) string {
	for _, r := range s {
		if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '-' || r == '_') {
			return quote(s)
		}
	}
	return s
}
