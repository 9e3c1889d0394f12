package agent

import (
	"slices"
	"strings"
	"testing"

	"github.com/usbhotplugd/usbhotplugd/internal/assign"
	"github.com/usbhotplugd/usbhotplugd/internal/usbsysfs"
	"github.com/usbhotplugd/usbhotplugd/policy"
)

// The planner's table: every state of the package doc's table, and every
// transition out of it, as makePlan plans it.
func TestPlanTable(t *testing.T) {
	rule := &policy.Rule{Name: "r", Index: 1, Action: policy.Attach, Target: &policy.Target{Domain: "kiosk", Controller: -1}}
	takeover := &policy.Rule{Name: "t", Index: 2, Action: policy.Attach, Target: rule.Target, Takeover: true}
	attach := policy.Decision{Action: policy.Attach, Rule: rule, Target: rule.Target, Reason: "r attaches it"}
	moveIt := policy.Decision{Action: policy.Attach, Rule: takeover, Target: rule.Target, Reason: "t attaches it"}
	deny := policy.Decision{Action: policy.Deny, Reason: "denied"}
	refuse := policy.Decision{Action: policy.Refuse, Rule: rule, Reason: "twins", Twins: []string{"1-3"}}
	none := policy.Decision{Action: policy.None, Reason: "no rule"}
	kiosk := world{domains: map[string][]uint32{"kiosk": {5}, "desk": {6}}}
	down := world{domains: map[string][]uint32{"desk": {6}}}
	twoKiosks := world{domains: map[string][]uint32{"kiosk": {7, 5}}}
	dry := kiosk
	dry.dryRun = true
	withAuthz := func(w world) world { w.authorize = true; return w }
	blockIt := policy.Decision{Action: policy.Block, Rule: &policy.Rule{Name: "b", Index: 3, Action: policy.Block}, Reason: "b blocks it"}

	dev := func(drivers ...string) usbsysfs.Device {
		d := usbsysfs.Device{BusID: "1-2", Vendor: 0x1234, Product: 0x5678, NumInterfaces: len(drivers)}
		for i, drv := range drivers {
			d.Interfaces = append(d.Interfaces, usbsysfs.Interface{Name: "1-2:1." + string(rune('0'+i)), Driver: drv})
		}
		return d
	}
	here := func(trig Trigger, drivers ...string) observation {
		return observation{busid: "1-2", trigger: trig, present: true, probed: true, dev: dev(drivers...)}
	}
	at := func(o observation, domid uint32) observation {
		o.port = &assign.Assignment{Domid: domid, Controller: 0, Port: 1, BusID: "1-2", Type: policy.TypePV}
		return o
	}
	owned := func(o observation, domid uint32) observation {
		o.owned = &Owned{Domain: "kiosk", Domid: domid, Controller: 0, Port: 1, Rule: "r", ID: "1234:5678"}
		return o
	}
	last := func(o observation, act Action, reason string) observation {
		o.last, o.known = Audit{BusID: "1-2", Action: act, Reason: reason}, true
		if o.port != nil {
			o.last.Domid, o.last.Ctrl, o.last.Port = int(o.port.Domid), o.port.Controller, o.port.Port
		}
		return o
	}
	with := func(o observation, f func(*observation)) observation { f(&o); return o }
	gone := observation{busid: "1-2", trigger: kernelTrigger("remove")}

	reached := map[State]bool{}
	for _, c := range []struct {
		name   string
		o      observation
		dec    policy.Decision
		w      world
		state  State
		steps  []stepKind
		action Action // of the last audit step, "" for none
		reason string // in that audit's reason
	}{
		// absent
		{"absent: unknown device left", gone, none, kiosk, StAbsent, []stepKind{stepForget, stepRelease}, "", ""},
		{"absent: known device left", last(gone, ActUnmatched, "x"), none, kiosk, StAbsent, []stepKind{stepForget, stepRelease, stepAudit}, ActGone, "left the host"},
		{"absent: left while attached", last(owned(at(gone, 5), 5), ActAttached, "x"), none, kiosk, StAbsent,
			[]stepKind{stepForget, stepDropRecords, stepDetach, stepAudit, stepRelease, stepRmOwned, stepAudit}, ActGone, ""},
		{"absent: left while attached, id known", with(owned(at(gone, 5), 5), func(o *observation) { o.last, o.known = Audit{ID: "1234:5678", Action: ActAttached}, true }), none, kiosk, StAbsent,
			[]stepKind{stepForget, stepDropRecords, stepDetach, stepRememberLeft, stepAudit, stepRelease, stepRmOwned, stepAudit}, ActGone, ""},
		{"absent: at a port, never known: its cleared entry goes too", at(gone, 5), none, kiosk, StAbsent,
			[]stepKind{stepForget, stepDropRecords, stepDetach, stepAudit, stepRelease, stepAudit}, ActGone, "left the host"},
		{"absent: its driver records go first, at no port", with(gone, func(o *observation) { o.record = true }), none, kiosk, StAbsent,
			[]stepKind{stepForget, stepDropRecords, stepRelease}, "", ""},
		{"absent: it left in the middle of a give-back to dom0: its giving record goes", with(gone, func(o *observation) { o.giving = true }), none, kiosk, StAbsent,
			[]stepKind{stepForget, stepRelease, stepRmGiving}, "", ""},
		{"absent: its twins are told", with(gone, func(o *observation) { o.twinOf = []string{"1-3"} }), none, kiosk, StAbsent,
			[]stepKind{stepForget, stepRelease, stepRequeue}, "", ""},
		{"absent: dry run writes nothing", last(at(gone, 5), ActAttached, "x"), none, dry, StAbsent, []stepKind{stepForget, stepAudit, stepAudit}, ActGone, ""},
		// probing
		{"probing: not probed yet, at a kernel event: looked at again", with(here("add", "usbhid"), func(o *observation) { o.probed = false }), none, kiosk, StProbing,
			[]stepKind{stepLookLater}, "", ""},
		{"probing: not probed yet, at a start: in status", with(here(TrigStart), func(o *observation) { o.probed = false }), none, kiosk, StProbing,
			[]stepKind{stepAudit}, ActPending, "drivers_autoprobe"},
		{"probing: a probe under way, at the look", with(here(TrigProbeLook, "usbhid"), func(o *observation) { o.probed, o.dev.NumInterfaces = false, 2 }), none, kiosk, StProbing,
			[]stepKind{stepAudit}, ActPending, "1 of its 2 interfaces"},
		{"probing: its last decision stands", last(with(here(TrigStart), func(o *observation) { o.probed = false }), ActUnmatched, "x"), none, kiosk, StProbing, nil, "", ""},
		{"probing: its device lock held (busy), at its port", last(with(here(TrigUnlocked, "usbback"), func(o *observation) {
			o.probed, o.busy, o.dev = false, true, usbsysfs.Device{}
			o.port = &assign.Assignment{Domid: 1, Controller: 0, Port: 1, BusID: o.busid, Type: policy.TypePV}
		}), ActKept, "x"), none, kiosk, StProbing, nil, "", ""},
		{"probing: its device lock held (busy), at its port, never read", with(here(TrigUnlocked, "usbback"), func(o *observation) {
			o.probed, o.busy, o.dev = false, true, usbsysfs.Device{}
			o.port = &assign.Assignment{Domid: 1, Controller: 0, Port: 1, BusID: o.busid, Type: policy.TypePV}
		}), none, kiosk, StProbing, []stepKind{stepAudit}, ActPending, "device lock"},
		// with dom0
		{"with dom0: no rule", here("add", "usbhid"), none, kiosk, StWithDom0, []stepKind{stepAudit}, ActUnmatched, "no rule"},
		{"with dom0: a rescan repeats nothing", last(here("add", "usbhid"), ActUnmatched, "no rule"), none, kiosk, StWithDom0, nil, "", ""},
		{"with dom0: a driverless interface is left alone", last(here(TrigStart, "usbhid", ""), ActUnmatched, "no rule"), none, kiosk, StWithDom0, nil, "", ""},
		{"with dom0: driverless, first look", here("bind", ""), none, kiosk, StWithDom0, []stepKind{stepAudit}, ActUnmatched, ""},
		// denied, refused
		{"denied", here("add", "usbhid"), deny, kiosk, StDenied, []stepKind{stepAudit}, ActDenied, "denied"},
		{"denied: its old ownership record goes", owned(here("add", "usbhid"), 5), deny, kiosk, StDenied, []stepKind{stepRmOwned, stepAudit}, ActDenied, ""},
		{"refused: twins told when it changes", here("add", "usbhid"), refuse, kiosk, StRefused, []stepKind{stepAudit, stepRequeue}, ActRefused, "twins"},
		{"refused: a new reason only, twins not woken", last(here("add", "usbhid"), ActRefused, "other twins"), refuse, kiosk, StRefused, []stepKind{stepAudit}, ActRefused, "twins"},
		{"refused: unchanged, twins not told again", last(here("add", "usbhid"), ActRefused, "twins"), refuse, kiosk, StRefused, nil, "", ""},
		// settling (someone else mid-way)
		{"settling: in usbback at no port", here("unbind", "usbback"), none, kiosk, StSettling, []stepKind{stepLookLater}, "", ""},
		{"settling: once attached, an interface left without a driver", with(here("bind", "usbhid", ""), func(o *observation) { o.ours = true }), none, kiosk, StSettling, []stepKind{stepLookLater}, "", ""},
		{"settling → with dom0: it is offered to the kernel", with(here(TrigAfterCleared, "usbhid", ""), func(o *observation) { o.ours = true }), none, kiosk, StWithDom0,
			[]stepKind{stepMarkGiving, stepRelease, stepAudit, stepToDom0, stepAudit}, ActUnmatched, ""},
		{"settling: records at no port", with(here("bind", "usbhid"), func(o *observation) { o.record = true }), none, kiosk, StSettling, []stepKind{stepLookLater}, "", ""},
		{"settling → with dom0: second look releases, the give to dom0 recorded before", here(TrigAfterCleared, "usbback"), none, kiosk, StWithDom0,
			[]stepKind{stepMarkGiving, stepRelease, stepAudit, stepToDom0, stepAudit}, ActUnmatched, ""},
		{"settling → with dom0: at start at once", last(here(TrigStart, "usbback"), ActUnmatched, "no rule"), none, kiosk, StWithDom0,
			[]stepKind{stepMarkGiving, stepRelease, stepAudit, stepToDom0, stepAudit}, ActUnmatched, ""},
		{"with dom0: a give to dom0 a kill cut short, the mode off since: finished", with(last(here(TrigStart, "usbhid", ""), ActUnmatched, "no rule"), func(o *observation) { o.giving = true }), none, kiosk, StWithDom0,
			[]stepKind{stepToDom0}, "", ""},
		{"settling: dry run looks only", here(TrigAfterCleared, "usbback"), none, dry, StWithDom0, []stepKind{stepAudit}, ActUnmatched, ""},
		// pending
		{"pending: target not running", here("add", "usbhid"), attach, down, StPending, []stepKind{stepAudit}, ActPending, "kiosk is not running"},
		{"pending: two domains of that name", here("add", "usbhid"), attach, twoKiosks, StPending, []stepKind{stepAudit}, ActPending, "2 running domains are named kiosk (domids 5, 7)"},
		{"pending: keeps its ownership record", owned(here("add", "usbhid"), 3), attach, down, StPending, []stepKind{stepAudit}, ActPending, ""},
		// attaching
		{"attaching: target runs", here("add", "usbhid"), attach, kiosk, StAttaching, []stepKind{stepAttach}, "", ""},
		{"attaching: back after its guest rebooted", owned(here(TrigDomains, "usbhid"), 3), attach, kiosk, StAttaching, []stepKind{stepAttach}, "", ""},
		{"attaching: dry run says only", here("add", "usbhid"), attach, dry, StAttaching, []stepKind{stepAudit}, ActAttached, "dry run"},
		{"failed: its rollback's bind does not try again before the retry", with(last(here("bind", "usbhid"), ActFailed, "EINVAL"), func(o *observation) { o.backoff = true }),
			attach, kiosk, StPending, nil, "", ""},
		// attached
		{"attached: kept", last(owned(at(here(TrigStart, "usbback"), 5), 5), ActAttached, "r attaches it"), attach, kiosk, StAttached, nil, "", ""},
		{"attached: kept, a give-back to dom0 a kill cut short before the detach: its giving record goes", with(last(owned(at(here(TrigStart, "usbback"), 5), 5), ActAttached, "r attaches it"), func(o *observation) { o.giving = true }),
			attach, kiosk, StAttached, []stepKind{stepRmGiving}, "", ""},
		{"attached: first seen", owned(at(here(TrigStart, "usbback"), 5), 5), attach, kiosk, StAttached, []stepKind{stepAudit}, ActKept, "r attaches it"},
		{"attached (emulated): at start its QEMU is asked", with(owned(at(here(TrigStart, ""), 5), 5), func(o *observation) { o.port.Type = policy.TypeDeviceModel }),
			attach, kiosk, StAttached, []stepKind{stepEnsureInQEMU, stepAudit}, ActKept, "r attaches it"},
		{"attached (emulated): asked again at the retry of a check QEMU did not answer", with(last(owned(at(here(TrigRetry, ""), 5), 5), ActFailed, "qom-list"), func(o *observation) { o.port.Type = policy.TypeDeviceModel }),
			attach, kiosk, StAttached, []stepKind{stepEnsureInQEMU, stepAudit}, ActKept, "r attaches it"},
		{"attached: by xl", at(here(TrigPortChanged, "usbback"), 5), attach, kiosk, StAttached, []stepKind{stepAudit}, ActKept, "by someone else"},
		{"attached: at one of two same-named domains", at(here(TrigPortChanged, "usbback"), 5), attach, twoKiosks, StAttached, []stepKind{stepAudit}, ActKept, "does not guess which is meant, and leaves it at domid 5, where it is"},
		{"attached: its driver records gone, written again", with(owned(at(here(TrigStart, "usbback"), 5), 5), func(o *observation) { o.owned.Drivers = map[string]string{"1-2:1.0": "usbhid"} }),
			attach, kiosk, StAttached, []stepKind{stepReRecord, stepAudit}, ActKept, "written again from its ownership record"},
		{"attached: its driver records there", last(with(owned(at(here(TrigStart, "usbback"), 5), 5), func(o *observation) { o.record, o.owned.Drivers = true, map[string]string{"1-2:1.0": "usbhid"} }), ActAttached, "r attaches it"),
			attach, kiosk, StAttached, nil, "", ""},
		{"attached: by xl, its records gone: xl's", at(here(TrigStart, "usbback"), 5), attach, kiosk, StAttached, []stepKind{stepAudit}, ActKept, "by someone else"},
		{"attached → settling: out of usbback", owned(at(here("unbind", "usbhid"), 5), 5), attach, kiosk, StSettling, []stepKind{stepLookLater}, "", ""},
		{"attached: dom0's driver took it, the port still set after: moved back at once", with(owned(at(here("bind", "usbhid"), 5), 5), func(o *observation) { o.portAfter = true }), attach, kiosk, StAttached, []stepKind{stepEnsureBound, stepAudit}, ActKept, "1-2:1.0 was with usbhid: moved back to usbback"},
		{"settling → attached: bound again", owned(at(here(TrigAfterUnbound, "usbhid"), 5), 5), attach, kiosk, StAttached, []stepKind{stepEnsureBound, stepAudit}, ActKept, "1-2:1.0 was with usbhid: moved back to usbback"},
		{"settling → attached: bound again, told again", with(owned(at(here(TrigAfterUnbound, "usbhid"), 5), 5), func(o *observation) {
			o.last, o.known = Audit{BusID: "1-2", Action: ActKept, Reason: "r attaches it; 1-2:1.0 was with usbhid: moved back to usbback", Domid: int(o.port.Domid), Ctrl: o.port.Controller, Port: o.port.Port}, true
		}), attach, kiosk, StAttached, []stepKind{stepEnsureBound, stepAudit}, ActKept, "moved back to usbback"},
		{"attached: someone else unbound it from usbback, at the second look: said, left so", with(owned(at(here(TrigAfterUnbound, "usbback", ""), 5), 5), func(o *observation) { o.dev.Interfaces[1].Authorized = true }),
			attach, kiosk, StAttached, []stepKind{stepAudit}, ActKept, "r attaches it; attached to kiosk at port 0:1, but interface 1-2:1.1 is not in usbback: unbound by someone else"},
		{"attached: dom0's driver moved back, what someone else unbound left so", with(owned(at(here(TrigAfterUnbound, "usbhid", ""), 5), 5), func(o *observation) { o.dev.Interfaces[1].Authorized = true }),
			attach, kiosk, StAttached, []stepKind{stepEnsureBound, stepAudit}, ActKept, "1-2:1.0 was with usbhid: moved back to usbback; attached to kiosk at port 0:1, but interface 1-2:1.1 is not in usbback"},
		{"attached: an interface deauthorized (by an admin): bound again at once, no detach does that", owned(at(here("unbind", "usbback", ""), 5), 5),
			attach, kiosk, StAttached, []stepKind{stepEnsureBound, stepAudit}, ActKept, "1-2:1.1 had no driver: moved back to usbback"},
		{"attached: without a driver at a start: a bind a kill cut short, finished", with(owned(at(here(TrigStart, ""), 5), 5), func(o *observation) { o.dev.Interfaces[0].Authorized = true }),
			attach, kiosk, StAttached, []stepKind{stepEnsureBound, stepAudit}, ActKept, "1-2:1.0 had no driver: moved back to usbback"},
		{"attached → detached: the policy changed: the give to dom0 is recorded before the detach, and ended after it", owned(at(here(TrigReload, "usbback"), 5), 5), deny, kiosk, StDenied,
			[]stepKind{stepMarkGiving, stepDetach, stepAudit, stepToDom0, stepAudit}, ActDenied, ""},
		{"attached → detached: the policy changed, the mode on: the give to dom0 is recorded before the detach, and ended after it", owned(at(here(TrigReload, "usbback"), 5), 5), deny, withAuthz(kiosk), StDenied,
			[]stepKind{stepMarkGiving, stepDetach, stepAudit, stepToDom0, stepAudit}, ActDenied, "offered to dom0's drivers"},
		{"settling → with dom0, the mode on: the give to dom0 is recorded before the release", last(here(TrigStart, "usbback"), ActUnmatched, "no rule"), none, withAuthz(kiosk), StWithDom0,
			[]stepKind{stepMarkGiving, stepRelease, stepAudit, stepToDom0, stepAudit}, ActUnmatched, "offered to dom0's drivers"},
		{"with dom0 → authorized: inert, no rule, the mode on", here("bind", ""), none, withAuthz(kiosk), StWithDom0, []stepKind{stepToDom0, stepAudit}, ActUnmatched, "offered to dom0's drivers"},
		{"denied → authorized: inert, the mode on", here("bind", ""), deny, withAuthz(kiosk), StDenied, []stepKind{stepToDom0, stepAudit}, ActDenied, "offered to dom0's drivers"},
		{"with dom0: inert, the mode off: left as the admin made it", here("bind", ""), none, kiosk, StWithDom0, []stepKind{stepAudit}, ActUnmatched, "no rule"},
		{"pending: inert meanwhile", here("bind", ""), attach, withAuthz(down), StPending, []stepKind{stepAudit}, ActPending, "stays inert"},
		{"blocked: deauthorized", with(here("bind", "usbhid"), func(o *observation) { o.dev.Interfaces[0].Authorized = true }), blockIt, kiosk, StBlocked, []stepKind{stepBlock, stepAudit}, ActBlocked, "blocks"},
		{"blocked: inert already", here("bind", ""), blockIt, withAuthz(kiosk), StBlocked, []stepKind{stepAudit}, ActBlocked, "blocks"},
		{"root hub: made inert, the mode on", with(here(TrigStart, "hub"), func(o *observation) { o.dev.BusID, o.dev.Interfaces[0].Authorized, o.hubDefault = "usb1", true, true }), deny, withAuthz(kiosk), StDenied, []stepKind{stepHubInert, stepAudit}, ActDenied, ""},
		{"root hub: given back, the mode off", with(here(TrigReload, "hub"), func(o *observation) { o.dev.BusID, o.dev.Interfaces[0].Authorized, o.hubOurs = "usb1", true, true }), deny, kiosk, StDenied, []stepKind{stepHubRestore, stepAudit}, ActDenied, ""},
		{"attached: its guest migrates away", owned(at(here(TrigDomains, "usbback"), 3), 3), attach, world{domains: map[string][]uint32{"kiosk--migratedaway": {3}}},
			StAttached, []stepKind{stepAudit}, ActKept, "migrates away"},
		{"attached → attaching: its guest is now another", owned(at(here(TrigDomains, "usbback"), 3), 3), attach, kiosk, StAttaching, []stepKind{stepDetach, stepAudit, stepAttach}, "", ""},
		{"attached → pending: its guest went", owned(at(here(TrigDomains, "usbback"), 5), 5), attach, down, StPending, []stepKind{stepDetach, stepAudit, stepAudit}, ActPending, ""},
		// unconfigured: nothing decided, whatever the policy would say
		{"unconfigured: not authorized", with(here("add"), func(o *observation) { o.dev.Unconfigured = true }), attach, kiosk, StPending, []stepKind{stepAudit}, ActPending, "not authorized"},
		{"unconfigured: no configuration chosen", with(here("add"), func(o *observation) { o.dev.Unconfigured, o.dev.Authorized = true, true }), deny, kiosk, StPending, []stepKind{stepAudit}, ActPending, "no active configuration"},
		{"unconfigured: at its port, kept, the guest seeing none of it", with(owned(at(here("remove"), 5), 5), func(o *observation) { o.dev.Unconfigured, o.dev.Authorized = true, true }), attach, kiosk, StAttached, []stepKind{stepAudit}, ActKept,
			"r attaches it; attached to kiosk at port 0:1, unconfigured: the guest sees no interfaces (bConfigurationValue is empty"},
		// held
		{"held: detached by someone else", owned(here(TrigPortChanged, "usbhid"), 5), attach, kiosk, StHeld, []stepKind{stepAudit}, ActHeld, "by someone else"},
		{"held → attaching: its record names another device at its busid", with(owned(here(TrigStart, "usbhid"), 5), func(o *observation) { o.owned.Serial = "OTHER" }),
			attach, kiosk, StAttaching, []stepKind{stepAttach}, "", ""},
		{"attached: another device at its own port, its record rewritten", with(owned(at(here(TrigStart, "usbback"), 5), 5), func(o *observation) { o.owned.ID = "aaaa:bbbb" }),
			attach, kiosk, StAttached, []stepKind{stepReOwn, stepAudit}, ActKept, "its ownership record named another device at 1-2 (aaaa:bbbb): it names this one now"},
		{"attached: another device at its own port, dry run writes nothing", with(owned(at(here(TrigStart, "usbback"), 5), 5), func(o *observation) { o.owned.ID = "aaaa:bbbb" }),
			attach, dry, StAttached, []stepKind{stepAudit}, ActKept, ""},
		// foreign
		{"foreign: left where xl put it", at(here(TrigStart, "usbback"), 6), attach, kiosk, StForeign, []stepKind{stepAudit}, ActLeft, "takeover = true would move it"},
		{"foreign: unchanged", last(at(here(TrigStart, "usbback"), 6), ActLeft, "1-2 is at domain 6 port 0:1, attached by someone else: left there (the policy says: r attaches it; a rule with takeover = true would move it)"), attach, kiosk, StForeign, nil, "", ""},
		{"foreign → attaching: takeover", at(here(TrigStart, "usbback"), 6), moveIt, kiosk, StAttaching, []stepKind{stepDetach, stepAudit, stepAttach}, "", ""},
	} {
		t.Run(c.name, func(t *testing.T) {
			p := makePlan(c.o, c.dec, c.w)
			reached[p.state] = true
			var kinds []stepKind
			var lastAudit *Audit
			for i, s := range p.steps {
				kinds = append(kinds, s.kind)
				if s.kind == stepAudit {
					lastAudit = &p.steps[i].rec
				}
			}
			if p.state != c.state {
				t.Errorf("state %s, want %s", p.state, c.state)
			}
			if !slices.Equal(kinds, c.steps) {
				t.Errorf("steps %v, want %v", kinds, c.steps)
			}
			switch {
			case c.action == "":
			case lastAudit == nil:
				t.Errorf("no audit, want %s", c.action)
			case lastAudit.Action != c.action || !strings.Contains(lastAudit.Reason, c.reason):
				t.Errorf("audit %s %q, want %s with %q", lastAudit.Action, lastAudit.Reason, c.action, c.reason)
			}
			if lastAudit != nil && (lastAudit.BusID != "1-2" || lastAudit.Trigger != c.o.trigger) {
				t.Errorf("audit names %s, trigger %q", lastAudit.BusID, lastAudit.Trigger)
			}
			// A record at a port names that port's domain (xl's guest
			// for a device left where xl put it).
			if lastAudit != nil && lastAudit.Port > 0 && !strings.HasSuffix(c.w.nameOf(uint32(lastAudit.Domid)), migratedAway) &&
				lastAudit.Domain != c.w.nameOf(uint32(lastAudit.Domid)) {
				t.Errorf("audit at domid %d names domain %q", lastAudit.Domid, lastAudit.Domain)
			}
		})
	}
	// A rule's pinned port is said to be the rule's, so that the attach
	// can say when it was taken.
	pin := *rule
	pin.Target = &policy.Target{Domain: "kiosk", Controller: 0, Port: 2}
	for _, c := range []struct {
		name string
		o    observation
		want bool
	}{
		{"pinned", here("add", "usbhid"), true},
		{"back to its own port first", with(owned(here(TrigDomains, "usbhid"), 3), func(o *observation) { o.owned.Port = 3 }), false},
	} {
		p := makePlan(c.o, policy.Decision{Action: policy.Attach, Rule: &pin, Target: pin.Target}, kiosk)
		if n := len(p.steps); n != 1 || p.steps[0].kind != stepAttach || p.steps[0].attach.pinned != c.want {
			t.Errorf("%s: %+v", c.name, p.steps)
		}
	}
	for st := StAbsent; st <= StBlocked; st++ {
		if !reached[st] {
			t.Errorf("no row reaches state %s", st)
		}
	}
}

// Moving a dom0 driver's interface back to usbback leaves one without a
// driver as someone else left it, but at a start, or while the device's
// passes fail, the agent binds that too: its own bind was cut short.
func TestPlanBindsUnboundOnlyAsItsOwn(t *testing.T) {
	rule := &policy.Rule{Name: "r", Index: 1, Action: policy.Attach, Target: &policy.Target{Domain: "kiosk", Controller: -1}}
	dec := policy.Decision{Action: policy.Attach, Rule: rule, Target: rule.Target, Reason: "r attaches it"}
	w := world{domains: map[string][]uint32{"kiosk": {5}}}
	for _, c := range []struct {
		trig   Trigger
		failed bool
		held   bool
	}{{TrigAfterUnbound, false, true}, {TrigStart, false, false}, {TrigAfterUnbound, true, false}} {
		o := observation{busid: "1-2", trigger: c.trig, present: true, probed: true,
			dev:   usbsysfs.Device{BusID: "1-2", NumInterfaces: 2, Interfaces: []usbsysfs.Interface{{Name: "1-2:1.0", Driver: "usbhid", Authorized: true}, {Name: "1-2:1.1", Authorized: true}}},
			port:  &assign.Assignment{Domid: 5, Controller: 0, Port: 1, BusID: "1-2", Type: policy.TypePV},
			owned: &Owned{Domain: "kiosk", Domid: 5, Controller: 0, Port: 1, Rule: "r"}}
		if c.failed {
			o.last, o.known = Audit{BusID: "1-2", Action: ActFailed}, true
		}
		p := makePlan(o, dec, w)
		i := slices.IndexFunc(p.steps, func(s step) bool { return s.kind == stepEnsureBound })
		if i < 0 || p.steps[i].held != c.held {
			t.Errorf("%s (failed before: %v): steps %+v, want ensure-bound held=%v", c.trig, c.failed, p.steps, c.held)
		}
	}
}
