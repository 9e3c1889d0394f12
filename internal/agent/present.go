package agent

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"syscall"
	"time"

	"github.com/usbhotplugd/usbhotplugd/internal/usbsysfs"
	"github.com/usbhotplugd/usbhotplugd/internal/xenstore"
)

// PresentRoot is where the agent records the devices that were plugged
// before it first started since dom0 booted (match.when = "present"). The
// store lives exactly as long as the dom0 boot, so the records do too;
// agent restarts read them instead of taking every device as present.
const PresentRoot = "/tool/usbhotplugd/present"

// startedPath marks that the agent has started once since dom0 booted.
const startedPath = "/tool/usbhotplugd/started"

func presentPath(busid string) string { return PresentRoot + "/" + nodeName(busid) }

// presentValue names one plug of a device: unplugged and plugged back,
// the device has another address, so the record no longer fits it.
func presentValue(d usbsysfs.Device) string { return fmt.Sprintf("%d %s", d.DevNum, d.ID()) }

// unreadPlug is the record of a device plugged at the first start that
// could not be read then: its plug is named by its first pass that reads
// it (namePlug), and it counts as present until then.
const unreadPlug = "unread"

// loadPresent learns which devices count as present: at the first start
// since dom0 booted, every device plugged now (recorded with the marker in
// one transaction, so that a crash leaves either both or neither); at a
// later start, the records.
func (a *Agent) loadPresent(ctx context.Context) error {
	_, err := a.h.XS.Read(ctx, startedPath)
	if err != nil && !errors.Is(err, syscall.ENOENT) {
		return fmt.Errorf("agent: reading %s: %w", startedPath, err)
	}
	var m map[string]string
	if err == nil {
		m, err = a.readPresent(ctx)
	} else {
		m, err = a.recordPresent(ctx)
	}
	if err != nil {
		return err
	}
	a.mu.Lock()
	a.present = m
	a.mu.Unlock()
	return nil
}

// readPresent reads the records of the devices present at the first
// start since dom0 booted.
func (a *Agent) readPresent(ctx context.Context) (map[string]string, error) {
	xs := a.h.XS
	names, err := xs.Directory(ctx, PresentRoot)
	if err != nil && !errors.Is(err, syscall.ENOENT) {
		return nil, fmt.Errorf("agent: reading %s: %w", PresentRoot, err)
	}
	paths := make([]string, len(names))
	for i, n := range names {
		paths[i] = PresentRoot + "/" + n
	}
	vals, errs := xs.ReadMany(ctx, paths)
	m := map[string]string{}
	for i, n := range names {
		b := busidOf(n)
		if errs[i] != nil || usbsysfs.ValidBusID(b) != nil {
			continue // dom0-only, but never trusted blindly
		}
		m[b] = string(vals[i])
	}
	return m, nil
}

// recordPresent is the first start since dom0 booted: the devices plugged
// now are recorded as present, and then the marker that says so.
func (a *Agent) recordPresent(ctx context.Context) (map[string]string, error) {
	devs, err := a.h.Sys.Devices()
	unread, err := usbsysfs.Partial(err)
	if err != nil {
		return nil, fmt.Errorf("agent: first scan: %w", err)
	}
	m := map[string]string{}
	writes := make([][2]string, 0, len(devs)+len(unread)+1)
	for _, d := range devs {
		if strings.HasPrefix(d.BusID, "usb") {
			continue
		}
		m[d.BusID] = presentValue(d)
		writes = append(writes, [2]string{presentPath(d.BusID), m[d.BusID]})
	}
	for _, u := range unread {
		if !strings.HasPrefix(u.BusID, "usb") {
			m[u.BusID] = unreadPlug
			writes = append(writes, [2]string{presentPath(u.BusID), unreadPlug})
		}
	}
	writes = append(writes, [2]string{startedPath, a.cfg.Now().UTC().Format(time.RFC3339)})
	if !a.cfg.DryRun {
		err := a.h.XS.Update(ctx, func(ctx context.Context, tx *xenstore.Tx) error {
			// Records of a first start that died before its marker.
			if err := tx.Rm(ctx, PresentRoot); err != nil && !errors.Is(err, syscall.ENOENT) {
				return err
			}
			return tx.WriteMany(ctx, writes)
		})
		if err != nil {
			return nil, fmt.Errorf("agent: recording the devices present at the first start: %w", err)
		}
	}
	a.cfg.Log.Info().Int("devices", len(m)).Msg("first start since dom0 booted: the devices plugged now count as present (match.when)")
	return m, nil
}

// isPresentLocked says d counts as present; a.mu is held.
func (a *Agent) isPresentLocked(d usbsysfs.Device) bool {
	v, ok := a.present[d.BusID]
	return ok && (v == presentValue(d) || v == unreadPlug)
}

// prunePresent drops the records of devices that left or were plugged
// again (another address): they are no longer the devices present then.
// now is every device plugged now.
func (a *Agent) prunePresent(ctx context.Context, now map[string]usbsysfs.Device, unread []usbsysfs.DeviceError) {
	a.mu.Lock()
	var stale []string
	for b, v := range a.present {
		d, ok := now[b]
		switch {
		case !ok && usbsysfs.UnreadOf(unread, b) != nil:
			// Not read, so not known to have left.
		case !ok:
			stale = append(stale, b)
		case v == unreadPlug:
			// Its next pass names its plug (namePlug).
		case presentValue(d) != v:
			stale = append(stale, b)
		}
	}
	a.mu.Unlock()
	for _, b := range stale {
		a.dropPresent(ctx, b)
	}
}

// namePlug gives the present record of a device that could not be read
// at the first start the plug its first pass that read it found.
func (a *Agent) namePlug(ctx context.Context, o observation) {
	a.mu.Lock()
	v, ok := a.present[o.busid]
	if ok && v == unreadPlug {
		a.present[o.busid] = presentValue(o.dev)
	}
	a.mu.Unlock()
	if !ok || v != unreadPlug || a.cfg.DryRun {
		return
	}
	if err := a.h.XS.Write(ctx, presentPath(o.busid), []byte(presentValue(o.dev))); err != nil {
		a.warn.Warn().Err(err).Str("busid", o.busid).Msg("naming the plug of a device present at the first start failed")
	}
}

// dropPresent forgets that busid was present: it left, or it was plugged
// again.
func (a *Agent) dropPresent(ctx context.Context, busid string) {
	a.mu.Lock()
	_, ok := a.present[busid]
	delete(a.present, busid)
	a.mu.Unlock()
	if !ok || a.cfg.DryRun {
		return
	}
	if err := rmOpt(ctx, a, presentPath(busid)); err != nil {
		// A record left behind names an old address: it never fits again.
		a.warn.Warn().Err(err).Str("busid", busid).Msg("removing the present record failed")
	}
}
