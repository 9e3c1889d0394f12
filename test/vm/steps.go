package vmtest

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"strconv"
	"strings"
	"time"

	"github.com/usbhotplugd/usbhotplugd/internal/sim"
)

// step runs one action, or one wait or expect.
func (r *runner) step(ctx context.Context, st *Step) error {
	switch st.Verb {
	case "wait":
		return r.waitForSubst(ctx, st.Args, st.Within)
	case "expect":
		return r.expect(ctx, r.subst(ctx, st.Args))
	case "measure":
		return r.measure(ctx, st.Args[0], st.Args[1])
	}
	if err := r.mark(ctx); err != nil {
		return err
	}
	sctx, cancel := context.WithTimeout(ctx, 3*time.Minute)
	defer cancel()
	switch st.Verb {
	case "agent":
		return r.agent(sctx, st.Args)
	case "plug", "plugunplug":
		if err := r.plug(sctx, st.Plug); err != nil {
			return err
		}
		if st.Verb == "plugunplug" {
			return r.unplug(sctx, st.Plug.Get("id"))
		}
		return nil
	case "unplug":
		return r.unplug(sctx, st.Args[0])
	case "domain":
		return r.domain(sctx, st.Args)
	case "reload":
		return r.reload(sctx, st.Args[0])
	case "xl":
		return r.m.XL(sctx, r.subst(sctx, st.Args))
	case "unbind", "bind":
		return r.adminBind(sctx, st.Verb, st.Args)
	case "mount":
		return r.mount(sctx, st.Args[0], st.Args[1])
	case "umount":
		return r.umount(sctx, st.Args[0])
	case "suspend":
		how, err := r.m.Suspend(sctx, st.Args[0], st.Args[1])
		if err == nil {
			r.logf("    resumed: %s", how)
		}
		return err
	case "persist":
		return r.persist(sctx, st.Args[0], st.Args[1] == "on")
	case "sysfs":
		return r.writeAttr(sctx, st.Args[0], st.Args[1], st.Args[2])
	}
	return fmt.Errorf("unknown step %q", st.Verb)
}

// What /sys/power/state takes that a scenario can ask for (mem: S3,
// mem_sleep "deep"), and how dom0 is woken (qmp: QMP system_wakeup).
// s2idle (freeze) woken by the RTC alarm did not resume under TCG within
// the step's three minutes, so only S3 is offered.
var (
	suspendStates = []string{"mem"}
	wakeMethods   = []string{"qmp"}
)

// persist sets whether the kernel keeps the device across a resume that
// finds its port reset (USB persist, on by default: reset-resumed) or
// takes it as unplugged and enumerates it again.
func (r *runner) persist(ctx context.Context, id string, on bool) error {
	busid, err := r.resolve(ctx, id)
	if err != nil {
		return err
	}
	v := "0"
	if on {
		v = "1"
	}
	return r.m.WriteSys(ctx, "bus/usb/devices/"+busid+"/power/persist", v)
}

// writeAttr is an admin's write of an attribute of the device id, or of
// its interface (id:INTF).
func (r *runner) writeAttr(ctx context.Context, id, attr, value string) error {
	// hub=CTRL: each root hub of that controller (authorized_default,
	// as USBGuard or an admin sets it).
	if ctrl, ok := strings.CutPrefix(id, "hub="); ok {
		if len(r.buses[ctrl]) == 0 {
			return fmt.Errorf("sysfs %s: no root hub of controller %q", id, ctrl)
		}
		for _, bn := range r.buses[ctrl] {
			if err := r.m.WriteSys(ctx, fmt.Sprintf("bus/usb/devices/usb%d/%s", bn, attr), value); err != nil {
				return err
			}
		}
		return nil
	}
	id, intf, _ := strings.Cut(id, ":")
	busid, err := r.resolve(ctx, id)
	if err != nil {
		return err
	}
	name := busid
	if intf != "" {
		name += ":" + intf
		// An interface the admin deauthorized is without its driver
		// on purpose, as after an admin's unbind: not lost to dom0.
		if attr == "authorized" && value == "0" {
			r.admin[name] = true
		}
	}
	return r.m.WriteSys(ctx, "bus/usb/devices/"+name+"/"+attr, value)
}

func (r *runner) mount(ctx context.Context, id, dir string) error {
	if _, ok := r.plugs[id]; !ok {
		return fmt.Errorf("mount %s: no such device in the scenario", id)
	}
	if _, ok := r.mounted[dir]; ok {
		return fmt.Errorf("mount: %s is mounted already", dir)
	}
	busid, err := r.resolve(ctx, id)
	if err != nil {
		return err
	}
	if err := r.m.Mount(ctx, busid, dir); err != nil {
		return err
	}
	r.mounted[dir] = busid
	return nil
}

func (r *runner) umount(ctx context.Context, dir string) error {
	if _, ok := r.mounted[dir]; !ok {
		return fmt.Errorf("umount %s: the scenario mounted nothing there", dir)
	}
	if err := r.m.Umount(ctx, dir); err != nil {
		return err
	}
	delete(r.mounted, dir)
	return nil
}

// subst replaces @ID with the device's busid, in every argument; an ID
// not in the guest yet is left as it is (the condition then fails).
func (r *runner) subst(ctx context.Context, args []string) []string {
	out := make([]string, len(args))
	for i, a := range args {
		for id := range r.plugs {
			if strings.Contains(a, "@"+id) {
				if b, err := r.resolve(ctx, id); err == nil {
					a = strings.ReplaceAll(a, "@"+id, b)
				}
			}
		}
		out[i] = a
	}
	return out
}

// mark sets where "since the last action step" begins in the logs.
func (r *runner) mark(ctx context.Context) error {
	lg, err := r.m.AgentLog(ctx)
	if err != nil {
		return err
	}
	r.logMark = len(lg)
	km, err := r.kernelLines(ctx)
	if err != nil {
		return err
	}
	r.kmMark = len(km)
	return nil
}

func (r *runner) agent(ctx context.Context, args []string) error {
	switch args[0] {
	case "start":
		pol := r.policy
		if len(args) == 2 {
			p, ok := r.sc.Policies[args[1]]
			if !ok {
				return fmt.Errorf("no policy %q in the scenario", args[1])
			}
			pol, r.policy = p, p
		}
		if pol == "" {
			return fmt.Errorf("agent start: the scenario has no policy main")
		}
		err := r.m.StartAgent(ctx, pol)
		r.agentUp = err == nil
		return err
	case "stop":
		r.agentUp = false
		return r.m.StopAgent(ctx, false)
	case "kill9":
		r.agentUp = false
		return r.m.StopAgent(ctx, true)
	}
	return fmt.Errorf("agent start|stop|kill9, not %q", args[0])
}

func (r *runner) reload(ctx context.Context, name string) error {
	p, ok := r.sc.Policies[name]
	if !ok {
		return fmt.Errorf("no policy %q in the scenario", name)
	}
	r.policy = p
	return r.m.Reload(ctx, p)
}

func (r *runner) adminBind(ctx context.Context, verb string, args []string) error {
	// ID alone is the device: its usb driver's unbind unconfigures it
	// (its interfaces go), its bind configures it again.
	id, intf, ok := strings.Cut(args[0], ":")
	busid, err := r.resolve(ctx, id)
	if err != nil {
		return err
	}
	name := busid
	if ok {
		name += ":" + intf
	}
	if verb == "unbind" {
		r.admin[name] = true
	} else {
		delete(r.admin, name)
	}
	return r.m.WriteSys(ctx, "bus/usb/drivers/"+args[1]+"/"+verb, name)
}

// qmpProps are device properties QEMU takes as strings even when they
// look like numbers.
var qmpStrings = map[string]bool{"id": true, "bus": true, "port": true, "serial": true, "drive": true, "mac": true, "driver": true}

func qmpArgs(p Plug) map[string]any {
	a := map[string]any{"driver": p.Driver}
	for _, kv := range p.Props {
		switch {
		case kv[0] == "disk":
		case qmpStrings[kv[0]]:
			a[kv[0]] = kv[1]
		case kv[1] == "true" || kv[1] == "false":
			a[kv[0]] = kv[1] == "true"
		default:
			if n, err := strconv.ParseInt(kv[1], 0, 64); err == nil {
				a[kv[0]] = n
			} else {
				a[kv[0]] = kv[1]
			}
		}
	}
	return a
}

func (r *runner) plug(ctx context.Context, p Plug) error {
	id := p.Get("id")
	r.plugs[id] = p
	delete(r.busids, id)
	if err := r.m.Plug(ctx, p); err != nil {
		return err
	}
	r.lastPlug = time.Now()
	return nil
}

func (r *runner) unplug(ctx context.Context, id string) error {
	if _, ok := r.plugs[id]; !ok {
		return fmt.Errorf("unplug %s: no such device in the scenario", id)
	}
	if err := r.m.Unplug(ctx, id); err != nil {
		return err
	}
	// Its mounts stay, of a disk that is gone: a device plugged at its
	// port next is not the one mounted.
	for dir, busid := range r.mounted {
		if busid != "" && busid == r.busids[id] {
			r.mounted[dir] = ""
		}
	}
	return nil
}

func (r *runner) domain(ctx context.Context, args []string) error {
	if args[0] == "rename" {
		if len(args) != 3 {
			return fmt.Errorf("domain rename OLD NEW")
		}
		return r.domainRename(ctx, args[1], args[2])
	}
	if len(args) != 2 {
		return fmt.Errorf("domain %s NAME", args[0])
	}
	switch args[0] {
	case "start":
		return r.domainStart(ctx, args[1])
	case "stop":
		return r.domainStop(ctx, args[1])
	case "reboot":
		if err := r.domainStop(ctx, args[1]); err != nil {
			return err
		}
		return r.domainStart(ctx, args[1])
	}
	return fmt.Errorf("domain start|stop|reboot|rename, not %q", args[0])
}

func (r *runner) dom(name string) (*domState, error) {
	d, ok := r.doms[name]
	if !ok {
		return nil, fmt.Errorf("no domain %q in the scenario", name)
	}
	return d, nil
}

// domainStart is what `xl create` leaves in the store, with a new domid.
func (r *runner) domainStart(ctx context.Context, name string) error {
	d, err := r.dom(name)
	if err != nil {
		return err
	}
	if d.running {
		return fmt.Errorf("domain %s runs already", name)
	}
	r.nextID++
	d.ID = r.nextID
	if err := sim.SeedDomain(ctx, r.xs, d.Domain); err != nil {
		return err
	}
	if d.qemu {
		if err := sim.SeedQEMU(ctx, r.xs, d.ID); err != nil {
			return err
		}
	}
	if err := r.xs.Introduce(ctx, d.ID, 1, 1); err != nil {
		return err
	}
	d.running = true
	if d.Type == "hvm" && r.m != nil { // else started once the machine is up
		return r.m.DeviceModel(ctx, d.ID, true)
	}
	return nil
}

// domainStop is `xl destroy`: its controllers removed and their devices
// given back in dom0 (by the guest's tool port), then its nodes go.
func (r *runner) domainStop(ctx context.Context, name string) error {
	d, err := r.dom(name)
	if err != nil {
		return err
	}
	if !d.running {
		return fmt.Errorf("domain %s is not running", name)
	}
	if err := r.m.Destroy(ctx, d.ID); err != nil {
		return err
	}
	if d.Type == "hvm" {
		if err := r.m.DeviceModel(ctx, d.ID, false); err != nil {
			return err
		}
	}
	for _, p := range []string{fmt.Sprintf("/local/domain/%d", d.ID), fmt.Sprintf("/libxl/%d", d.ID), "/vm/" + d.UUID,
		fmt.Sprintf("/local/domain/0/backend/vusb/%d", d.ID), fmt.Sprintf("/local/domain/0/backend/qusb/%d", d.ID),
		fmt.Sprintf("/local/domain/0/device-model/%d", d.ID)} {
		if err := r.xs.Rm(ctx, p); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return err
		}
	}
	d.running = false
	return r.xs.Release(ctx, d.ID)
}

func (r *runner) domainRename(ctx context.Context, from, to string) error {
	d, err := r.dom(from)
	if err != nil {
		return err
	}
	if _, dup := r.doms[to]; dup {
		return fmt.Errorf("domain %q exists", to)
	}
	if d.running {
		if err := sim.Rename(ctx, r.xs, d.Domain, to); err != nil {
			return err
		}
	}
	d.Name = to
	delete(r.doms, from)
	r.doms[to] = d
	return nil
}
