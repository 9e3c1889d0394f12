package policygen

import (
	"errors"
	"fmt"
	"io/fs"
	"strconv"
	"strings"

	"github.com/usbhotplugd/usbhotplugd/internal/usbsysfs"
	"github.com/usbhotplugd/usbhotplugd/policy"
)

// A Problem is an xl.cfg line that was not converted, and why.
type Problem struct {
	File string
	Line int
	What string // "usbdev[1] \"hostbus=1\"", "name"
	Why  string
}

func (p Problem) String() string {
	return fmt.Sprintf("%s:%d: %s: not converted: %s", p.File, p.Line, p.What, p.Why)
}

// A Host is what the importer needs of the host: its devices now, and a
// way to find one by bus address as xl does.
type Host interface {
	Devices() ([]usbsysfs.Device, error)
	BusIDByAddr(bus, addr int) (string, error)
}

// Import converts xl.cfg files: each file's name= becomes a domain, its
// usbctrl= list that domain's [domain.NAME] section, and each usbdev=
// entry a rule for the device at that bus address now, named by its most
// stable identity. It returns the policy (which parses) and what it could
// not convert.
func Import(cfgs []*XLConfig, h Host, prefer string) ([]byte, []Problem, error) {
	devs, err := h.Devices()
	if err != nil {
		return nil, nil, err
	}
	im := &importer{h: h, devs: devs, prefer: prefer, names: names{}, domains: map[string]string{}, seen: map[string]string{}}
	var b strings.Builder
	b.WriteString(importHeader)
	for _, c := range cfgs {
		b.WriteString(im.file(c))
	}
	out := []byte(b.String())
	if _, err := policy.Parse("imported policy", out, nil); err != nil {
		return nil, nil, fmt.Errorf("policygen: the policy written does not parse: %w", err)
	}
	return out, im.problems, nil
}

const importHeader = `# A usbhotplugd policy converted from xl.cfg files (usbhotplugd
# import-xlcfg). Each file's usbctrl= list is its domain's [domain.NAME]
# section; each usbdev= entry is a rule for the device at that bus address
# when it was converted, named by the most stable identity it offers (xl's
# hostbus/hostaddr change each time a device is plugged in). Remove the
# usbdev= lines from the xl.cfg files once the agent attaches the devices.
`

type importer struct {
	h        Host
	devs     []usbsysfs.Device
	prefer   string
	names    names
	domains  map[string]string // domain → the file that named it
	seen     map[string]string // busid → the entry that converted it
	problems []Problem
}

func (im *importer) problem(c *XLConfig, line int, what, format string, a ...any) {
	im.problems = append(im.problems, Problem{c.File, line, what, fmt.Sprintf(format, a...)})
}

// file converts one xl.cfg file.
func (im *importer) file(c *XLConfig) string {
	name, ok := c.Get("name")
	if !ok {
		im.problem(c, 1, "name", "the file has no name = \"DOMAIN\" (xl refuses it too); nothing of this file is converted")
		return ""
	}
	if err := checkDomainErr(name.Value); err != nil {
		im.problem(c, name.Line, "name", "name is not a domain name in quotes (%v); nothing of this file is converted", err)
		return ""
	}
	dom := name.Value.Atom
	if prev, dup := im.domains[dom]; dup {
		im.problem(c, name.Line, "name", "domain %s is also named by %s, converted first; nothing of this file is converted", dom, prev)
		return ""
	}
	im.domains[dom] = c.File
	var b strings.Builder
	b.WriteString("\n")
	b.Write(policy.FormatComment(fmt.Sprintf("%s:%d  name = %s", c.File, name.Line, policy.Quote(dom))))
	ctrls := im.usbctrl(c, dom, &b)
	im.usbdevs(c, dom, ctrls, &b)
	if s, ok := c.Get("usbdevice"); ok {
		im.problem(c, s.Line, "usbdevice", "usbdevice= is QEMU's list of emulated devices of an HVM guest, not PVUSB: write a rule with target.type = \"devicemodel\" for a host device, by hand")
	}
	return b.String()
}

func checkDomainErr(v XLValue) error {
	if v.IsList || v.Number {
		return errors.New("a list or a number")
	}
	return CheckDomain(v.Atom)
}

// stringsOf returns a list setting's items; a single string is
// refused as xl refuses it.
func (im *importer) stringsOf(c *XLConfig, key string) ([]XLValue, int, bool) {
	s, ok := c.Get(key)
	if !ok {
		return nil, 0, false
	}
	if !s.Value.IsList {
		im.problem(c, s.Line, key, "%s is a single value; xl takes a list: %s = [ \"...\" ]", key, key)
		return nil, s.Line, false
	}
	return s.Value.List, s.Line, true
}

func itemName(key string, i int, v XLValue) string {
	if v.IsList || v.Number {
		return fmt.Sprintf("%s[%d]", key, i)
	}
	return fmt.Sprintf("%s[%d] %s", key, i, policy.Quote(v.Atom))
}

// controllers are a domain's converted usbctrl list. Devids from unknown
// on are not known, since an entry before them was not converted.
type controllers struct {
	specs   []policy.CtrlSpec
	unknown int // -1 when every entry was converted
}

// usbctrl writes the domain section.
func (im *importer) usbctrl(c *XLConfig, dom string, b *strings.Builder) controllers {
	ctrls := controllers{unknown: -1}
	items, line, ok := im.stringsOf(c, "usbctrl")
	if !ok {
		return ctrls
	}
	for i, v := range items {
		var err error
		var spec policy.CtrlSpec
		if v.IsList || v.Number {
			err = errors.New("each controller is a string in quotes")
		} else {
			spec, err = policy.ParseCtrlSpec(v.Atom)
		}
		if err != nil {
			im.problem(c, v.Line, itemName("usbctrl", i, v), "%v", err)
			if ctrls.unknown < 0 {
				ctrls.unknown = i
			}
			continue
		}
		ctrls.specs = append(ctrls.specs, spec)
	}
	if len(ctrls.specs) > 0 {
		b.Write(policy.FormatComment(fmt.Sprintf("%s:%d  usbctrl: the controllers the agent creates, devid 0 first", c.File, line)))
		writeDomain(b, dom, ctrls.specs)
	}
	return ctrls
}

func (im *importer) usbdevs(c *XLConfig, dom string, ctrls controllers, b *strings.Builder) {
	items, _, ok := im.stringsOf(c, "usbdev")
	if !ok {
		return
	}
	for i, v := range items {
		what := itemName("usbdev", i, v)
		if v.IsList || v.Number {
			im.problem(c, v.Line, what, "each device is a string in quotes")
			continue
		}
		at := fmt.Sprintf("%s:%d  %s", c.File, v.Line, what)
		r, why := im.usbdev(dom, v.Atom, ctrls, at)
		if why != "" {
			im.problem(c, v.Line, what, "%s", why)
			continue
		}
		r.Comment = at + "\n" + r.Comment
		if err := writeRule(b, r); err != nil {
			im.problem(c, v.Line, what, "%v", err)
		}
	}
}

// usbdev converts one usbdev spec; why says why it cannot be.
func (im *importer) usbdev(dom, spec string, ctrls controllers, at string) (policy.RuleSpec, string) {
	ds, err := policy.ParseDevSpec(spec)
	if err != nil {
		return policy.RuleSpec{}, err.Error()
	}
	if ctrls.unknown >= 0 && ds.Controller >= ctrls.unknown {
		return policy.RuleSpec{}, fmt.Sprintf("controller=%d: usbctrl[%d] was not converted, so which controller has devid %d is not known", ds.Controller, ctrls.unknown, ds.Controller)
	}
	d, why := im.deviceAt(ds.HostBus, ds.HostAddr)
	if why != "" {
		return policy.RuleSpec{}, why
	}
	if prev, dup := im.seen[d.BusID]; dup {
		return policy.RuleSpec{}, fmt.Sprintf("%s (bus %d addr %d) is converted already, from %s: a device goes to one guest, and the first rule that names it decides", d.BusID, ds.HostBus, ds.HostAddr, prev)
	}
	id, err := Choose(d, im.devs, im.prefer)
	if err != nil {
		return policy.RuleSpec{}, err.Error()
	}
	var pins []policy.KeyValue
	if ds.Controller >= 0 {
		pins = append(pins, policy.KeyValue{Key: "controller", Value: strconv.Itoa(ds.Controller)})
	}
	if ds.Port > 0 {
		pins = append(pins, policy.KeyValue{Key: "port", Value: strconv.Itoa(ds.Port)})
	}
	r := policy.RuleSpec{
		Comment: fmt.Sprintf("  %s  %s  %s (bus %d addr %d when converted)\n  %s", d.BusID, d.ID(), deviceName(d), ds.HostBus, ds.HostAddr, id.Why),
		Name:    "x", // named once it is known to be converted
		Action:  policy.Attach,
		Match:   id.Match(d),
		Domain:  dom,
		Pins:    pins,
	}
	if why := checkRule(dom, ctrls.specs, r); why != "" {
		return policy.RuleSpec{}, why
	}
	r.Name = im.names.unique(slug(dom) + "-" + ruleBase(d))
	im.seen[d.BusID] = strings.Replace(at, "  ", " ", 1)
	return r, ""
}

// deviceAt finds the device at a bus address as xl does.
func (im *importer) deviceAt(bus, addr int) (usbsysfs.Device, string) {
	busid, err := im.h.BusIDByAddr(bus, addr)
	if errors.Is(err, fs.ErrNotExist) {
		return usbsysfs.Device{}, fmt.Sprintf("no device is at bus %d addr %d now (an address changes each time a device is plugged in): plug the device in, find it with usbhotplugd devices, and run this again or write its rule", bus, addr)
	}
	if err != nil {
		return usbsysfs.Device{}, err.Error()
	}
	for _, d := range im.devs {
		if d.BusID != busid {
			continue
		}
		if d.IsHub() || d.IsRootHub() {
			return usbsysfs.Device{}, fmt.Sprintf("%s (%s) is a hub: hubs are never passed through", busid, d.ID())
		}
		return d, ""
	}
	return usbsysfs.Device{}, fmt.Sprintf("%s (bus %d addr %d) left while it was read", busid, bus, addr)
}

// checkRule refuses what policy would: a device string no rule could
// match, or a controller or port the domain's controllers do not have.
func checkRule(dom string, ctrls []policy.CtrlSpec, r policy.RuleSpec) string {
	var b strings.Builder
	if len(ctrls) > 0 {
		writeDomain(&b, dom, ctrls)
	}
	var es policy.Errors
	err := writeRule(&b, r)
	if err == nil {
		_, err = policy.Parse("usbctrl", []byte(b.String()), nil)
		if errors.As(err, &es) && len(es) > 0 {
			return strings.Replace(es[0].Msg, " (usbctrl:1)", "", 1) + " (xl fails to create the domain)"
		}
	}
	if errors.As(err, &es) && len(es) > 0 {
		return fmt.Sprintf("%s: %s", es[0].Key, es[0].Msg)
	}
	if err != nil {
		return err.Error()
	}
	return ""
}
