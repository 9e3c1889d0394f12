//go:build !linux

package agent

import "os/exec"

// ownGroup leaves cmd as it is: process groups are Linux-only here.
func ownGroup(cmd *exec.Cmd) {}
