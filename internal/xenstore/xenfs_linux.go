package xenstore

import "golang.org/x/sys/unix"

// xenfsMagic is xenfs's f_type (XENFS_SUPER_MAGIC).
const xenfsMagic = 0xabba1974

// onXenfs says whether path is on xenfs (mounted at /proc/xen), whose
// xenbus file is a store's device though it is a regular file.
func onXenfs(path string) bool {
	var st unix.Statfs_t
	return unix.Statfs(path, &st) == nil && uint32(st.Type) == xenfsMagic
}
