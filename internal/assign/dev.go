package assign

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/usbhotplugd/usbhotplugd/internal/usbsysfs"
	"github.com/usbhotplugd/usbhotplugd/internal/xenstore"
	"github.com/usbhotplugd/usbhotplugd/policy"
)

// An Assignment is a host device at a guest's controller port.
type Assignment struct {
	Domid      uint32 `json:"domid"`
	Controller int    `json:"controller"`
	Port       int    `json:"port"`
	BusID      string `json:"busid"`
	Type       string `json:"type"`
	// Stale is set when the device is no longer on the host.
	Stale bool `json:"stale,omitempty"`
}

// Assigned lists every port of every domain's controllers that names a
// device. Unlike libxl, a port naming a device that has left the host is
// listed as Stale instead of failing the whole scan, and a busid that is
// not a busid is reported and skipped.
func (h *Host) Assigned(ctx context.Context) ([]Assignment, error) {
	snap, err := h.snapshot(ctx, h.XS)
	if err != nil {
		return nil, err
	}
	var out []Assignment
	for _, d := range snap.order {
		out = append(out, h.assignmentsOf(snap.ctrls[d])...)
	}
	return out, nil
}

// A snapshot is every domain's controllers, read side by side: four round
// trips whatever the number of domains and controllers.
type snapshot struct {
	order []uint32
	ctrls map[uint32][]Controller
}

func (h *Host) snapshot(ctx context.Context, r rw) (snapshot, error) {
	withState := r == rw(h.XS) // inside a transaction the guest's state is not read
	r = h.prefetch(ctx, r, withState)
	doms, err := dirOpt(ctx, r, "/libxl")
	if err != nil {
		return snapshot{}, err
	}
	snap := snapshot{ctrls: map[uint32][]Controller{}}
	for _, s := range doms {
		// Not /libxl/usbback and such, nor a number past any domid, which
		// would wrap onto another domain's as a uint32.
		if d, ok := atoiStrict(s); ok && d <= maxDomid {
			snap.order = append(snap.order, uint32(d))
		}
	}
	lists := make([][]Controller, len(snap.order))
	skips := make([][]Skipped, len(snap.order))
	errs := make([]error, len(snap.order))
	var wg sync.WaitGroup
	for i, d := range snap.order {
		wg.Go(func() { lists[i], skips[i], errs[i] = h.usableControllers(ctx, r, d, withState) })
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		return snapshot{}, err
	}
	var skipped []Skipped
	for i, d := range snap.order {
		snap.ctrls[d] = lists[i]
		skipped = append(skipped, skips[i]...)
	}
	h.rememberShape(snap)
	h.noteSkipped(skipped)
	return snap, nil
}

// noteSkipped remembers the controllers the last look set apart, and
// warns once of each new one.
func (h *Host) noteSkipped(now []Skipped) {
	h.shapeMu.Lock()
	old := h.skipped
	h.skipped = now
	h.shapeMu.Unlock()
	for _, s := range now {
		if !slices.ContainsFunc(old, func(o Skipped) bool { return o.Domid == s.Domid && o.DevID == s.DevID && o.Reason == s.Reason }) {
			h.warn("controller %d of domain %d is skipped: %s", s.DevID, s.Domid, s.Reason)
		}
	}
}

// Skipped lists the controllers the last look at every domain set apart
// because they cannot be used; the rest of the host works on.
func (h *Host) Skipped() []Skipped {
	h.shapeMu.Lock()
	defer h.shapeMu.Unlock()
	return slices.Clone(h.skipped)
}

// resolveBusID finds the device a DevSpec names: by busid, or by bus and
// address the way libxl does (the first bus/usb/devices entry in readdir
// order with that busnum and devnum).
func (h *Host) resolveBusID(spec policy.DevSpec) (string, error) {
	if spec.BusID != "" {
		if err := checkBusID(spec.BusID); err != nil {
			return "", fmt.Errorf("%v: %w", err, ErrNoDevice)
		}
		return spec.BusID, nil
	}
	b, err := h.Sys.BusIDByAddr(spec.HostBus, spec.HostAddr)
	if err != nil {
		return "", fmt.Errorf("bus %d addr %d: %w (%v)", spec.HostBus, spec.HostAddr, ErrNoDevice, err)
	}
	return b, nil
}

// Attach attaches a host device to a guest as `xl usbdev-attach` does:
// the port chosen as libxl chooses it (a controller created when none has
// a free port), the busid written to the port, then for pv each interface
// unbound from its driver (recorded under /libxl/usbback) and bound to
// usbback, with libxl's rollback when that fails.
func (h *Host) Attach(ctx context.Context, domid uint32, spec policy.DevSpec) (Assignment, error) {
	return h.AttachWith(ctx, domid, spec, AttachOptions{PreferController: -1})
}

// AttachOptions are what the agent adds to an xl-style attach.
type AttachOptions struct {
	// PreferController and PreferPort choose a port when it is free,
	// falling back to libxl's choice; -1 and 0 for no preference.
	PreferController, PreferPort int
	// NewController is the controller added when none has a free port
	// (zero: libxl's default).
	NewController policy.CtrlSpec
	// Record returns nodes to write in the same transaction as the port
	// (the agent's ownership record); they are removed on rollback.
	// drivers are the dom0 drivers of the interfaces the attach takes
	// for usbback (pv), by interface, as its driver records name them
	// (nil where only the nodes' names count).
	Record func(a Assignment, drivers map[string]string) [][2]string
	// Device, when set, is the device as the caller has just read it
	// (its busid must be the spec's): it is not read again.
	Device *usbsysfs.Device
	// AddMissingController: an emulated controller the store has and its
	// guest's QEMU lacks (its add was cut short) is added to QEMU when
	// the device's add is refused, and the device's add tried again.
	AddMissingController bool
}

// AttachWith is Attach with the agent's options. It is AttachMany with
// one item: the commands and the agent attach along one path.
func (h *Host) AttachWith(ctx context.Context, domid uint32, spec policy.DevSpec, opts AttachOptions) (Assignment, error) {
	busid, err := h.resolveBusID(spec)
	if err != nil {
		return Assignment{}, err
	}
	if spec.Controller < 0 && spec.Port != 0 {
		return Assignment{}, fmt.Errorf("a port needs a controller: %w", ErrNoController)
	}
	r := h.AttachMany(ctx, domid, []AttachItem{{BusID: busid, Controller: spec.Controller, Port: spec.Port, Opts: opts}})[0]
	return r.Assignment, r.Err
}

// clearPort undoes a port write: the port and the caller's records go
// together, in one transaction, as they came. A port that holds another
// device by now keeps it (ErrPortChanged): xl picks its port outside its
// transaction and may have written its own device over this one
// meanwhile, and emptying the port would undo xl's attach. A port gone
// with its controller is not made again.
func (h *Host) clearPort(ctx context.Context, path string, a Assignment, opts AttachOptions) error {
	var taken error
	err := h.XS.Update(context.WithoutCancel(ctx), func(ctx context.Context, tx *xenstore.Tx) error {
		taken = nil
		now, err := tx.Read(ctx, path)
		switch {
		case err == nil && (string(now) == a.BusID || a.BusID == "" || len(now) == 0):
			if err := write(ctx, tx, path, ""); err != nil {
				return err
			}
		case err == nil:
			taken = portChanged(a.Domid, a.Controller, a.Port, string(now), a.BusID)
		case !notExist(err):
			return err
		}
		if opts.Record != nil {
			for _, kv := range opts.Record(a, nil) {
				if err := rmOpt(ctx, tx, kv[0]); err != nil {
					return err
				}
			}
		}
		return nil
	})
	return errors.Join(err, taken)
}

// rolledBack is the result of an item whose attach failed with err and
// was rolled back, clearing its port with clearErr. When the port was
// written over meanwhile, that is the cause: the attach lost a race with
// another toolstack, and is tried again, not refused for good.
func rolledBack(busid string, err, clearErr error) error {
	if errors.Is(clearErr, ErrPortChanged) {
		return fmt.Errorf("%s not attached (rolled back): %w (%v)", busid, clearErr, err)
	}
	return fmt.Errorf("%s not attached (rolled back): %w", busid, errors.Join(err, clearErr))
}

var errNeedController = errors.New("no free port: a controller is needed")

// choosePort picks a port as libxl does, or the preferred one when it is
// free; errNeedController when no controller has a free port. Unlike
// libxl, a port of a controller that cannot carry the device (speed, as
// sysfs gives it: a high-speed device at a USB 1.1 controller, which
// usbback and QEMU refuse) is passed over: for another controller's free
// port, else for the controller that would be added (when it carries the
// device), and taken only when neither does, so that the refusal is told.
func choosePort(ctrls []Controller, domid uint32, spec policy.DevSpec, speed string, opts AttachOptions) (*Controller, int, error) {
	if spec.Controller < 0 {
		c, port := autoPort(ctrls, opts, func(c *Controller) bool { return carries(c, speed) })
		if c == nil && !carries(&Controller{Version: newVersion(opts.NewController)}, speed) {
			c, port = autoPort(ctrls, opts, func(*Controller) bool { return true })
		}
		if c == nil {
			return nil, 0, errNeedController
		}
		return c, port, nil
	}
	var c *Controller
	for i := range ctrls {
		if ctrls[i].DevID == spec.Controller {
			c = &ctrls[i]
		}
	}
	if c == nil {
		return nil, 0, fmt.Errorf("controller %d of domain %d: %w", spec.Controller, domid, ErrNoController)
	}
	port := spec.Port
	if port == 0 {
		port = c.firstFree()
		if port == 0 {
			return nil, 0, fmt.Errorf("controller %d of domain %d has no available port: %w", c.DevID, domid, ErrNoFreePort)
		}
	} else if port < 1 || port > len(c.Port) {
		// libxl writes such a port, which no backend serves: the
		// device would leave dom0 and reach no guest.
		return nil, 0, fmt.Errorf("controller %d of domain %d has ports 1 to %d, not %d: %w", c.DevID, domid, len(c.Port), port, ErrNoPort)
	} else if c.Port[port-1] != "" {
		return nil, 0, fmt.Errorf("controller %d port %d of domain %d holds %s: %w", c.DevID, port, domid, portValue(c.Port[port-1]), ErrPortBusy)
	}
	return c, port, nil
}

// newVersion is the USB version of the controller spec adds (libxl's
// default: 2).
func newVersion(spec policy.CtrlSpec) int {
	if spec.Version == 0 {
		return 2
	}
	return spec.Version
}

// carries says whether a device of speed (Mbit/s, as sysfs gives it) can
// be served at c: USB 1.1 carries 12 Mbit/s at most.
func carries(c *Controller, speed string) bool { return c.Version != 1 || speed != "480" }

// autoPort is the port libxl would pick among the controllers ok takes:
// the preferred port when it is free, else the preferred controller's
// first free port, else the first free port of all; nil when none is.
func autoPort(ctrls []Controller, opts AttachOptions, ok func(*Controller) bool) (*Controller, int) {
	for i := range ctrls {
		pc := &ctrls[i]
		if ok(pc) && pc.DevID == opts.PreferController && opts.PreferPort > 0 && opts.PreferPort <= len(pc.Port) &&
			pc.Port[opts.PreferPort-1] == "" && !pc.Missing[opts.PreferPort-1] {
			return pc, opts.PreferPort
		}
	}
	for i := range ctrls {
		if ok(&ctrls[i]) && ctrls[i].DevID == opts.PreferController {
			if port := ctrls[i].firstFree(); port != 0 {
				return &ctrls[i], port
			}
		}
	}
	for i := range ctrls {
		if !ok(&ctrls[i]) {
			continue
		}
		if port := ctrls[i].firstFree(); port != 0 {
			return &ctrls[i], port
		}
	}
	return nil, 0
}

// firstFree is the first port whose node exists and is empty, 0 if none.
func (c *Controller) firstFree() int {
	for i, b := range c.Port {
		if b == "" && !c.Missing[i] {
			return i + 1
		}
	}
	return 0
}

// A planned interface move: its name, the driver it has ("" none), and
// whether drivers may probe it (a deauthorized one is authorized first).
type planned struct {
	intf, driver string
	authorized   bool
}

// usbbackPlan lists, in readdir order, the interfaces of busid that are not
// in usbback yet, with their drivers, as usbback_dev_assign walks them.
func (h *Host) usbbackPlan(busid string) ([]planned, error) {
	intfs, err := h.Sys.InterfaceStates(busid)
	if err != nil {
		return nil, err
	}
	var out []planned
	for _, in := range intfs {
		if in.Driver != "usbback" {
			out = append(out, planned{in.Name, in.Driver, in.Authorized})
		}
	}
	return out, nil
}

// bindUsbback moves the planned interfaces from their drivers to usbback.
// A refusal that may be usbback not knowing the port yet is tried again
// until settle (see usbbackSettle), a time that callers share between the
// devices they attach at once.
//
// connected, when not nil, says whether usbback can know the port yet
// (its backend connected): if not, a refusal is not waited out.
func (h *Host) bindUsbback(ctx context.Context, plan []planned, settle time.Time, connected func() bool) error {
	for _, p := range plan {
		// A deauthorized interface (authorization before probe) is
		// refused by every driver; authorizing it probes nothing, so no
		// dom0 driver gets it before usbback does.
		if !p.authorized {
			if err := h.Sys.SetInterfaceAuthorized(p.intf, true); err != nil {
				return err
			}
		}
		unbound, err := h.unbindForUsbback(p)
		if err != nil || unbound == inUsbback {
			return err
		}
		// Only an unbind can have put it in usbback since the look
		// above (usbback claiming it as its driver let go).
		if unbound == unboundNow && h.Sys.BoundTo(p.intf, "usbback") {
			continue
		}
		if err := h.Sys.Bind(p.intf, "usbback"); err != nil {
			if errors.Is(err, syscall.ENODEV) && h.usbbackMayServe(p.intf) && (connected == nil || connected()) {
				err = h.bindWhenUsbbackKnows(ctx, p.intf, settle)
			}
			if err == nil {
				continue
			}
			if errors.Is(err, syscall.ENODEV) {
				// usbback's probe said no: its driver matches every
				// interface, so ENODEV is its refusal.
				return fmt.Errorf("%w: %s (usbback serves no hub, no SuperSpeed device and no high-speed device at a USB 1.1 controller; a qusb or emulated controller may): %w", ErrUsbbackRefused, p.intf, err)
			}
			return err
		}
	}
	return nil
}

// Where unbindForUsbback left an interface.
const (
	notBound   = iota // it had no driver to leave
	unboundNow        // its driver let it go
	inUsbback         // usbback has it already
)

// unbindForUsbback takes a planned interface from its driver, read again
// just before: one driver may hold several interfaces and let them all go
// at the first unbind (cdc_ether claims the data interface with the
// control one). The unbind names that driver, so that a driver which took
// the interface meanwhile (xl, another detach) is not unbound: the attach
// fails instead, and the next pass sees where the interface is.
func (h *Host) unbindForUsbback(p planned) (int, error) {
	drv, err := h.Sys.Driver(p.intf)
	switch {
	case drv == "usbback":
		return inUsbback, nil
	case p.driver == "" && err == nil:
		return notBound, nil // none planned: a driver found now refuses usbback's bind
	case err != nil:
		return notBound, err
	case drv == "":
		return notBound, nil
	}
	if err := h.Sys.UnbindFrom(p.intf, drv); err != nil {
		if !errors.Is(err, syscall.ENODEV) {
			return notBound, err
		}
		// Not bound to drv any more: in usbback is where it is going.
		if now, _ := h.Sys.Driver(p.intf); now == "usbback" {
			return inUsbback, nil
		}
		return notBound, fmt.Errorf("%s left %s while it was moved to usbback: %w", p.intf, drv, ErrDriverChanged)
	}
	return unboundNow, nil
}

// usbbackSettle is how long a bind waits, in steps, for usbback to learn
// the port just written (about a second in all): usbback follows the store
// through a watch, so a bind right after the port's write can reach its
// probe first, and is refused as a device in no port.
var usbbackSettle = []time.Duration{time.Millisecond, 2 * time.Millisecond, 4 * time.Millisecond, 8 * time.Millisecond,
	16 * time.Millisecond, 32 * time.Millisecond, 64 * time.Millisecond, 128 * time.Millisecond, 256 * time.Millisecond, 512 * time.Millisecond}

// usbbackMayServe says whether usbback's refusal of intf (or of a busid)
// can be its port table lagging: not for a hub or a SuperSpeed device, which it never
// serves. (A high-speed device at a USB 1.1 port, refused too, needs the
// port's controller: see usbbackMayTake.)
func (h *Host) usbbackMayServe(intf string) bool {
	busid, _, _ := strings.Cut(intf, ":")
	class, speed, err := h.Sys.ClassSpeed(busid)
	if err != nil {
		return false
	}
	mbps, _ := strconv.ParseFloat(speed, 64)
	return class != 9 && mbps < 5000
}

// bindWhenUsbbackKnows binds intf to usbback again while usbback refuses
// it, in the steps of usbbackSettle, until settle or ctx ends.
func (h *Host) bindWhenUsbbackKnows(ctx context.Context, intf string, settle time.Time) error {
	err := fmt.Errorf("usbsysfs: bind %s to usbback: %w", intf, syscall.ENODEV)
	for _, d := range usbbackSettle {
		if time.Now().Add(d).After(settle) {
			break
		}
		t := time.NewTimer(d)
		select {
		case <-ctx.Done():
			t.Stop()
			return err
		case <-t.C:
		}
		if err = h.Sys.Bind(intf, "usbback"); err == nil || h.Sys.BoundTo(intf, "usbback") {
			return nil
		}
		if !errors.Is(err, syscall.ENODEV) {
			return err
		}
	}
	return err
}

// settleBy is how long the binds of devices attached now may wait, in
// all, for usbback to learn their ports.
func settleBy() time.Time {
	var d time.Duration
	for _, s := range usbbackSettle {
		d += s
	}
	return time.Now().Add(d)
}

// rollback undoes bindUsbback: unbind from usbback, rebind the recorded
// drivers (an interface whose bind fails is offered to the kernel's
// matching: its record goes, and with it what it had), drop the record.
func (h *Host) rollback(ctx context.Context, busid string) {
	ctx = context.WithoutCancel(ctx)
	if err := h.unbindUsbback(busid); err != nil {
		h.warn("rollback of %s: %v", busid, err)
	}
	if err := h.giveBack(ctx, busid, nil); err != nil {
		h.warn("rollback of %s: %v", busid, err)
	}
}

func (h *Host) unbindUsbback(busid string) error {
	_, err := h.takeFromUsbback(busid)
	return err
}

// unbindFromUsbback takes intf out of usbback; false when it was not
// there any more. The look that found it there may be stale by now:
// another toolstack's detach of the same device (xl's, while a domain is
// destroyed) may have taken it out and bound it back to its dom0 driver
// meanwhile. Unbinding through usbback's own file, which the kernel
// refuses for an interface that is not usbback's, leaves that driver;
// unbinding through <intf>/driver would take it away, and with its record
// gone already the interface would be left without a driver for good.
func (h *Host) unbindFromUsbback(intf string) (bool, error) {
	err := h.Sys.UnbindFrom(intf, "usbback")
	if errors.Is(err, syscall.ENODEV) {
		return false, nil
	}
	return err == nil, err
}

// bindRecorded binds each interface of busid to its recorded driver, and
// names those whose bind failed; the records stay. While the kernel still
// probes one (ErrBusy), it stops there.
func (h *Host) bindRecorded(ctx context.Context, busid string) (failed []string, _ error) {
	intfs, err := h.Sys.InterfaceStates(busid)
	var errs []error
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		errs = append(errs, err)
	}
	for _, in := range intfs {
		rec, ok, err := readOpt(ctx, h.XS, driverPathKey(busid, in.Name))
		if err != nil || !ok {
			errs = append(errs, err)
			continue
		}
		drv, err := driverFromRecord(rec)
		if err != nil {
			h.warn("%s: %v; left unbound", in.Name, err)
			continue
		}
		// Bound to a dom0 driver already: nothing to give back. The
		// record may not even be this device's (another one plugged into
		// the same socket while nobody watched).
		if in.Driver != "" && in.Driver != "usbback" {
			continue
		}
		// EBUSY with the interface now at its driver: another hand (the
		// agent, or xl) gave it back meanwhile, which is what was wanted.
		if err := h.Sys.Bind(in.Name, drv); err != nil && !h.Sys.BoundTo(in.Name, drv) {
			if errors.Is(err, usbsysfs.ErrBusy) {
				// The kernel still runs the driver's probe (the device
				// reads as busy until it is done): the records stay for
				// the pass that finishes the give-back then.
				return failed, errors.Join(append(errs, err)...)
			}
			errs = append(errs, err)
			failed = append(failed, in.Name)
		}
	}
	return failed, errors.Join(errs...)
}

// Detach gives back the device at a controller port, as `xl usbdev-detach`
// does: unbind from usbback, clear the port, rebind the recorded drivers.
// A device that has left the host has its port cleared and its record
// removed (libxl refuses: "Unknown device").
func (h *Host) Detach(ctx context.Context, domid uint32, devid, port int) error {
	return h.DetachForget(ctx, domid, devid, port)
}

// DetachForget is Detach that also removes the nodes forget in the same
// transaction that clears the port (the agent's ownership record), so a
// crash leaves both or neither.
func (h *Host) DetachForget(ctx context.Context, domid uint32, devid, port int, forget ...string) error {
	return h.detach(ctx, domid, devid, port, "", forget)
}

// DetachOwned is DetachForget of the device a looks at: when the port
// holds another device by now (xl detached a and attached another there
// meanwhile), the port and the records are not touched and the error is
// ErrPortChanged. The port is read again in the transaction that clears
// it, so a change made while the device left usbback is seen too; the
// device is then put where the store has it now (usbback if a port names
// it, else its dom0 drivers).
func (h *Host) DetachOwned(ctx context.Context, a Assignment, forget ...string) error {
	if err := checkBusID(a.BusID); err != nil {
		return err
	}
	return h.detach(ctx, a.Domid, a.Controller, a.Port, a.BusID, forget)
}

func (h *Host) detach(ctx context.Context, domid uint32, devid, port int, expect string, forget []string) error {
	if devid < 0 || port < 1 {
		return fmt.Errorf("controller %d port %d: %w", devid, port, ErrNoController)
	}
	c, err := h.controller(ctx, h.XS, domid, devid, false)
	if err != nil {
		return err
	}
	p := c.portPath(port)
	busid, ok, err := readOpt(ctx, h.XS, p)
	if err != nil {
		return err
	}
	if !ok || busid == "" {
		return fmt.Errorf("controller %d port %d of domain %d: %w", devid, port, domid, ErrPortEmpty)
	}
	if expect != "" && busid != expect {
		return portChanged(domid, devid, port, busid, expect)
	}
	if err := checkBusID(busid); err != nil {
		h.warn("controller %d port %d of domain %d: %v; clearing it", devid, port, domid, err)
		return write(ctx, h.XS, p, "")
	}
	clear := func(ctx context.Context, tx *xenstore.Tx) error {
		if expect != "" {
			now, _, err := readOpt(ctx, tx, p)
			if err != nil {
				return err
			}
			if now != expect {
				return portChanged(domid, devid, port, now, expect)
			}
		}
		if err := write(ctx, tx, p, ""); err != nil {
			return err
		}
		for _, f := range forget {
			if err := rmOpt(ctx, tx, f); err != nil {
				return err
			}
		}
		return nil
	}
	if c.Type == policy.TypeDeviceModel {
		return h.dmDetach(ctx, c, port, busid, clear)
	}
	var out []string // what it took from usbback
	if c.Type == policy.TypePV {
		if out, err = h.takeFromUsbback(busid); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return fmt.Errorf("%s: removing it from the guest failed; try again: %w", busid, err)
		}
	}
	if expect == "" && len(forget) == 0 {
		// As libxl: the port alone, no transaction.
		if err := write(ctx, h.XS, p, ""); err != nil {
			return err
		}
	} else if err := h.XS.Update(ctx, clear); err != nil {
		if errors.Is(err, ErrPortChanged) && c.Type == policy.TypePV {
			// It left usbback before the port was seen changed: back
			// where it belongs now, rather than with no driver.
			err = errors.Join(err, h.settleAfterChange(ctx, busid, out))
		}
		return err
	}
	if c.Type == policy.TypePV {
		if err := h.giveBack(ctx, busid, out); err != nil {
			if _, derr := h.Sys.Device(busid); errors.Is(derr, fs.ErrNotExist) {
				return nil // it left meanwhile: nothing to give back
			}
			if usbsysfs.OnlyBusy(err) {
				return fmt.Errorf("%s: %w: %w", busid, ErrGivingBack, err)
			}
			return fmt.Errorf("%s removed from the guest, but not bound again to its dom0 driver: %w", busid, err)
		}
	}
	return nil
}

// settleAfterChange puts busid, whose interfaces out a detach took out of
// usbback and then found its port changed, where the store has it now: in
// usbback if a port names it (xl attached it elsewhere), else with its
// dom0 drivers.
func (h *Host) settleAfterChange(ctx context.Context, busid string, out []string) error {
	all, err := h.Assigned(ctx)
	if err != nil {
		return err
	}
	for _, a := range all {
		if a.BusID == busid {
			return h.EnsureBound(ctx, busid)
		}
	}
	return h.giveBack(ctx, busid, out)
}

// portChanged is the error of a detach whose port holds another device
// than the one it was asked to detach.
func portChanged(domid uint32, devid, port int, now, expect string) error {
	shown := "nothing"
	if now != "" {
		shown = portValue(now)
	}
	return fmt.Errorf("controller %d port %d of domain %d holds %s now, not %s: %w", devid, port, domid, shown, expect, ErrPortChanged)
}

// Repair clears every port that names a device no longer on the host, and
// its /libxl/usbback record: the state after an unplug that libxl never
// cleans up, which makes xl refuse every later attach.
func (h *Host) Repair(ctx context.Context) ([]Assignment, error) {
	all, err := h.Assigned(ctx)
	if err != nil {
		return nil, err
	}
	var fixed []Assignment
	for _, a := range all {
		if !a.Stale {
			continue
		}
		c := Controller{Type: a.Type, libxl: libxlPath(a.Domid, a.Controller)}
		if a.Type != policy.TypeDeviceModel {
			kind := "vusb"
			if a.Type == policy.TypeQUSB {
				kind = "qusb"
			}
			c.backend = backendPath(kind, a.Domid, a.Controller)
		}
		p := c.portPath(a.Port)
		err := h.XS.Update(ctx, func(ctx context.Context, tx *xenstore.Tx) error {
			cur, _, err := readOpt(ctx, tx, p)
			if err != nil || cur != a.BusID {
				return err // changed meanwhile: leave it
			}
			return write(ctx, tx, p, "")
		})
		if err != nil {
			return fixed, err
		}
		if err := rmOpt(ctx, h.XS, usbbackRecord(a.BusID)); err != nil {
			return fixed, err
		}
		fixed = append(fixed, a)
	}
	return fixed, nil
}

func (h *Host) assignmentsOf(ctrls []Controller) []Assignment {
	var out []Assignment
	for _, c := range ctrls {
		for i, b := range c.Port {
			if b == "" {
				continue
			}
			if err := checkBusID(b); err != nil {
				h.warnOnce("domain %d controller %d port %d: %v; ignored", c.Domid, c.DevID, i+1, err)
				continue
			}
			a := Assignment{Domid: c.Domid, Controller: c.DevID, Port: i + 1, BusID: b, Type: c.Type}
			a.Stale = !h.Sys.Present(b)
			out = append(out, a)
		}
	}
	return out
}

// authorizeFor authorizes the planned interfaces that are deauthorized,
// binding none: for a device model that claims them itself.
func (h *Host) authorizeFor(plan []planned) error {
	for _, p := range plan {
		if !p.authorized {
			if err := h.Sys.SetInterfaceAuthorized(p.intf, true); err != nil {
				return err
			}
		}
	}
	return nil
}

// deauthorizeAgain makes the interfaces of plan that were deauthorized
// (authorization before probe) so again, when an attach that authorized
// them for the guest is rolled back: left authorized and without a driver,
// one would be the first dom0 driver's the kernel matches to it, where the
// device waits (pending, retried) for its guest.
func (h *Host) deauthorizeAgain(plan []planned) {
	for _, p := range plan {
		if p.authorized {
			continue
		}
		if err := h.Sys.SetInterfaceAuthorized(p.intf, false); err != nil && !errors.Is(err, fs.ErrNotExist) {
			h.warn("rollback of %s: making it inert again: %v", p.intf, err)
		}
	}
}
