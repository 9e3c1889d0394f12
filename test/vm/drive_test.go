package vmtest

import (
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// The drives' file system is FAT16 as the kernel counts clusters, and its
// FATs have room for every cluster.
func TestDriveLayout(t *testing.T) {
	if n := fatClusters(); n < 4085 || n > 65524 {
		t.Errorf("%d clusters: not FAT16 (4085 to 65524)", n)
	}
	if need := (fatClusters() + 2) * 2; need > fatSectors*sector {
		t.Errorf("a FAT of %d sectors holds %d bytes, %d are needed", fatSectors, fatSectors*sector, need)
	}
	if partStart+partSectors != driveSize/sector {
		t.Errorf("the partition ends at sector %d, the drive at %d", partStart+partSectors, driveSize/sector)
	}
}

// blkid, which reads disks as the kernel does, finds the partition table
// and the file system.
func TestDriveProbe(t *testing.T) {
	blkid, err := exec.LookPath("blkid")
	if err != nil {
		t.Skip("no blkid (util-linux)")
	}
	img := filepath.Join(t.TempDir(), "d.img")
	if err := formatDrive(img); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		args []string
		want []string
	}{
		{[]string{"-p", "-o", "export", img}, []string{"PTTYPE=dos"}},
		{[]string{"-p", "-o", "export", "-O", "1048576", img}, []string{"TYPE=vfat", "VERSION=FAT16", "LABEL=USBHOTPLUGD"}},
	} {
		out, err := exec.Command(blkid, c.args...).CombinedOutput()
		if err != nil {
			t.Fatalf("blkid %s: %v: %s", strings.Join(c.args, " "), err, out)
		}
		for _, w := range c.want {
			if !strings.Contains(string(out), w+"\n") {
				t.Errorf("blkid %s: no %s in:\n%s", strings.Join(c.args, " "), w, out)
			}
		}
	}
}
