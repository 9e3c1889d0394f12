package sim

import (
	"context"
	"errors"
	"fmt"
	"io/fs"

	"github.com/usbhotplugd/usbhotplugd/internal/xenstore"
)

// The names xl gives a guest while it migrates: the copy being received
// is NAME--incoming until it runs, the copy that was sent is
// NAME--migratedaway until it is destroyed.
const (
	IncomingSuffix     = "--incoming"
	MigratedAwaySuffix = "--migratedaway"
)

// Rename renames a running guest as libxl_domain_rename does: both of its
// name nodes in one transaction, so a reader sees the old name or the new.
func Rename(ctx context.Context, xs *xenstore.Conn, d Domain, name string) error {
	err := xs.Update(ctx, func(ctx context.Context, tx *xenstore.Tx) error {
		if err := tx.Write(ctx, fmt.Sprintf("/local/domain/%d/name", d.ID), []byte(name)); err != nil {
			return err
		}
		return tx.Write(ctx, "/vm/"+d.UUID+"/name", []byte(name))
	})
	if err != nil {
		return fmt.Errorf("sim: renaming domain %d to %s: %w", d.ID, name, err)
	}
	return nil
}

// ForceDestroy is what libxl's domain destroy does, as `xl destroy` or the
// sending host after a migration: every device of the domain is removed
// by force (backend told to close, nodes removed, nothing given
// back to dom0's drivers: libxl's generic removal knows nothing of USB
// interfaces), then the domain's nodes go and it is released.
func ForceDestroy(ctx context.Context, xs *xenstore.Conn, d Domain) error {
	be := fmt.Sprintf("/local/domain/0/backend/vusb/%d", d.ID)
	devids, err := xs.Directory(ctx, be)
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("sim: destroying domain %d: %w", d.ID, err)
	}
	for _, id := range devids {
		err := xs.Update(ctx, func(ctx context.Context, tx *xenstore.Tx) error {
			if err := tx.Write(ctx, be+"/"+id+"/online", []byte("0")); err != nil {
				return err
			}
			return tx.Write(ctx, be+"/"+id+"/state", []byte("5"))
		})
		if err != nil {
			return fmt.Errorf("sim: destroying domain %d: closing vusb %s: %w", d.ID, id, err)
		}
	}
	for _, p := range []string{fmt.Sprintf("/local/domain/%d", d.ID), fmt.Sprintf("/libxl/%d", d.ID), "/vm/" + d.UUID, be} {
		if err := xs.Rm(ctx, p); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return fmt.Errorf("sim: destroying domain %d: %w", d.ID, err)
		}
	}
	if err := xs.Release(ctx, d.ID); err != nil {
		return fmt.Errorf("sim: releasing domain %d: %w", d.ID, err)
	}
	return nil
}
