package assign

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"syscall"

	"github.com/usbhotplugd/usbhotplugd/internal/xenstore"
	"github.com/usbhotplugd/usbhotplugd/policy"
)

// A Controller is a guest's virtual USB controller as libxl reads it: type
// from /libxl, version, ports and port contents from the backend (for
// devicemodel, all from /libxl).
type Controller struct {
	Domid         uint32
	DevID         int
	Type          string // pv, qusb, devicemodel
	Version       int
	Ports         int
	BackendDomid  uint32
	FrontendState int // -1 when missing; 0 for devicemodel
	// Port[i] is the busid at port i+1, "" when free.
	Port []string
	// Missing[i] is set when the node of port i+1 does not exist (it is
	// then not free either, as for libxl).
	Missing []bool

	libxl, backend, frontend string
}

// portPath is where the busid of a port lives.
func (c *Controller) portPath(port int) string {
	if c.Type == policy.TypeDeviceModel {
		return fmt.Sprintf("%s/port/%d", c.libxl, port)
	}
	return fmt.Sprintf("%s/port/%d", c.backend, port)
}

// Controllers lists a domain's controllers in the DIRECTORY order of
// /libxl/<domid>/device/vusb, as libxl does.
func (h *Host) Controllers(ctx context.Context, domid uint32) ([]Controller, error) {
	return h.controllers(ctx, h.XS, domid, true)
}

func (h *Host) controllers(ctx context.Context, r rw, domid uint32, withState bool) ([]Controller, error) {
	out, skipped, err := h.usableControllers(ctx, r, domid, withState)
	if err == nil && len(skipped) > 0 {
		err = skipped[0].Err
	}
	return out, err
}

// UsableControllers is Controllers with the controllers that cannot be
// used set apart instead of failing the whole read.
func (h *Host) UsableControllers(ctx context.Context, domid uint32) ([]Controller, []Skipped, error) {
	return h.usableControllers(ctx, h.XS, domid, true)
}

// A Skipped controller is one the agent cannot use: its backend is not in
// dom0 (a driver domain's, as libxl writes it), or its nodes are not what
// libxl writes. It affects that controller alone.
type Skipped struct {
	Domid  uint32 `json:"domid"`
	DevID  int    `json:"controller"`
	Reason string `json:"reason"`
	Err    error  `json:"-"`
}

// unusable says err is about the controller's contents, not the store.
func unusable(err error) bool {
	return errors.Is(err, ErrBadStore) || errors.Is(err, ErrNotDom0Backend)
}

// usableControllers is controllers with the ones that cannot be used
// set apart, for the host-wide views (every port, an attach).
func (h *Host) usableControllers(ctx context.Context, r rw, domid uint32, withState bool) ([]Controller, []Skipped, error) {
	ids, err := dirOpt(ctx, r, libxlDir(domid))
	if err != nil {
		return nil, nil, err
	}
	var devids []int
	for _, s := range ids {
		devid, ok := parseDevID(s)
		if !ok {
			h.warnOnce("%s/%s is not a controller devid; ignored", libxlDir(domid), s)
			continue
		}
		devids = append(devids, devid)
	}
	// Controllers are read side by side: a domain costs the round trips
	// of one controller.
	out := make([]Controller, len(devids))
	errs := make([]error, len(devids))
	var wg sync.WaitGroup
	for i, devid := range devids {
		wg.Go(func() { out[i], errs[i] = h.controller(ctx, r, domid, devid, withState) })
	}
	wg.Wait()
	var skipped []Skipped
	good := out[:0]
	for i, err := range errs {
		if errors.Is(err, ErrNoController) {
			// Listed, but no type: removed since the listing (it is
			// gone, nothing to say), or a half-written directory, which
			// is skipped as any other controller libxl would not write.
			_, exists, rerr := readOpt(ctx, r, libxlPath(domid, devids[i]))
			switch {
			case rerr != nil:
				return nil, nil, rerr
			case !exists:
				continue
			}
			err = fmt.Errorf("controller %d of domain %d: no type in %s (half-written?): %w", devids[i], domid, libxlPath(domid, devids[i]), ErrBadStore)
		}
		switch {
		case err == nil:
			good = append(good, out[i])
		case unusable(err):
			skipped = append(skipped, Skipped{Domid: domid, DevID: devids[i], Reason: err.Error(), Err: err})
		default:
			return nil, nil, err
		}
	}
	return good, skipped, nil
}

// Controller reads one controller; ErrNoController if /libxl has none.
func (h *Host) Controller(ctx context.Context, domid uint32, devid int) (Controller, error) {
	return h.controller(ctx, h.XS, domid, devid, true)
}

// controller reads one controller in two round trips: the libxl keys
// together with what a pv backend at its usual path would hold (validated
// against the libxl keys afterwards), then the ports. A qusb or devicemodel
// controller costs one more.
//
// Inside a transaction, withState is off: the frontend's state is the
// guest's to change at any time and would only make the transaction
// conflict.
func (h *Host) controller(ctx context.Context, r rw, domid uint32, devid int, withState bool) (Controller, error) {
	c := Controller{Domid: domid, DevID: devid, libxl: libxlPath(domid, devid)}
	guess, fp := backendPath("vusb", domid, devid), frontendPath(domid, devid)
	v, err := readMany(ctx, r, controllerPaths(domid, devid, withState))
	if err != nil {
		return Controller{}, err
	}
	if !v[0].ok {
		return Controller{}, fmt.Errorf("controller %d of domain %d: %w", devid, domid, ErrNoController)
	}
	c.Type = v[0].v
	src := c.libxl
	switch c.Type {
	case policy.TypePV, policy.TypeQUSB:
		kind, err := checkBackendPath(v[1].v, domid, devid)
		if err != nil {
			return Controller{}, fmt.Errorf("controller %d of domain %d: %v: %w", devid, domid, err, ErrBadStore)
		}
		if (kind == "vusb") != (c.Type == policy.TypePV) {
			return Controller{}, fmt.Errorf("controller %d of domain %d: type %s with backend %s: %w", devid, domid, c.Type, v[1].v, ErrBadStore)
		}
		if v[2].v != fp {
			return Controller{}, fmt.Errorf("controller %d of domain %d: frontend path %q: %w", devid, domid, v[2].v, ErrBadStore)
		}
		c.backend, c.frontend = v[1].v, fp
		src = c.backend
	case policy.TypeDeviceModel:
	default:
		return Controller{}, fmt.Errorf("controller %d of domain %d: type %q: %w", devid, domid, c.Type, ErrBadStore)
	}
	ver, ports := v[3], v[4]
	if src != guess {
		v, err := readMany(ctx, r, []string{src + "/usb-ver", src + "/num-ports"})
		if err != nil {
			return Controller{}, err
		}
		ver, ports = v[0], v[1]
	}
	c.Version, _ = strconv.Atoi(ver.v)
	n, ok := atoiStrict(ports.v)
	if !ok || n < 1 || n > policy.MaxPVPorts {
		return Controller{}, fmt.Errorf("controller %d of domain %d: num-ports %q: %w", devid, domid, ports.v, ErrBadStore)
	}
	c.Ports = n
	if c.frontend != "" && withState {
		c.FrontendState = -1
		// The frontend is the guest's: a number, or nothing we trust.
		if fstate := v[5]; fstate.ok {
			if st, err := strconv.Atoi(fstate.v); err == nil && st >= 0 && st < 16 {
				c.FrontendState = st
			}
		}
	}
	paths := make([]string, n)
	for i := range paths {
		paths[i] = c.portPath(i + 1)
	}
	pv, err := readMany(ctx, r, paths)
	if err != nil {
		return Controller{}, err
	}
	c.Port = make([]string, n)
	c.Missing = make([]bool, n)
	for i, p := range pv {
		c.Port[i], c.Missing[i] = p.v, !p.ok
	}
	return c, nil
}

// controllerPaths are the nodes controller reads first.
func controllerPaths(domid uint32, devid int, withState bool) []string {
	l, guess := libxlPath(domid, devid), backendPath("vusb", domid, devid)
	paths := []string{l + "/type", l + "/backend", l + "/frontend", guess + "/usb-ver", guess + "/num-ports"}
	if withState {
		paths = append(paths, frontendPath(domid, devid)+"/state")
	}
	return paths
}

// resolveType turns auto into what libxl picks: devicemodel for HVM, pv
// when usbback is loaded, qusb otherwise.
func (h *Host) resolveType(ctx context.Context, domid uint32, typ string) (string, error) {
	if typ != "" && typ != policy.TypeAuto {
		return typ, nil
	}
	dt, _, err := readOpt(ctx, h.XS, fmt.Sprintf("/libxl/%d/type", domid))
	if err != nil {
		return "", err
	}
	if dt == "hvm" {
		return policy.TypeDeviceModel, nil
	}
	_, err = os.Lstat(filepath.Join(h.Sys.Root(), "bus/usb/drivers/usbback"))
	switch {
	case err == nil:
		return policy.TypePV, nil
	case errors.Is(err, os.ErrNotExist):
		return policy.TypeQUSB, nil
	}
	return "", fmt.Errorf("is usbback loaded? %w", err)
}

// AddController adds a controller to a guest as `xl usbctrl-attach` does
// and, for pv, waits for the backend's InitWait when wait is set. A
// timeout leaves the nodes in place, as libxl does.
func (h *Host) AddController(ctx context.Context, domid uint32, spec policy.CtrlSpec, wait bool) (Controller, error) {
	typ, err := h.resolveType(ctx, domid, spec.Type)
	if err != nil {
		return Controller{}, err
	}
	auto := typ != spec.Type // chosen here, as libxl chooses for auto
	spec.Type = typ
	if typ == policy.TypeDeviceModel {
		return h.addDMController(ctx, domid, spec)
	}
	spec.Version = newVersion(spec)
	if spec.Ports == 0 {
		spec.Ports = 8
	}
	if err := spec.Check(); err != nil {
		return Controller{}, err
	}
	if typ == policy.TypeQUSB {
		// The domain is read too, so that a domain that is not there is
		// told as such; the transaction below looks again.
		q := fmt.Sprintf("/local/domain/0/device-model/%d/backends/qusb", domid)
		v, err := readMany(ctx, h.XS, []string{homePath(domid), q})
		switch {
		case err != nil:
			return Controller{}, err
		case !v[0].ok:
			return Controller{}, fmt.Errorf("domain %d: %w", domid, ErrNoDomain)
		case !v[1].ok:
			err = fmt.Errorf("type qusb needs the guest's QEMU to offer the backend (%s is missing): %w", q, ErrUnsupported)
			if auto {
				err = fmt.Errorf("no controller type serves domain %d: pv needs dom0's usbback driver, which this kernel does not have loaded (no /sys/bus/usb/drivers/usbback), and %w", domid, err)
			}
			return Controller{}, err
		}
	}
	kind := "vusb"
	if typ == policy.TypeQUSB {
		kind = "qusb"
	}
	var devid int
	var bp string
	// The devid is chosen inside the transaction, so that two concurrent
	// adds conflict and the second, retried, takes the next one; the
	// domain is looked for there too (see newDevID).
	err = h.XS.Update(ctx, func(ctx context.Context, tx *xenstore.Tx) error {
		if devid, err = newDevID(ctx, tx, domid); err != nil {
			return err
		}
		lp, fp := libxlPath(domid, devid), frontendPath(domid, devid)
		bp = backendPath(kind, domid, devid)
		if _, ok, err := readOpt(ctx, tx, lp); err != nil || ok {
			if err == nil {
				err = fmt.Errorf("controller %d of domain %d: %w", devid, domid, ErrDeviceExists)
			}
			return err
		}
		return addControllerNodes(ctx, tx, domid, devid, typ, spec, lp, fp, bp)
	})
	if err != nil {
		return Controller{}, err
	}
	if wait && typ == policy.TypePV {
		if err := h.waitState(ctx, bp+"/state", 2, true, h.initTimeout()); err != nil {
			return Controller{}, fmt.Errorf("controller %d of domain %d added, but the backend did not initialise (is usbback loaded, and the guest's frontend?): %w", devid, domid, err)
		}
	}
	return h.controller(ctx, h.XS, domid, devid, true)
}

// newDevID checks, in the transaction that adds a controller, that its
// domain is there, and picks the controller's devid, in one round trip.
//
// The domain is looked for in the transaction, as libxl does, because the
// writes would create its paths again: a domain destroyed before the
// commit makes the commit fail (every store fails a transaction that read
// a node removed meanwhile), and the retry finds it gone. Reading its home
// conflicts only with a change to that node itself, not with what its
// guest writes below it.
//
// The devid is libxl's choice: the last name in the directory, plus one.
// Where that one is taken, as from oxenstored, which lists "10" before
// "9", libxl fails; the largest plus one is taken instead.
func newDevID(ctx context.Context, tx *xenstore.Tx, domid uint32) (int, error) {
	got := tx.Gets(ctx, []xenstore.Get{{Path: homePath(domid)}, {Path: libxlDir(domid), Dir: true}})
	switch err := got[0].Err; {
	case notExist(err):
		return 0, fmt.Errorf("domain %d: %w", domid, ErrNoDomain)
	case err != nil:
		return 0, err
	}
	ids, err := got[1].Names, got[1].Err
	if notExist(err) {
		ids, err = nil, nil
	}
	if err != nil || len(ids) == 0 {
		return 0, err
	}
	last, ok := parseDevID(ids[len(ids)-1])
	if !ok {
		return 0, fmt.Errorf("%s/%s is not a devid: %w", libxlDir(domid), ids[len(ids)-1], ErrBadStore)
	}
	taken, most := map[int]bool{}, 0
	for _, s := range ids {
		if id, ok := parseDevID(s); ok {
			taken[id], most = true, max(most, id+1)
		}
	}
	next := last + 1
	if taken[next] {
		next = most
	}
	if next > maxDevID {
		return 0, fmt.Errorf("%s: no devid is left past %d: %w", libxlDir(domid), next-1, ErrBadStore)
	}
	return next, nil
}

// addControllerNodes writes the three subtrees in libxl__device_generic_add's
// order, with its permissions.
func addControllerNodes(ctx context.Context, tx *xenstore.Tx, domid uint32, devid int, typ string, spec policy.CtrlSpec, lp, fp, bp string) error {
	front := xenstore.Perms{{Access: xenstore.AccessNone, Domid: domid}, {Access: xenstore.AccessRead, Domid: 0}}
	back := xenstore.Perms{{Access: xenstore.AccessNone, Domid: 0}, {Access: xenstore.AccessRead, Domid: domid}}
	var err error
	do := func(f func() error) {
		if err == nil {
			err = f()
		}
	}
	w := func(p, v string) { do(func() error { return write(ctx, tx, p, v) }) }
	perm := func(p string, ps xenstore.Perms) { do(func() error { return tx.SetPerms(ctx, p, ps) }) }
	do(func() error { return rmOpt(ctx, tx, lp) })
	w(lp+"/frontend", fp)
	w(lp+"/backend", bp)
	do(func() error { return rmOpt(ctx, tx, fp) })
	do(func() error { return tx.Mkdir(ctx, fp) })
	perm(fp, front)
	w(fp+"/backend", bp)
	w(fp+"/backend-id", "0")
	perm(fp+"/backend-id", front)
	w(fp+"/state", "1")
	perm(fp+"/state", front)
	do(func() error { return rmOpt(ctx, tx, bp) })
	do(func() error { return tx.Mkdir(ctx, bp) })
	perm(bp, back)
	w(bp+"/frontend", fp)
	list := [][2]string{{"frontend-id", strconv.Itoa(int(domid))}, {"online", "1"}, {"state", "1"}, {"type", typ},
		{"usb-ver", strconv.Itoa(spec.Version)}, {"num-ports", strconv.Itoa(spec.Ports)}, {"port", ""}}
	for i := 1; i <= spec.Ports; i++ {
		list = append(list, [2]string{"port/" + strconv.Itoa(i), ""})
	}
	for _, kv := range list {
		w(bp+"/"+kv[0], kv[1])
	}
	for _, kv := range list {
		w(lp+"/"+kv[0], kv[1])
	}
	return err
}

// RemoveController detaches the controller's devices and removes it as
// `xl usbctrl-detach` does: online=0 and state=5, a wait for the backend's
// Closed, a forced second round without the frontend, then the removal of
// all three subtrees and their empty parents. After a timeout the nodes
// are removed anyway and ErrTimeout is returned, as xl does.
func (h *Host) RemoveController(ctx context.Context, domid uint32, devid int) error {
	c, err := h.controller(ctx, h.XS, domid, devid, true)
	if err != nil {
		return err
	}
	if c.Type == policy.TypeDeviceModel {
		return h.removeDMController(ctx, c)
	}
	for i, b := range c.Port {
		if b == "" {
			continue
		}
		// A port emptied meanwhile (its device left and was cleared) is
		// what this wanted anyway.
		if err := h.Detach(ctx, domid, devid, i+1); err != nil && !errors.Is(err, ErrPortEmpty) {
			return fmt.Errorf("controller %d of domain %d not removed: %w", devid, domid, err)
		}
	}
	var waitErr error
	for _, force := range []bool{false, true} {
		gone := false
		update := h.XS.Update
		if force {
			update = h.overFrontend(c.frontend)
		}
		err := update(ctx, func(ctx context.Context, tx *xenstore.Tx) error {
			gone = false
			if force {
				if err := pathCleanup(ctx, tx, c.frontend); err != nil {
					return err
				}
			}
			st, ok, err := readOpt(ctx, tx, c.backend+"/state")
			if err != nil {
				return err
			}
			if !ok {
				gone = true // the backend is already gone
				return nil
			}
			if err := write(ctx, tx, c.backend+"/online", "0"); err != nil {
				return err
			}
			if st != "6" {
				return write(ctx, tx, c.backend+"/state", "5")
			}
			return nil
		})
		if err != nil {
			return err
		}
		if gone {
			waitErr = nil
			break
		}
		waitErr = h.waitState(ctx, c.backend+"/state", 6, false, h.destroyTimeout())
		if waitErr == nil || !errors.Is(waitErr, ErrTimeout) {
			break
		}
	}
	err = h.overFrontend(c.frontend)(ctx, func(ctx context.Context, tx *xenstore.Tx) error {
		for _, p := range []string{c.frontend, c.libxl, c.backend} {
			if err := pathCleanup(ctx, tx, p); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return err
	}
	if waitErr != nil {
		return fmt.Errorf("controller %d of domain %d removed, but its backend never closed: %w", devid, domid, waitErr)
	}
	return nil
}

// overFrontend is Update for a transaction that removes the guest's
// frontend fp. The guest may write below fp at any time, and the C
// xenstored fails a commit that removed a node written meanwhile: a guest
// that writes without pause fails every try. Then fp is removed on its
// own, in one request no write can fail, and the transaction run again:
// the guest may not create fp again (its parent is dom0's), so it has
// nothing left to write there.
func (h *Host) overFrontend(fp string) func(context.Context, func(context.Context, *xenstore.Tx) error) error {
	return func(ctx context.Context, fn func(context.Context, *xenstore.Tx) error) error {
		err := h.XS.Update(ctx, fn)
		if !errors.Is(err, syscall.EAGAIN) {
			return err
		}
		h.warn("%s kept changing while the transaction removing it ran (its guest writing it, likely); removed on its own first", fp)
		if err := rmOpt(ctx, h.XS, fp); err != nil {
			return err
		}
		return h.XS.Update(ctx, fn)
	}
}
