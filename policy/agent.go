package policy

import "fmt"

// The [agent] section: settings of the agent as a whole, in the main
// policy file only (a drop-in or an include changes rules, not the mode).

// The authorize modes.
const (
	// AuthorizeOff: dom0's drivers probe a new device as the kernel
	// plugs it; the agent takes the interfaces it attaches from them.
	AuthorizeOff = "off"
	// AuthorizeBeforeProbe: the agent keeps new interfaces deauthorized
	// (each root hub's interface_authorized_default = 0) and decides
	// first, so no dom0 driver ever sees a device meant for a guest.
	AuthorizeBeforeProbe = "before-probe"
)

var agentKeys = []string{"authorize"}

func (fp *fileParser) agent(v any, nested bool) {
	path := []string{"agent"}
	m, ok := v.(map[string]any)
	if !ok {
		fp.fail(nil, path, "agent", ErrType, "agent is a table: [agent]")
		return
	}
	if nested {
		fp.fail(nil, path, "agent", ErrValue, "[agent] is read from the main policy file only, not from a drop-in or an include")
		return
	}
	fp.unknown(nil, m, path, "agent.", agentKeys, nil)
	if s, ok := fp.str(nil, m, path, "authorize", "agent."); ok {
		switch s {
		case AuthorizeOff, AuthorizeBeforeProbe:
			fp.ps.pol.Authorize = s
		default:
			fp.fail(nil, append(path, "authorize"), "agent.authorize", ErrValue, "%q: authorize is %q (the default) or %q", s, AuthorizeOff, AuthorizeBeforeProbe)
		}
	}
}

// AuthorizesBeforeProbe says the policy keeps new devices inert until it
// has decided.
func (p *Policy) AuthorizesBeforeProbe() bool { return p.Authorize == AuthorizeBeforeProbe }

// Lockout warns, with authorization before probe on, when no rule keeps a
// keyboard in dom0: a policy that sends every keyboard to a guest, or
// blocks it, leaves the dom0 console without one. It tries a boot
// keyboard no rule names by id, at a port no rule names.
func (p *Policy) Lockout() string {
	if !p.AuthorizesBeforeProbe() {
		return ""
	}
	kbd := Device{BusID: "9-9", Vendor: 0xffff, Product: 0xfffe, Interfaces: []Interface{{Class: 3, SubClass: 1, Protocol: 1}}}
	dec := p.Match(&kbd, nil)
	const fix = `; a rule such as [[rule]] name = "dom0 keyboards" action = "deny" match = { interface = "03:01:01" } (or dom0's own keyboard by id or port) keeps one`
	switch {
	case dec.Action == Deny && dec.Rule != nil:
		return ""
	case dec.Action == None:
		return `[agent] authorize = "before-probe": no rule keeps a keyboard in dom0 (one no rule names goes to dom0 only because nothing matches it)` + fix
	case dec.Rule != nil:
		// Said by the rule that decides, not of the stand-in keyboard
		// asked about: no such device is on the host.
		what := dec.Action.String() + "s"
		if dec.Action == Attach && dec.Target != nil {
			what = "attaches to " + dec.Target.Domain
		}
		return fmt.Sprintf(`[agent] authorize = "before-probe": no rule keeps a keyboard in dom0: rule %d %q (%s:%d) %s any keyboard an earlier rule does not keep, so dom0's console could be left without one%s`,
			dec.Rule.Index, dec.Rule.Name, dec.Rule.File, dec.Rule.Line, what, fix)
	default:
		return fmt.Sprintf(`[agent] authorize = "before-probe": no rule keeps a keyboard in dom0: %s, so dom0's console could be left without one%s`, dec.Reason, fix)
	}
}
