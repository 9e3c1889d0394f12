package policy

import "fmt"

// checkPins refuses a target's controller or port that the domain's
// section says cannot exist: the agent creates exactly the controllers
// declared there, so a pin beyond them would wait forever.
func (ps *parseState) checkPins() {
	for _, r := range ps.pol.Rules {
		t := r.Target
		if t == nil || t.Controller < 0 {
			continue
		}
		d := ps.pol.Domains[t.Domain]
		if d == nil || len(d.Controllers) == 0 {
			continue // the guest's own controllers are not known before it runs
		}
		fail := func(line int, key, format string, a ...any) {
			e := &Error{File: r.File, Line: line, RuleName: r.Name, Key: key, Kind: ErrNeverMatches, Msg: fmt.Sprintf(format, a...)}
			ps.pending = append(ps.pending, pendingErr{r, e})
		}
		if t.Controller >= len(d.Controllers) {
			fail(t.ctrlLine, "target.controller", "controller %d does not exist: [domain.%s] (%s:%d) declares controllers 0 to %d",
				t.Controller, d.Name, d.File, d.Line, len(d.Controllers)-1)
			continue
		}
		c := d.Controllers[t.Controller]
		if n := portsOf(c); t.Port > n {
			fail(t.portLine, "target.port", "port %d does not exist: controller %d of [domain.%s] (%s:%d) has ports 1 to %d",
				t.Port, t.Controller, d.Name, d.File, d.Line, n)
		}
	}
}

// portsOf is a controller's number of ports, libxl's default when the
// spec gives none; for type auto the largest the type chosen could have.
func portsOf(c CtrlSpec) int {
	if c.Ports != 0 {
		return c.Ports
	}
	if c.Type == TypeDeviceModel {
		switch c.Version {
		case 1:
			return 2
		case 3:
			return 15
		}
		return 6
	}
	return 8
}
