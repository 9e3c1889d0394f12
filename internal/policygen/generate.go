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
	Prefer string // see ValidPrefer; "" for BySerial
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
	if err := CheckDomain(o.Domain); err != nil {
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
	writeDomains(&b, o.Domain, specs)
	used := names{}
	console := consoleKeyboard(devs)
	for _, d := range devs {
		label := fmt.Sprintf("%s  %s  %s", d.BusID, d.ID(), deviceName(d))
		if d.IsHub() || d.IsRootHub() {
			b.WriteString("\n")
			b.Write(policy.FormatComment(label + ": a hub; hubs are never passed through"))
			continue
		}
		if o.InUse != nil {
			if why := o.InUse(d); why != "" {
				b.WriteString("\n")
				b.Write(policy.FormatComment(fmt.Sprintf("%s: in use by dom0 (%s); it stays there", label, why)))
				continue
			}
		}
		id, err := Choose(d, devs, o.Prefer)
		if err != nil {
			return nil, err
		}
		spec := policy.RuleSpec{
			Comment: label + "\n  " + id.Why,
			Name:    used.unique(ruleBase(d)),
			Action:  policy.Attach,
			Match:   id.Match(d),
			Domain:  o.Domain,
		}
		if d.BusID == console {
			// Passed, it would leave dom0's console with no keyboard:
			// the admin says so, not a draft.
			spec.Comment += "\n  dom0's keyboard (the first one present): kept in dom0; make it attach only if dom0 has another"
			spec.Action, spec.Domain = policy.Deny, ""
		}
		if err := writeRule(&b, spec); err != nil {
			return nil, err
		}
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

// writeDomains writes the domain's section when usbctrl is given, else
// the section as a comment.
func writeDomains(b *strings.Builder, domain string, specs []policy.CtrlSpec) {
	b.WriteString("\n")
	if len(specs) > 0 {
		writeDomain(b, domain, specs)
		return
	}
	b.Write(policy.FormatComment(fmt.Sprintf("The controllers the agent creates for %s when it has none, as xl.cfg's usbctrl:\n[domain.%s]\nusbctrl = [\"version=2, ports=8\"]",
		domain, policy.QuoteKey(domain))))
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
// CheckDomain refuses a domain name a rule cannot target (dom0, a domid,
// a name xl would never give), saying why.
func CheckDomain(name string) error {
	_, err := policy.FormatRule(policy.RuleSpec{Name: "x", Action: policy.Attach, Domain: name})
	var es policy.Errors
	if errors.As(err, &es) && len(es) > 0 {
		return fmt.Errorf("domain %q: %s", name, es[0].Msg)
	}
	return err
}

// consoleKeyboard is the first device present (in devs' order) with a
// boot keyboard interface (03:01:01): the one dom0's console likely uses.
func consoleKeyboard(devs []usbsysfs.Device) string {
	for _, d := range devs {
		for _, in := range d.Interfaces {
			if in.Class == 3 && in.SubClass == 1 && in.Protocol == 1 && !d.IsHub() {
				return d.BusID
			}
		}
	}
	return ""
}
