package sim

import (
	"context"
	"fmt"

	"github.com/usbhotplugd/usbhotplugd/internal/xenstore"
)

// Store is what the simulator needs of a xenstore connection.
type Store interface {
	Write(ctx context.Context, path string, value []byte) error
	SetPerms(ctx context.Context, path string, perms xenstore.Perms) error
}

// A Domain describes a guest as `xl create` would make it.
type Domain struct {
	ID   uint32
	Name string
	UUID string
	Type string // "pv", "pvh" or "hvm"
}

type seeder struct {
	ctx context.Context
	s   Store
	err error
}

func (sd *seeder) w(path, value string) {
	if sd.err == nil {
		sd.err = sd.s.Write(sd.ctx, path, []byte(value))
	}
}

func (sd *seeder) ch(path string, perms ...xenstore.Perm) {
	if sd.err == nil {
		sd.err = sd.s.SetPerms(sd.ctx, path, perms)
	}
}

var (
	n0 = xenstore.Perm{Access: xenstore.AccessNone, Domid: 0}
)

func none(d uint32) xenstore.Perm { return xenstore.Perm{Access: xenstore.AccessNone, Domid: d} }
func read(d uint32) xenstore.Perm { return xenstore.Perm{Access: xenstore.AccessRead, Domid: d} }

// SeedDom0 writes what xen-init-dom0 leaves: dom0's id and name and the
// default pool.
func SeedDom0(ctx context.Context, s Store) error {
	sd := &seeder{ctx: ctx, s: s}
	sd.w("/local/domain/0/domid", "0")
	sd.w("/local/domain/0/name", "Domain-0")
	sd.w("/local/pool/0/name", "Pool-0")
	return sd.err
}

// SeedDomain writes the nodes, in libxl's order and with its permissions,
// that `xl create` of a guest leaves in xenstore (libxl__domain_make and
// libxl__build_post).
func SeedDomain(ctx context.Context, s Store, d Domain) error {
	if d.Type == "" {
		d.Type = "pv"
	}
	sd := &seeder{ctx: ctx, s: s}
	D := fmt.Sprintf("/local/domain/%d", d.ID)
	V := "/vm/" + d.UUID
	L := fmt.Sprintf("/libxl/%d", d.ID)
	sd.w(D, "")
	sd.ch(D, n0, read(d.ID))
	sd.w(V, "")
	sd.ch(V, n0, read(d.ID))
	sd.w(L, "")
	sd.ch(L, n0)
	sd.w(L+"/device", "")
	sd.ch(L+"/device", n0)
	sd.w(D+"/vm", V)
	sd.w(D+"/name", d.Name)
	for _, n := range []string{"cpu", "memory", "device"} {
		sd.w(D+"/"+n, "")
		sd.ch(D+"/"+n, n0, read(d.ID))
	}
	sd.w(D+"/device/suspend/event-channel", "")
	sd.ch(D+"/device/suspend/event-channel", none(d.ID))
	sd.w(D+"/control", "")
	sd.ch(D+"/control", n0, read(d.ID))
	for _, n := range []string{"shutdown", "feature-poweroff", "feature-reboot", "feature-suspend", "sysrq"} {
		sd.w(D+"/control/"+n, "")
		sd.ch(D+"/control/"+n, none(d.ID))
	}
	for _, n := range []string{"data", "drivers", "feature", "attr", "error"} {
		sd.w(D+"/"+n, "")
		sd.ch(D+"/"+n, none(d.ID))
	}
	sd.w(V+"/uuid", d.UUID)
	sd.w(V+"/name", d.Name)
	sd.w(D+"/control/platform-feature-multiprocessor-suspend", "1")
	sd.w(D+"/control/platform-feature-xs_reset_watches", "1")
	sd.w(L+"/type", d.Type)
	sd.w(L+"/dm-version", "qemu_xen")
	sd.w(D+"/memory/static-max", "524288")
	sd.w(D+"/memory/target", "524288")
	sd.w(D+"/memory/videoram", "0")
	sd.w(D+"/domid", fmt.Sprint(d.ID))
	sd.w(D+"/store/port", "1")
	sd.w(D+"/store/ring-ref", "1044476")
	sd.w(D+"/cpu/0/availability", "online")
	sd.w(V+"/image/ostype", "linux")
	sd.w(V+"/image/kernel", "/boot/vmlinuz-"+d.Name)
	sd.w(V+"/image/ramdisk", "/boot/initrd-"+d.Name)
	sd.w(V+"/image/cmdline", "root=/dev/xvda1 ro quiet")
	sd.w(V+"/start_time", "1700000000.00")
	if sd.err != nil {
		return fmt.Errorf("seeding domain %d (%s): %w", d.ID, d.Name, sd.err)
	}
	return nil
}

// KioskDomain is the guest of the captures in shared/golden/xl-4.17.
var KioskDomain = Domain{ID: 1, Name: "kiosk", UUID: "5e1a7c2e-3b9d-4f0a-9c1e-2d6f8a4b7c10", Type: "pv"}
