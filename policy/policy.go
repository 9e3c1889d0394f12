package policy

import (
	"errors"
	"fmt"
	"strings"
)

// An Action is what a decision does with a device.
type Action int

const (
	// None: no rule matched; the device stays with dom0.
	None Action = iota
	// Attach the device to the target domain.
	Attach
	// Deny: leave the device to dom0 and never attach it.
	Deny
	// Refuse: a rule matched but cannot be applied safely (twins it cannot
	// tell apart); nothing is attached.
	Refuse
	// Block: the device is made inert, in dom0 and everywhere: its
	// interfaces are deauthorized, so no driver probes them.
	Block
)

func (a Action) String() string {
	switch a {
	case Attach:
		return "attach"
	case Deny:
		return "deny"
	case Refuse:
		return "refuse"
	case Block:
		return "block"
	}
	return "none"
}

// MarshalText writes the action's name.
func (a Action) MarshalText() ([]byte, error) { return []byte(a.String()), nil }

// Duplicates says what an attach rule does when several present devices
// match it and it cannot tell them apart.
type Duplicates string

const (
	DupRefuse Duplicates = "refuse" // attach none of them, and say why (the default)
	DupFirst  Duplicates = "first"  // attach the one plugged first
	DupAll    Duplicates = "all"    // attach every one: the rule is meant for a kind of device
)

// A Policy is a parsed policy file with its includes.
type Policy struct {
	File string
	// Authorize is the [agent] authorize mode: AuthorizeOff (the
	// default) or AuthorizeBeforeProbe.
	Authorize string
	Rules     []*Rule            // in order; rules of an include stand where it does
	Domains   map[string]*Domain // by name
	Host      string             // the host drop-ins were selected for (Load)
	DropIns   []string           // the rules.d files read, in order, selected or not
	Skipped   []SkippedFile      // drop-ins whose hosts do not name Host
}

// A Domain is a [domain.NAME] section.
type Domain struct {
	Name string
	// Controllers the agent creates for the domain, as xl.cfg's usbctrl
	// list gives them; the devid of each is its index.
	Controllers []CtrlSpec
	File        string
	Line        int
}

// A Rule is one [[rule]].
type Rule struct {
	Index       int // 1-based position in the policy, includes expanded
	Name        string
	Description string
	File        string // the file it was written in
	Line        int
	Action      Action // Attach or Deny
	Match       Match
	Target      *Target // for Attach
	Duplicates  Duplicates
	Takeover    bool // may detach a device an admin attached by hand
	// Exec is a command (program and arguments, no shell) run after each
	// decision the rule makes, with the decision in its environment.
	Exec []string
	// classLine is the line of match.class, for the warning of a class
	// given per interface (ClassPerInterface); 0 when it has none.
	classLine int
}

// String names the rule as errors and logs do: `rule 3 "badge-reader"`.
func (r *Rule) String() string { return fmt.Sprintf("rule %d %q", r.Index, r.Name) }

// When restricts a rule to devices by when they arrived, so that what
// was plugged at boot and what is plugged later can be treated apart.
type When string

const (
	// WhenPresent: the device was plugged before the agent first started
	// since dom0 booted (a coldplugged device). Agent restarts do not
	// change it; unplugging it does.
	WhenPresent When = "present"
	// WhenPlugged: the device was plugged in after that.
	WhenPlugged When = "plugged"
)

// A Target is where an attach rule sends a device: a domain by name, and
// the controller and port preferences of an xl usbdev spec.
type Target struct {
	Domain string
	// Ctrl describes the controller to create when the domain has no free
	// port (type, version, ports; zero values are libxl's defaults).
	Ctrl CtrlSpec
	// Controller and Port prefer a controller (devid) and port, as xl's
	// controller= and port= do; -1 and 0 when not given.
	Controller int
	Port       int

	ctrlLine, portLine int // where they were written, for errors found later
}

// A Match is what a rule's [rule.match] requires; every given key must
// hold. The zero Match matches every device.
type Match struct {
	Bus, Addr    int         // bus number and device address, as xl's hostbus/hostaddr; 0 when not given
	IDs          []IDPattern // any of them
	Serials      []string    // any of them, exactly
	Ports        []string    // busid globs, any of them
	PortPaths    []string    // stable port path globs ("pci-0000:00:14.0-usb-0:1.4"), any of them
	Hashes       []string    // descriptor hashes, any of them
	ParentHashes []string    // the hub's descriptor hashes, any of them
	Class        int         // device class, -1 when not given
	Interfaces   []IfPattern
	AllIfaces    bool   // every interface must match one of Interfaces (else any one)
	Manufacturer string // glob
	ProductName  string // glob
	When         When   // "" for any device
}

// An IDPattern is vendor:product with -1 for "*".
type IDPattern struct{ Vendor, Product int }

func (p IDPattern) String() string {
	f := func(v int) string {
		if v < 0 {
			return "*"
		}
		return fmt.Sprintf("%04x", v)
	}
	return f(p.Vendor) + ":" + f(p.Product)
}

// An IfPattern is class:subclass:protocol with -1 for "*".
type IfPattern struct{ Class, SubClass, Protocol int }

func (p IfPattern) String() string {
	f := func(v int) string {
		if v < 0 {
			return "*"
		}
		return fmt.Sprintf("%02x", v)
	}
	return f(p.Class) + ":" + f(p.SubClass) + ":" + f(p.Protocol)
}

func (p IfPattern) matches(i Interface) bool {
	return (p.Class < 0 || p.Class == int(i.Class)) && (p.SubClass < 0 || p.SubClass == int(i.SubClass)) && (p.Protocol < 0 || p.Protocol == int(i.Protocol))
}

// Sentinel errors, wrapped by every *Error so that errors.Is can sort them.
var (
	ErrSyntax       = errors.New("TOML syntax")
	ErrUnknownKey   = errors.New("unknown key")
	ErrType         = errors.New("wrong type")
	ErrValue        = errors.New("bad value")
	ErrMissing      = errors.New("missing key")
	ErrDuplicate    = errors.New("duplicate")
	ErrNeverMatches = errors.New("can never match")
	ErrInclude      = errors.New("include")
)

// An Error is one problem in a policy, positioned.
type Error struct {
	File     string
	Line     int    // 0 when unknown
	Rule     int    // 1-based rule index, 0 outside rules
	RuleName string // "" when the rule has none (yet)
	Key      string // "match.id", "target.port", "domain.kiosk.usbctrl[1]"
	Kind     error  // one of the sentinels
	Msg      string
}

func (e *Error) Error() string {
	var b strings.Builder
	b.WriteString(e.File)
	if e.Line > 0 {
		fmt.Fprintf(&b, ":%d", e.Line)
	}
	b.WriteString(": ")
	if e.Rule > 0 {
		fmt.Fprintf(&b, "rule %d", e.Rule)
		if e.RuleName != "" {
			fmt.Fprintf(&b, " %q", e.RuleName)
		}
		b.WriteString(": ")
	}
	if e.Key != "" {
		b.WriteString(e.Key)
		b.WriteString(": ")
	}
	b.WriteString(e.Msg)
	return b.String()
}

func (e *Error) Unwrap() error { return e.Kind }

// Errors is every problem found in a policy, in file order.
type Errors []*Error

func (es Errors) Error() string {
	s := make([]string, len(es))
	for i, e := range es {
		s[i] = e.Error()
	}
	return strings.Join(s, "\n")
}

func (es Errors) Unwrap() []error {
	out := make([]error, len(es))
	for i, e := range es {
		out[i] = e
	}
	return out
}
