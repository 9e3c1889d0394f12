//go:build !linux

package usbsysfs

import "os"

// readSmall reads a file whole. Off Linux there is no sysfs: this serves
// fixture trees (a policy's check or generate on a workstation).
func readSmall(path string) ([]byte, error) { return os.ReadFile(path) }
