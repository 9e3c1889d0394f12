package policygen

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"unicode"
	"unicode/utf8"

	"github.com/usbhotplugd/usbhotplugd/internal/inventory"
	"github.com/usbhotplugd/usbhotplugd/internal/usbsysfs"
	"github.com/usbhotplugd/usbhotplugd/policy"
)

// AssignPrefix starts the name of every drop-in `assign` writes: one file
// per device, named after its stable identity.
const AssignPrefix = "assign-"

// ErrNotDecided: the drop-in would be valid but an earlier rule decides
// for the device, so it was not kept.
var ErrNotDecided = errors.New("the drop-in would never decide")

// An Assignment is a drop-in that sends one device to a domain.
type Assignment struct {
	File   string // the drop-in's path
	Device usbsysfs.Device
	Domain string
	ID     Identity
	// Note, when not "", says that an earlier rule already sends the
	// device to the domain: the drop-in stands behind it.
	Note string
	// Replaced are the drop-ins that named the device before (by another
	// identity, or to another domain), removed or rewritten for this one.
	Replaced []string
}

// AssignDropIn writes the drop-in that sends d to domain, named by its
// most stable identity among devs, beside the policy at polPath. The drop-
// ins that named d before (by another identity, or to another domain) are
// replaced. The policy with it must load and must attach d to domain by
// the new rule; else everything is put back as it was and the error says
// which rule decides instead.
func AssignDropIn(ctx context.Context, polPath string, d usbsysfs.Device, devs []usbsysfs.Device, domain, prefer string) (Assignment, error) {
	if d.IsHub() || d.IsRootHub() {
		return Assignment{}, fmt.Errorf("%s (%s) is a hub: hubs are never passed through", d.BusID, d.ID())
	}
	if err := CheckDomain(domain); err != nil {
		return Assignment{}, err
	}
	id, err := Choose(d, devs, prefer)
	if err != nil {
		return Assignment{}, err
	}
	dir := policy.DropInDir(polPath)
	name := policy.DropInFileName(AssignPrefix+d.ID(), id.Key, id.Value)
	data, err := policy.FormatDropIn(
		fmt.Sprintf("Written by usbhotplugd assign: %s (%s, %s) goes to %s.\n%s.\nRemove it with usbhotplugd unassign %s.", d.BusID, d.ID(), deviceName(d), domain, id.Why, d.BusID),
		nil, policy.RuleSpec{Name: ruleName(d, id), Action: policy.Attach, Domain: domain, Match: id.Match(d)})
	if err != nil {
		return Assignment{}, err
	}
	old, err := DropInsFor(dir, d, devs)
	if err != nil {
		return Assignment{}, err
	}
	saved, err := readAll(append(old, filepath.Join(dir, name)))
	if err != nil {
		return Assignment{}, err
	}
	_, statErr := os.Stat(dir)
	undo := func(err error) error {
		err = restore(dir, saved, err)
		if statErr != nil {
			os.Remove(dir) // made for the drop-in, and empty again
		}
		return err
	}
	for _, f := range old {
		if err := policy.RemoveDropIn(dir, filepath.Base(f)); err != nil {
			return Assignment{}, undo(err)
		}
	}
	if err := policy.WriteDropIn(dir, name, data); err != nil {
		return Assignment{}, undo(err)
	}
	a := Assignment{File: filepath.Join(dir, name), Device: d, Domain: domain, ID: id}
	a.Replaced = old
	if a.Note, err = decides(ctx, polPath, a, devs); err != nil {
		os.Remove(a.File)
		return Assignment{}, undo(err)
	}
	return a, nil
}

// ruleName names the rule after the device and its identity, as a name
// policy takes: a serial's bytes that do not print (or are not UTF-8)
// become '?', and it is cut to MaxRuleName characters, not bytes.
func ruleName(d usbsysfs.Device, id Identity) string {
	n := []rune(strings.Map(func(r rune) rune {
		if r == utf8.RuneError || !unicode.IsPrint(r) {
			return '?'
		}
		return r
	}, fmt.Sprintf("assign %s %s %s", d.ID(), id.Key, id.Value)))
	if len(n) > policy.MaxRuleName {
		n = append(n[:policy.MaxRuleName-3], '.', '.', '.')
	}
	return string(n)
}

// decides loads the whole policy and checks that it attaches the device
// to a's domain: by a's rule, or by an earlier one (said in the note).
func decides(ctx context.Context, polPath string, a Assignment, devs []usbsysfs.Device) (string, error) {
	p, err := policy.Load(ctx, polPath, policy.Options{})
	if err != nil {
		return "", err
	}
	inv := inventory.FromScan(devs)
	me := find(inv, a.Device.BusID)
	dec := p.Match(me, inv)
	switch {
	case dec.Action == policy.Attach && dec.Target.Domain == a.Domain && dec.Rule != nil && dec.Rule.File == a.File:
		return "", nil
	case dec.Action == policy.Attach && dec.Target.Domain == a.Domain && dec.Rule != nil:
		return fmt.Sprintf("%s (%s:%d) sends it to %s already, before the drop-in", dec.Rule, dec.Rule.File, dec.Rule.Line, a.Domain), nil
	case dec.Rule != nil:
		return "", fmt.Errorf("%w: %s (%s:%d) decides for %s first: %s (drop-ins come after the main file's rules: narrow or remove that rule)",
			ErrNotDecided, dec.Rule, dec.Rule.File, dec.Rule.Line, a.Device.BusID, dec.Reason)
	}
	return "", fmt.Errorf("%w: %s", ErrNotDecided, dec.Reason)
}

func find(inv []policy.Device, busid string) *policy.Device {
	for i := range inv {
		if inv[i].BusID == busid {
			return &inv[i]
		}
	}
	return &policy.Device{BusID: busid}
}

// DropInsFor lists the assign drop-ins in dir whose rule attaches d.
func DropInsFor(dir string, d usbsysfs.Device, devs []usbsysfs.Device) ([]string, error) {
	files, err := filepath.Glob(filepath.Join(dir, AssignPrefix+"*.toml"))
	if err != nil {
		return nil, err
	}
	inv := inventory.FromScan(devs)
	me := find(inv, d.BusID)
	var out []string
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			return nil, err
		}
		p, err := policy.Parse(f, b, nil)
		if err != nil {
			continue // not one of ours any more; the policy check reports it
		}
		if dec := p.Match(me, inv); dec.Action == policy.Attach && dec.Rule != nil {
			out = append(out, f)
		}
	}
	return out, nil
}

// readAll keeps the files that exist, to put them back on failure.
func readAll(files []string) (map[string][]byte, error) {
	saved := map[string][]byte{}
	for _, f := range files {
		b, err := os.ReadFile(f)
		if errors.Is(err, os.ErrNotExist) {
			continue
		}
		if err != nil {
			return nil, err
		}
		saved[f] = b
	}
	return saved, nil
}

// restore puts the saved drop-ins back, every one it can, and returns
// cause with each that could not be.
func restore(dir string, saved map[string][]byte, cause error) error {
	for f, b := range saved {
		if err := policy.WriteDropIn(dir, filepath.Base(f), b); err != nil {
			cause = fmt.Errorf("%w; and putting %s back failed: %w", cause, f, err)
		}
	}
	return cause
}

// Unassign removes the assign drop-ins that attach d (present among
// devs); it returns the files removed.
func Unassign(polPath string, d usbsysfs.Device, devs []usbsysfs.Device) ([]string, error) {
	dir := policy.DropInDir(polPath)
	files, err := DropInsFor(dir, d, devs)
	if err != nil {
		return nil, err
	}
	for _, f := range files {
		if err := policy.RemoveDropIn(dir, filepath.Base(f)); err != nil {
			return nil, err
		}
	}
	return files, nil
}

// UnassignFile removes an assign drop-in by its file name, for a device
// that is not plugged in.
func UnassignFile(polPath, name string) (string, error) {
	dir := policy.DropInDir(polPath)
	if name != filepath.Base(name) || !strings.HasPrefix(name, AssignPrefix) || !strings.HasSuffix(name, ".toml") {
		return "", fmt.Errorf("%q is neither a busid of a device present nor an assign drop-in in %s (%s*.toml)", name, dir, AssignPrefix)
	}
	p := filepath.Join(dir, name)
	if _, err := os.Lstat(p); err != nil {
		return "", err
	}
	return p, policy.RemoveDropIn(dir, name)
}
