package assign

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/usbhotplugd/usbhotplugd/internal/qmp"
	"github.com/usbhotplugd/usbhotplugd/internal/xenstore"
	"github.com/usbhotplugd/usbhotplugd/policy"
)

// A QMP runs commands on a guest's device model (QEMU).
type QMP interface {
	Run(ctx context.Context, command string, args, out any) error
}

// qmpTimeout is libxl's LIBXL_QMP_CMD_TIMEOUT.
const qmpTimeout = 10 * time.Second

// qmpFor connects to the device model of domid. A socket that does not
// exist yet or refuses the connection is a guest whose QEMU is not ready
// yet (ErrNotReady): never a device that has left, though the dial fails
// with ENOENT.
func (h *Host) qmpFor(ctx context.Context, domid uint32) (QMP, func(), error) {
	if h.DialQMP != nil {
		q, done, err := h.DialQMP(ctx, domid)
		if err != nil {
			return nil, nil, notReady(domid, err)
		}
		return q, done, nil
	}
	c, err := qmp.Dial(ctx, qmp.SocketPath(domid))
	if err != nil {
		return nil, nil, notReady(domid, err)
	}
	return c, func() { c.Close() }, nil
}

// notReady says the device model of domid cannot be reached; the cause is
// kept as words only, so that an ENOENT of the socket is not taken for
// the device's.
func notReady(domid uint32, err error) error {
	return fmt.Errorf("the device model (QEMU) of domain %d cannot be reached (%v): %w", domid, err, ErrNotReady)
}

func (h *Host) runQMP(ctx context.Context, domid uint32, command string, args map[string]any) error {
	ctx, cancel := context.WithTimeout(ctx, qmpTimeout)
	defer cancel()
	q, done, err := h.qmpFor(ctx, domid)
	if err != nil {
		return err
	}
	defer done()
	return q.Run(ctx, command, args, nil)
}

// dmDefaults fills in libxl's versions and ports for an emulated
// controller: v2 (usb-ehci) by default, v1 always 2 ports, v2 always 6,
// v3 8 unless told.
func dmDefaults(spec policy.CtrlSpec) policy.CtrlSpec {
	if spec.Version == 0 {
		spec.Version = 2
	}
	if spec.Ports == 0 {
		switch spec.Version {
		case 1:
			spec.Ports = 2
		case 2:
			spec.Ports = 6
		default:
			spec.Ports = 8
		}
	}
	return spec
}

// dmControllerAdd is QEMU's part of an emulated controller, as libxl asks
// for it.
func dmControllerAdd(devid int, spec policy.CtrlSpec) map[string]any {
	args := map[string]any{"id": fmt.Sprintf("xenusb-%d", devid)}
	switch spec.Version {
	case 1:
		args["driver"] = "piix3-usb-uhci"
	case 2:
		args["driver"] = "usb-ehci"
	case 3:
		args["driver"] = "nec-usb-xhci"
		args["p2"], args["p3"] = spec.Ports, spec.Ports
	}
	return args
}

// addDMController adds an emulated controller: the /libxl keys (the only
// ones this type has) in one transaction, then QMP device_add; a refusal
// from QEMU removes the keys again.
func (h *Host) addDMController(ctx context.Context, domid uint32, spec policy.CtrlSpec) (Controller, error) {
	spec = dmDefaults(spec)
	if err := spec.Check(); err != nil {
		return Controller{}, err
	}
	var devid int
	err := h.XS.Update(ctx, func(ctx context.Context, tx *xenstore.Tx) error {
		var err error
		if devid, err = newDevID(ctx, tx, domid); err != nil {
			return err
		}
		lp := libxlPath(domid, devid)
		if _, ok, err := readOpt(ctx, tx, lp); err != nil || ok {
			if err == nil {
				err = fmt.Errorf("controller %d of domain %d: %w", devid, domid, ErrDeviceExists)
			}
			return err
		}
		list := [][2]string{{"type", policy.TypeDeviceModel}, {"usb-ver", strconv.Itoa(spec.Version)}, {"num-ports", strconv.Itoa(spec.Ports)}, {"port", ""}}
		for i := 1; i <= spec.Ports; i++ {
			list = append(list, [2]string{"port/" + strconv.Itoa(i), ""})
		}
		for _, kv := range list {
			if err := write(ctx, tx, lp+"/"+kv[0], kv[1]); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return Controller{}, err
	}
	if err := h.runQMP(ctx, domid, "device_add", dmControllerAdd(devid, spec)); err != nil {
		if rerr := h.XS.Rm(context.WithoutCancel(ctx), libxlPath(domid, devid)); rerr != nil && !notExist(rerr) {
			err = errors.Join(err, rerr)
		}
		why := "QEMU refused"
		if errors.Is(err, ErrNotReady) {
			why = "QEMU not reached"
		}
		return Controller{}, fmt.Errorf("controller %d of domain %d not added (%s; nothing left in xenstore): %w", devid, domid, why, err)
	}
	return h.controller(ctx, h.XS, domid, devid, true)
}

// dmDeviceID is the QEMU id libxl gives a passed-through device.
func dmDeviceID(bus, addr int) string { return fmt.Sprintf("xenusb-%d-%d", bus, addr) }

// dmAttach is QEMU's part of an attach to an emulated controller: the port
// is written already; a refusal clears it (and the caller's records).
func (h *Host) dmAttach(ctx context.Context, a Assignment, opts AttachOptions) error {
	// Its address alone: the attributes read under the device's lock
	// are not needed, and QEMU's usb-host may hold it (a reset).
	bus, dev, err := h.Sys.Addr(a.BusID)
	if err == nil {
		err = h.runQMP(ctx, a.Domid, "device_add", dmDeviceArgs(a, bus, dev))
		if err != nil && opts.AddMissingController && h.addMissingDMController(ctx, a) {
			err = h.runQMP(ctx, a.Domid, "device_add", dmDeviceArgs(a, bus, dev))
		}
	}
	if err == nil {
		return nil
	}
	c := Controller{Type: a.Type, libxl: libxlPath(a.Domid, a.Controller)}
	werr := h.clearPort(ctx, c.portPath(a.Port), a, opts)
	return fmt.Errorf("%s not attached to the emulated controller %d of domain %d (rolled back): %w", a.BusID, a.Controller, a.Domid, errors.Join(err, werr))
}

// addMissingDMController adds to the guest's QEMU a's emulated controller
// when the store has it and QEMU does not: a process killed between the
// controller's write to the store and its device_add leaves it so, and
// every attach to it would fail for good (QEMU has no such bus). true when
// it was added. Asked only after a device_add failed: an attach that
// works costs nothing more. (xl refuses such an attach, as QEMU does, and
// so do the commands; the agent, which may have made the controller,
// asks.)
func (h *Host) addMissingDMController(ctx context.Context, a Assignment) bool {
	id := fmt.Sprintf("xenusb-%d", a.Controller)
	ids, err := h.dmPeripherals(ctx, a.Domid)
	if err != nil || slices.Contains(ids, id) {
		return false
	}
	c, err := h.controller(ctx, h.XS, a.Domid, a.Controller, true)
	if err != nil || c.Type != policy.TypeDeviceModel {
		return false
	}
	spec := policy.CtrlSpec{Type: policy.TypeDeviceModel, Version: c.Version, Ports: c.Ports}
	if err := h.runQMP(ctx, a.Domid, "device_add", dmControllerAdd(a.Controller, spec)); err != nil {
		h.warn("controller %d of domain %d is in the store but not in the guest's QEMU, which refused it: %v", a.Controller, a.Domid, err)
		return false
	}
	h.warn("controller %d of domain %d was in the store but not in the guest's QEMU (an add cut short): added to it", a.Controller, a.Domid)
	return true
}

// dmPeripherals lists the ids of the devices in the guest's QEMU.
func (h *Host) dmPeripherals(ctx context.Context, domid uint32) ([]string, error) {
	ctx, cancel := context.WithTimeout(ctx, qmpTimeout)
	defer cancel()
	q, done, err := h.qmpFor(ctx, domid)
	if err != nil {
		return nil, err
	}
	defer done()
	return peripherals(ctx, q)
}

// peripherals lists the ids of the devices q's QEMU has.
func peripherals(ctx context.Context, q QMP) ([]string, error) {
	var props []struct {
		Name string `json:"name"`
	}
	if err := q.Run(ctx, "qom-list", map[string]any{"path": "/machine/peripheral"}, &props); err != nil {
		return nil, err
	}
	ids := make([]string, len(props))
	for i, p := range props {
		ids[i] = p.Name
	}
	return ids, nil
}

// EnsureInDeviceModel makes sure the guest's QEMU has the device at a's
// emulated port, and adds it if not: a crash between the port's write and
// QEMU's device_add leaves the port set with nothing behind it, and the
// guest without its device. added says it had to. A usb-host there of
// another address than the device's is an earlier plug's, whose removal
// was never seen: no device answers it any more, and it is replaced.
func (h *Host) EnsureInDeviceModel(ctx context.Context, a Assignment) (added bool, err error) {
	if a.Type != policy.TypeDeviceModel {
		return false, nil
	}
	id, err := h.dmFind(ctx, a.Domid, a.Controller, a.Port)
	if err != nil {
		return false, err
	}
	bus, dev, aerr := h.Sys.Addr(a.BusID)
	switch {
	case id != "" && (aerr != nil || id == dmDeviceID(bus, dev)):
		return false, nil
	case id != "":
		if err := h.runQMP(ctx, a.Domid, "device_del", map[string]any{"id": id}); err != nil {
			return false, fmt.Errorf("removing %s, an earlier plug of %s, from domain %d's device model: %w", id, a.BusID, a.Domid, err)
		}
	case aerr != nil:
		return false, aerr
	}
	err = h.runQMP(ctx, a.Domid, "device_add", dmDeviceArgs(a, bus, dev))
	return err == nil, err
}

func dmDeviceArgs(a Assignment, bus, dev int) map[string]any {
	return map[string]any{
		"driver": "usb-host", "id": dmDeviceID(bus, dev), "bus": fmt.Sprintf("xenusb-%d.0", a.Controller),
		"port": strconv.Itoa(a.Port), "hostbus": strconv.Itoa(bus), "hostaddr": strconv.Itoa(dev),
	}
}

// dmDetach removes the device from QEMU, then clears the port (and the
// caller's records) in one transaction. libxl clears first and writes the
// busid back if QEMU refuses: a process killed between the two leaves the
// guest with a device that no port names and no record owns, which no
// later look finds. In this order a kill leaves the port set and QEMU
// without the device, which the next start finds: it adds the device
// again (EnsureInDeviceModel), or detaches it again, and QEMU not having
// it then is no failure.
func (h *Host) dmDetach(ctx context.Context, c Controller, port int, busid string, clear func(context.Context, *xenstore.Tx) error) error {
	var id string
	bus, dev, err := h.Sys.Addr(busid)
	switch {
	case err == nil:
		id = dmDeviceID(bus, dev)
	case errors.Is(err, fs.ErrNotExist):
		// Gone from the host, so its bus and address (and QEMU's id for
		// it) are unknown: QEMU is asked which device sits at the port
		// (libxl gives up here, and the port stays taken inside QEMU).
		id, err = h.dmFind(ctx, c.Domid, c.DevID, port)
	}
	if err == nil && id != "" {
		if err = h.runQMP(ctx, c.Domid, "device_del", map[string]any{"id": id}); err != nil {
			// Not in QEMU by that id: a detach cut short after its
			// device_del (nothing to take out), or a plug of busid
			// before this one, its removal never seen, whose usb-host
			// QEMU still holds at the port by the old address.
			switch at, ferr := h.dmFind(ctx, c.Domid, c.DevID, port); {
			case ferr != nil:
			case at == "":
				err = nil
			case at != id:
				err = h.runQMP(ctx, c.Domid, "device_del", map[string]any{"id": at})
			}
		}
	}
	if err != nil {
		return fmt.Errorf("%s not removed from domain %d's device model (its port is kept): %w", busid, c.Domid, err)
	}
	return h.XS.Update(ctx, clear)
}

// dmFind asks QEMU for the id of the passed-through device at a port of
// an emulated controller ("" if none).
func (h *Host) dmFind(ctx context.Context, domid uint32, ctrl, port int) (string, error) {
	ctx, cancel := context.WithTimeout(ctx, qmpTimeout)
	defer cancel()
	q, done, err := h.qmpFor(ctx, domid)
	if err != nil {
		return "", err
	}
	defer done()
	ids, err := peripherals(ctx, q)
	if err != nil {
		return "", err
	}
	for _, id := range ids {
		if !strings.HasPrefix(id, "xenusb-") || strings.Count(id, "-") != 2 {
			continue
		}
		path := "/machine/peripheral/" + id
		var gotPort, bus string
		if q.Run(ctx, "qom-get", map[string]any{"path": path, "property": "port"}, &gotPort) != nil ||
			q.Run(ctx, "qom-get", map[string]any{"path": path, "property": "parent_bus"}, &bus) != nil {
			continue
		}
		if gotPort == strconv.Itoa(port) && strings.HasSuffix(bus, fmt.Sprintf("/xenusb-%d.0", ctrl)) {
			return id, nil
		}
	}
	return "", nil
}

// removeDMController detaches the controller's devices, asks QEMU to
// remove it, then removes its /libxl keys.
func (h *Host) removeDMController(ctx context.Context, c Controller) error {
	for i, b := range c.Port {
		if b == "" {
			continue
		}
		if err := h.DetachForget(ctx, c.Domid, c.DevID, i+1); err != nil && !errors.Is(err, ErrPortEmpty) {
			return fmt.Errorf("controller %d of domain %d not removed: %w", c.DevID, c.Domid, err)
		}
	}
	if err := h.runQMP(ctx, c.Domid, "device_del", map[string]any{"id": fmt.Sprintf("xenusb-%d", c.DevID)}); err != nil {
		return fmt.Errorf("controller %d of domain %d not removed: %w", c.DevID, c.Domid, err)
	}
	return h.XS.Update(ctx, func(ctx context.Context, tx *xenstore.Tx) error {
		return rmOpt(ctx, tx, c.libxl)
	})
}
