package usbsysfs

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
)

// ErrBadAttr: a sysfs attribute does not read as the kernel writes it.
var ErrBadAttr = errors.New("malformed sysfs attribute")

// maxAttr bounds the read of one attribute: the kernel's largest (a
// device's descriptors, all its configurations) is far below it, and an
// endless file in a fixture tree (a character device in an attribute's
// place) is refused instead of read until memory runs out.
const maxAttr = 1 << 20

// errTooLarge is an ErrBadAttr; a type, not fmt.Errorf, so that no
// command pays an allocation for it at start-up.
var errTooLarge error = tooLargeError{}

type tooLargeError struct{}

func (tooLargeError) Error() string { return ErrBadAttr.Error() + ": larger than 1 MiB" }
func (tooLargeError) Unwrap() error { return ErrBadAttr }

// A BlockDev is a disk that a USB storage interface provides, or a
// partition of one.
type BlockDev struct {
	Name    string   `json:"name"`              // "sde", "sde1"
	Dev     string   `json:"dev"`               // "8:64", as the dev attribute says
	Holders []string `json:"holders,omitempty"` // devices built on it: dm-0, md0
	Whole   bool     `json:"-"`                 // a whole disk, not a partition
}

// BlockDevs lists the block devices of a USB device's storage interfaces,
// disks and partitions, as the kernel lays them out under each interface:
// host*/target*/H:C:T:L/block/DISK[/PART]. A device with no storage, or
// whose disks are not made yet (they come about a second after the
// interface binds), has none.
func (f *FS) BlockDevs(busid string) ([]BlockDev, error) {
	if err := ValidBusID(busid); err != nil {
		return nil, err
	}
	names, err := f.names()
	if err != nil {
		return nil, err
	}
	var out []BlockDev
	for _, n := range names {
		if !strings.HasPrefix(n, busid+":") || ValidInterface(n) != nil {
			continue
		}
		// Each level is matched by name; a missing level (unplugged
		// meanwhile, or not probed yet) means no disk below it.
		for _, host := range subdirs(f.devPath(n), "host") {
			for _, target := range subdirs(host, "target") {
				for _, lun := range subdirs(target, "") {
					if strings.Count(filepath.Base(lun), ":") != 3 {
						continue
					}
					for _, disk := range subdirs(filepath.Join(lun, "block"), "") {
						d, err := readBlock(disk)
						if err != nil {
							return nil, err
						}
						if d.Name == "" {
							continue
						}
						d.Whole = true
						out = append(out, d)
						for _, part := range subdirs(disk, d.Name) {
							p, err := readBlock(part)
							if err != nil {
								return nil, err
							}
							if p.Name != "" {
								out = append(out, p)
							}
						}
					}
				}
			}
		}
	}
	return out, nil
}

// subdirs lists the directories in dir whose names start with prefix.
func subdirs(dir, prefix string) []string {
	des, err := os.ReadDir(dir)
	if err != nil {
		return nil
	}
	var out []string
	for _, de := range des {
		if de.IsDir() && strings.HasPrefix(de.Name(), prefix) {
			out = append(out, filepath.Join(dir, de.Name()))
		}
	}
	return out
}

// readBlock reads a block device's directory; Name is "" when dir is not
// one (no dev attribute) or went away.
func readBlock(dir string) (BlockDev, error) {
	b, err := os.ReadFile(filepath.Join(dir, "dev"))
	if errors.Is(err, fs.ErrNotExist) {
		return BlockDev{}, nil
	}
	if err != nil {
		return BlockDev{}, fmt.Errorf("usbsysfs: %w", err)
	}
	dev := strings.TrimSpace(string(b))
	var maj, min uint32
	if n, err := fmt.Sscanf(dev, "%d:%d", &maj, &min); n != 2 || err != nil || fmt.Sprintf("%d:%d", maj, min) != dev {
		return BlockDev{}, fmt.Errorf("usbsysfs: %s/dev is %q, not MAJOR:MINOR: %w", dir, dev, ErrBadAttr)
	}
	d := BlockDev{Name: filepath.Base(dir), Dev: dev}
	if des, err := os.ReadDir(filepath.Join(dir, "holders")); err == nil {
		for _, de := range des {
			d.Holders = append(d.Holders, de.Name())
		}
	}
	return d, nil
}
