package vmtest

import (
	"encoding/binary"
	"fmt"
	"os"
)

// The drives' layout: an MBR partition table with one FAT16 partition
// from 1 MiB to the end, as a stick comes formatted, so that the guest
// can mount it (the step `mount`) with the vfat module and nothing made
// on the host but by this code.
const (
	driveSize    = 16 << 20
	sector       = 512
	partStart    = 2048 // sectors: 1 MiB, where partitioning tools start
	partSectors  = driveSize/sector - partStart
	fatReserved  = 4 // sectors before the first FAT, the boot sector first
	fatCopies    = 2 // FATs
	fatRootEnts  = 512
	fatSecPerClu = 4  // 2 KiB clusters
	fatSectors   = 30 // of each FAT: 2 bytes for each cluster and the 2 reserved entries
)

// formatDrive writes a drive image of driveSize bytes at path, sparse but
// for its partition table and its file system's boot sector, FATs and
// root directory, which holds only the volume label.
func formatDrive(path string) error {
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	err = f.Truncate(driveSize)
	for _, w := range driveBlocks() {
		if err == nil {
			_, err = f.WriteAt(w.data, w.off)
		}
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("drive image %s: %w", path, err)
	}
	return nil
}

type driveBlock struct {
	off  int64
	data []byte
}

// driveBlocks are the non-zero parts of a drive image.
func driveBlocks() []driveBlock {
	le16, le32 := binary.LittleEndian.PutUint16, binary.LittleEndian.PutUint32
	mbr := make([]byte, sector)
	p := mbr[0x1be:]
	p[0] = 0x00                            // not bootable
	copy(p[1:4], []byte{0xfe, 0xff, 0xff}) // CHS: beyond reach, LBA counts
	p[4] = 0x0e                            // FAT16, LBA
	copy(p[5:8], []byte{0xfe, 0xff, 0xff})
	le32(p[8:], partStart)
	le32(p[12:], partSectors)
	mbr[510], mbr[511] = 0x55, 0xaa

	// The BIOS parameter block of a FAT16 file system (Microsoft's FAT
	// specification, "BPB"): with these sizes it has 7656 clusters, in
	// the FAT16 range (4085 to 65524) by which the kernel tells the type.
	bs := make([]byte, sector)
	copy(bs, []byte{0xeb, 0x3c, 0x90})
	copy(bs[3:11], "USBHOTPL")
	le16(bs[11:], sector)
	bs[13] = fatSecPerClu
	le16(bs[14:], fatReserved)
	bs[16] = fatCopies
	le16(bs[17:], fatRootEnts)
	le16(bs[19:], partSectors) // fits in 16 bits: under 32 MiB
	bs[21] = 0xf8              // media: fixed disk
	le16(bs[22:], fatSectors)
	le16(bs[24:], 32) // sectors a track, heads: geometry no one uses now
	le16(bs[26:], 64)
	le32(bs[28:], partStart) // hidden sectors: those before the partition
	bs[36] = 0x80            // drive number
	bs[38] = 0x29            // the extended boot signature: ID, label, type follow
	le32(bs[39:], 0x55b0da7a)
	copy(bs[43:54], "USBHOTPLUGD")
	copy(bs[54:62], "FAT16   ")
	bs[510], bs[511] = 0x55, 0xaa

	// Each FAT's first two entries: the media byte, then end of chain.
	fat := []byte{0xf8, 0xff, 0xff, 0xff}
	out := []driveBlock{{0, mbr}, {partStart * sector, bs}}
	for i := int64(0); i < fatCopies; i++ {
		out = append(out, driveBlock{(partStart + fatReserved + i*fatSectors) * sector, fat})
	}
	// The root directory's one entry: the volume label, as mkfs.vfat -n
	// writes it.
	label := make([]byte, 32)
	copy(label, "USBHOTPLUGD")
	label[11] = 0x08 // attribute: volume ID
	return append(out, driveBlock{(partStart + fatReserved + fatCopies*fatSectors) * sector, label})
}

// fatClusters is the number of data clusters of the drives' file system,
// as the kernel counts them to tell FAT12, FAT16 and FAT32 apart.
func fatClusters() int {
	rootSectors := (fatRootEnts*32 + sector - 1) / sector
	data := partSectors - fatReserved - fatCopies*fatSectors - rootSectors
	return data / fatSecPerClu
}
