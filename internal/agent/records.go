package agent

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"syscall"

	"github.com/usbhotplugd/usbhotplugd/internal/usbsysfs"
	"github.com/usbhotplugd/usbhotplugd/internal/xenstore"
	"github.com/usbhotplugd/usbhotplugd/policy"
)

// RecordRoot is the dom0-only xenstore path where the agent records what it
// attached, so that a restart adopts its own attachments and never touches
// an admin's.
const RecordRoot = "/tool/usbhotplugd/owned"

// An Owned record: the agent attached this device there, for this rule.
// It outlives the domain (it is where the device goes back to when the
// domain returns) and goes when the device leaves or the policy changes.
type Owned struct {
	Domain     string `json:"domain"`
	Domid      uint32 `json:"domid"`
	Controller int    `json:"controller"`
	Port       int    `json:"port"`
	Rule       string `json:"rule"`
	ID         string `json:"id"`
	Serial     string `json:"serial,omitempty"`
	// Drivers are the dom0 drivers the attach took its interfaces from
	// (by interface), a copy of libxl's driver records: another
	// toolstack's detach of the port the device left, finished late,
	// removes those records whatever device they are now of, and the
	// agent writes them again from here.
	Drivers map[string]string `json:"drivers,omitempty"`
}

// of says whether the record is of d: a busid names a physical port, and
// the device plugged there may be another one than the agent attached
// (swapped while the agent was down). Twins cannot be told apart, here as
// anywhere.
func (o *Owned) of(d usbsysfs.Device) bool { return o.ID == d.ID() && o.Serial == d.Serial }

// ofTwin is of for a device as the policy has it.
func (o *Owned) ofTwin(t *policy.Device) bool {
	return o.ID == fmt.Sprintf("%04x:%04x", t.Vendor, t.Product) && o.Serial == t.Serial
}

func ownedPath(busid string) string { return RecordRoot + "/" + nodeName(busid) }

// nodeName is busid as a node name under the agent's record roots (a
// xenstore name takes no "."); busidOf undoes it.
func nodeName(busid string) string { return strings.NewReplacer(".", "_", ":", "@").Replace(busid) }

func busidOf(name string) string { return strings.ReplaceAll(name, "_", ".") }

func readOwned(ctx context.Context, xs *xenstore.Conn, busid string) (*Owned, error) {
	b, err := xs.Read(ctx, ownedPath(busid))
	return parseOwned(busid, b, err)
}

// parseOwned makes an ownership record of what reading it gave.
func parseOwned(busid string, b []byte, err error) (*Owned, error) {
	if errors.Is(err, syscall.ENOENT) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	var o Owned
	if err := json.Unmarshal(b, &o); err != nil || o.Domain == "" || o.Port < 1 || o.Controller < 0 {
		// Dom0-only, so not forged; but never trusted blindly either.
		return nil, fmt.Errorf("ownership record of %s is unreadable (%q): %w", busid, b, errBadRecord)
	}
	return &o, nil
}

var errBadRecord = errors.New("bad ownership record")

func ownedValue(o Owned) string {
	b, _ := json.Marshal(o)
	return string(b)
}

// ListOwned reads every ownership record.
func ListOwned(ctx context.Context, xs *xenstore.Conn) (map[string]Owned, error) {
	names, err := xs.Directory(ctx, RecordRoot)
	if errors.Is(err, syscall.ENOENT) {
		return map[string]Owned{}, nil
	}
	if err != nil {
		return nil, err
	}
	out := map[string]Owned{}
	for _, n := range names {
		b := busidOf(n)
		o, err := readOwned(ctx, xs, b)
		if err != nil || o == nil {
			continue
		}
		out[b] = *o
	}
	return out, nil
}
