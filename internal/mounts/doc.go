// Package mounts reads what dom0 has mounted, from /proc/self/mountinfo,
// so that a USB disk dom0 uses (its root, a data volume) is never passed
// to a guest.
package mounts
