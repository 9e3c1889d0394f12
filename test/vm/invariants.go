package vmtest

import (
	"context"
	"fmt"
	"regexp"
	"slices"
	"strings"
	"time"

	"github.com/usbhotplugd/usbhotplugd/internal/agent"
	"github.com/usbhotplugd/usbhotplugd/internal/assign"
	"github.com/usbhotplugd/usbhotplugd/internal/usbsysfs"
	"github.com/usbhotplugd/usbhotplugd/policy"
)

// settle waits until the invariants hold on the real sysfs and store.
// They may not hold while the agent is still at work, so they are given
// the same deadline as a wait.
func (r *runner) settle(ctx context.Context) error {
	deadline := time.Now().Add(60 * time.Second)
	for {
		bad, err := r.invariants(ctx)
		if err != nil {
			return err
		}
		if len(bad) == 0 {
			return nil
		}
		if time.Now().After(deadline) {
			return &StepError{Expected: "I1–I7 to hold within 60s", Found: strings.Join(bad, "; ")}
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(200 * time.Millisecond): // the next look
		}
	}
}

var boundRe = regexp.MustCompile(`usbback-standin: bound (\S+) .* by (\S+)$`)

// invariants lists what is wrong now: I1–I7 of the design, and binds to
// usbback that the agent (or an xl-like command) did not make.
func (r *runner) invariants(ctx context.Context) ([]string, error) {
	all, err := r.h.Assigned(ctx)
	if err != nil {
		return nil, err
	}
	devs, err := r.m.Devices(ctx)
	if err != nil {
		return nil, err
	}
	owned, err := r.owned(ctx)
	if err != nil {
		return nil, err
	}
	at := map[string]assign.Assignment{}
	var bad []string
	for _, a := range all {
		if prev, dup := at[a.BusID]; dup {
			bad = append(bad, fmt.Sprintf("I1: %s is at domain %d port %d:%d and at domain %d port %d:%d", a.BusID, prev.Domid, prev.Controller, prev.Port, a.Domid, a.Controller, a.Port))
		}
		at[a.BusID] = a
		if findDev(devs, a.BusID) == nil {
			bad = append(bad, fmt.Sprintf("I4: domain %d port %d:%d names %s, which left the host", a.Domid, a.Controller, a.Port, a.BusID))
		}
	}
	for i := range devs {
		bad = append(bad, r.deviceInvariants(ctx, &devs[i], devs, at, owned)...)
	}
	lines, err := r.kernelLines(ctx)
	if err != nil {
		return nil, err
	}
	for _, l := range lines {
		if m := boundRe.FindStringSubmatch(l); m != nil && m[2] != "usbhotplugd" {
			bad = append(bad, fmt.Sprintf("bind: %s was bound to usbback by %s, not by the agent", m[1], m[2]))
		}
	}
	return bad, nil
}

func (r *runner) deviceInvariants(ctx context.Context, d *usbsysfs.Device, devs []usbsysfs.Device, at map[string]assign.Assignment, owned map[string]bool) []string {
	var bad []string
	a, assigned := at[d.BusID]
	for _, in := range d.Interfaces {
		switch {
		case in.Driver == "usbback" && !assigned:
			bad = append(bad, fmt.Sprintf("I2: %s is bound to usbback but %s is at no port", in.Name, d.BusID))
		case in.Driver != "" && in.Driver != "usbback":
			r.seen[in.Name] = true
		case in.Driver == "" && !assigned && r.seen[in.Name] && !r.admin[in.Name]:
			bad = append(bad, fmt.Sprintf("I7: %s had a dom0 driver, now has none, and %s is at no port: lost to dom0", in.Name, d.BusID))
		}
	}
	if !assigned {
		return bad
	}
	// Only a pv port moves interfaces to usbback (qusb's QEMU opens the
	// device itself), so only it has driver records, as with libxl; and I3
	// asks a record only of what the agent took from a dom0 driver: with
	// authorization before probe a device no dom0 driver ever had has none.
	hadDom0 := slices.ContainsFunc(d.Interfaces, func(in usbsysfs.Interface) bool { return r.seen[in.Name] })
	beforeProbe := strings.Contains(r.policy, `"before-probe"`)
	if has, err := r.h.HasRecord(ctx, d.BusID); a.Type == "pv" && (err != nil || !has && (hadDom0 || !beforeProbe)) {
		bad = append(bad, fmt.Sprintf("I3: %s is at domain %d port %d:%d without driver_path records", d.BusID, a.Domid, a.Controller, a.Port))
	}
	if d.IsHub() {
		bad = append(bad, fmt.Sprintf("I5: hub %s is at domain %d port %d:%d", d.BusID, a.Domid, a.Controller, a.Port))
	}
	for dir, busid := range r.mounted {
		if busid == d.BusID {
			bad = append(bad, fmt.Sprintf("I5: %s is mounted on %s in dom0 (built-in guard in-use), yet at domain %d port %d:%d", d.BusID, dir, a.Domid, a.Controller, a.Port))
		}
	}
	if owned[d.BusID] && r.policy != "" {
		if dec := r.decide(d, devs); dec != nil && dec.Action == policy.Deny {
			bad = append(bad, fmt.Sprintf("I5: the agent keeps %s at domain %d port %d:%d, but the policy denies it: %s", d.BusID, a.Domid, a.Controller, a.Port, dec.Reason))
		}
	}
	return bad
}

// owned lists the busids the agent recorded as its own attachments.
func (r *runner) owned(ctx context.Context) (map[string]bool, error) {
	names, err := r.xs.Directory(ctx, agent.RecordRoot)
	if err != nil {
		return map[string]bool{}, nil // none yet
	}
	out := map[string]bool{}
	for _, n := range names {
		out[strings.NewReplacer("_", ".", "@", ":").Replace(n)] = true
	}
	return out, nil
}

// decide is the current policy's decision for d.
func (r *runner) decide(d *usbsysfs.Device, devs []usbsysfs.Device) *policy.Decision {
	p, err := policy.Parse("policy.toml", []byte(r.policy), nil)
	if err != nil {
		return nil
	}
	conv := func(x *usbsysfs.Device) policy.Device {
		pd := policy.Device{BusID: x.BusID, BusNum: x.BusNum, DevNum: x.DevNum, Vendor: x.Vendor, Product: x.Product, Class: x.Class,
			SubClass: x.SubClass, Protocol: x.Protocol, Serial: x.Serial, Manufacturer: x.Manufacturer, ProductName: x.ProductName}
		for _, in := range x.Interfaces {
			pd.Interfaces = append(pd.Interfaces, policy.Interface{Class: in.Class, SubClass: in.SubClass, Protocol: in.Protocol})
		}
		return pd
	}
	inv := make([]policy.Device, len(devs))
	for i := range devs {
		inv[i] = conv(&devs[i])
	}
	me := conv(d)
	dec := p.Match(&me, inv)
	return &dec
}
