package xenstore

import "syscall"

const (
	errNoEnt       = syscall.ENOENT
	errInval       = syscall.EINVAL
	errTooBigErrno = syscall.E2BIG
	errAgainErrno  = syscall.EAGAIN
)
