package mounts_test

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/usbhotplugd/usbhotplugd/internal/mounts"
)

// A mountinfo as a Debian dom0 shows it: root on a disk, a btrfs volume
// (anonymous device), a mount point with a space, optional tags.
const sample = `22 28 0:21 / /sys rw,nosuid,nodev,noexec,relatime shared:7 - sysfs sysfs rw
28 1 8:1 / / rw,relatime shared:1 - ext4 /dev/sda1 rw,errors=remount-ro
40 28 0:35 /@data /srv/data rw,relatime shared:20 - btrfs /dev/sdb2 rw,space_cache=v2,subvolid=256,subvol=/@data
41 28 8:49 / /media/usb\040stick rw,relatime - vfat /dev/sdd1 rw,fmask=0022
42 28 0:40 / /proc/xen rw,relatime - xenfs xenfs rw
`

func TestParse(t *testing.T) {
	tab, err := mounts.Parse(strings.NewReader(sample))
	if err != nil {
		t.Fatal(err)
	}
	if len(tab) != 5 {
		t.Fatalf("%d mounts", len(tab))
	}
	for _, c := range []struct{ dev, name, want string }{
		{"8:1", "sda1", "/"},
		{"8:18", "sdb2", "/srv/data"}, // btrfs: by its source
		{"8:49", "sdd1", "/media/usb stick"},
		{"8:64", "sde", ""},
		{"8:65", "sde1", ""},
	} {
		if got := tab.Using(c.dev, c.name); got != c.want {
			t.Errorf("Using(%s, %s) = %q, want %q", c.dev, c.name, got, c.want)
		}
	}
}

func TestParseErrors(t *testing.T) {
	for _, bad := range []string{
		"28 1 8:1 / / rw shared:1 ext4 /dev/sda1 rw\n", // no separator
		"28 1 8 / / rw - ext4 /dev/sda1 rw\n",
		"28 1 8:x / / rw - ext4 /dev/sda1 rw\n",
		"28 1 8:1 / / rw - ext4\n",
	} {
		_, err := mounts.Parse(strings.NewReader(sample + bad))
		if !errors.Is(err, mounts.ErrFormat) || !strings.Contains(err.Error(), "line 6") {
			t.Errorf("%q: %v", bad, err)
		}
	}
	p := filepath.Join(t.TempDir(), "mountinfo")
	if err := os.WriteFile(p, []byte("junk\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := mounts.Read(p); err == nil || !strings.Contains(err.Error(), p) {
		t.Errorf("Read names the file: %v", err)
	}
	if _, err := mounts.Read(filepath.Join(t.TempDir(), "none")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("missing file: %v", err)
	}
}

// The real table of this machine parses.
func TestParseThisMachine(t *testing.T) {
	if _, err := mounts.Read(mounts.Default); err != nil {
		t.Fatal(err)
	}
}

func FuzzParse(f *testing.F) {
	f.Add([]byte(sample))
	f.Add([]byte("1 1 1:1 a b c - d e f\n"))
	f.Add([]byte(`1 1 1:1 / /a\134\040\0 c - d /dev/x\040 f` + "\n"))
	f.Fuzz(func(t *testing.T, b []byte) {
		tab, err := mounts.Parse(strings.NewReader(string(b)))
		if err != nil {
			if !errors.Is(err, mounts.ErrFormat) && !strings.Contains(err.Error(), "reading") {
				t.Fatalf("error %v is not ErrFormat", err)
			}
			return
		}
		for _, m := range tab {
			if m.Dev == "" {
				t.Fatalf("a mount without a device: %+v", m)
			}
		}
	})
}
