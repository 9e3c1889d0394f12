package xenstore

import "syscall"

const (
	errNoEnt       = syscall.ENOENT
	errTooBigErrno = syscall.E2BIG
	errAgainErrno  = syscall.EAGAIN
)
