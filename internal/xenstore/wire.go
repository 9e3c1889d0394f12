package xenstore

import (
	"encoding/binary"
	"errors"
	"fmt"
	"strings"
	"syscall"
)

// MsgType is the type field of a xenstore message header.
type MsgType uint32

// Message types, from xs_wire.h.
const (
	TypeControl            MsgType = 0
	TypeDirectory          MsgType = 1
	TypeRead               MsgType = 2
	TypeGetPerms           MsgType = 3
	TypeWatch              MsgType = 4
	TypeUnwatch            MsgType = 5
	TypeTransactionStart   MsgType = 6
	TypeTransactionEnd     MsgType = 7
	TypeIntroduce          MsgType = 8
	TypeRelease            MsgType = 9
	TypeGetDomainPath      MsgType = 10
	TypeWrite              MsgType = 11
	TypeMkdir              MsgType = 12
	TypeRm                 MsgType = 13
	TypeSetPerms           MsgType = 14
	TypeWatchEvent         MsgType = 15
	TypeError              MsgType = 16
	TypeIsDomainIntroduced MsgType = 17
	TypeResume             MsgType = 18
	TypeSetTarget          MsgType = 19
	TypeResetWatches       MsgType = 21
	TypeDirectoryPart      MsgType = 22
)

// typeNames is an array, static data: a map literal is built at start-up.
var typeNames = [...]string{
	TypeControl: "CONTROL", TypeDirectory: "DIRECTORY", TypeRead: "READ",
	TypeGetPerms: "GET_PERMS", TypeWatch: "WATCH", TypeUnwatch: "UNWATCH",
	TypeTransactionStart: "TRANSACTION_START", TypeTransactionEnd: "TRANSACTION_END",
	TypeIntroduce: "INTRODUCE", TypeRelease: "RELEASE", TypeGetDomainPath: "GET_DOMAIN_PATH",
	TypeWrite: "WRITE", TypeMkdir: "MKDIR", TypeRm: "RM", TypeSetPerms: "SET_PERMS",
	TypeWatchEvent: "WATCH_EVENT", TypeError: "ERROR", TypeIsDomainIntroduced: "IS_DOMAIN_INTRODUCED",
	TypeResume: "RESUME", TypeSetTarget: "SET_TARGET", TypeResetWatches: "RESET_WATCHES",
	TypeDirectoryPart: "DIRECTORY_PART",
}

func (t MsgType) String() string {
	if t < MsgType(len(typeNames)) && typeNames[t] != "" {
		return typeNames[t]
	}
	return fmt.Sprintf("TYPE_%d", uint32(t))
}

// Protocol limits, from xs_wire.h.
const (
	HeaderSize = 16
	PayloadMax = 4096
	// ReplyMax is the largest reply payload a client accepts. oxenstored
	// answers DIRECTORY with every child in one reply, past PayloadMax,
	// where the C daemon says E2BIG and is asked again in parts; the cap
	// is the one the parts are put together under.
	ReplyMax     = 16 << 20
	AbsPathMax   = 3072
	RelPathMax   = 2048
	maxDirTries  = 16
	maxTxRetries = 16
)

// Header is a xenstore message header.
type Header struct {
	Type  MsgType
	ReqID uint32
	TxID  uint32
	Len   uint32
}

// AppendHeader appends the wire form of h to b.
func AppendHeader(b []byte, h Header) []byte {
	b = binary.NativeEndian.AppendUint32(b, uint32(h.Type))
	b = binary.NativeEndian.AppendUint32(b, h.ReqID)
	b = binary.NativeEndian.AppendUint32(b, h.TxID)
	return binary.NativeEndian.AppendUint32(b, h.Len)
}

// ParseHeader decodes a header and checks that its length is within the
// protocol's limit, so a reader never allocates more than PayloadMax.
func ParseHeader(b []byte) (Header, error) {
	if len(b) < HeaderSize {
		return Header{}, &ProtocolError{Msg: fmt.Sprintf("short header: %d bytes", len(b))}
	}
	h := Header{
		Type:  MsgType(binary.NativeEndian.Uint32(b[0:])),
		ReqID: binary.NativeEndian.Uint32(b[4:]),
		TxID:  binary.NativeEndian.Uint32(b[8:]),
		Len:   binary.NativeEndian.Uint32(b[12:]),
	}
	if h.Len > PayloadMax {
		return h, &ProtocolError{Msg: fmt.Sprintf("%v payload of %d bytes exceeds %d", h.Type, h.Len, PayloadMax)}
	}
	return h, nil
}

// parseReplyHeader is ParseHeader for what a store sends a client,
// whose payload may be up to ReplyMax.
func parseReplyHeader(b []byte) (Header, error) {
	h, err := ParseHeader(b)
	var pe *ProtocolError
	if errors.As(err, &pe) && len(b) >= HeaderSize && h.Len <= ReplyMax {
		return h, nil
	}
	return h, err
}

// A ProtocolError reports a message from the peer that breaks the protocol.
type ProtocolError struct{ Msg string }

func (e *ProtocolError) Error() string { return "xenstore: protocol error: " + e.Msg }

// ErrDisconnected is returned by calls on a Conn whose connection to the
// store was lost (not closed by Close).
var ErrDisconnected = errors.New("xenstore: connection to the store lost")

// errnoNames lists the error strings of xs_wire.h in its order.
var errnoNames = []struct {
	name string
	no   syscall.Errno
}{
	{"EINVAL", syscall.EINVAL}, {"EACCES", syscall.EACCES}, {"EEXIST", syscall.EEXIST},
	{"EISDIR", syscall.EISDIR}, {"ENOENT", syscall.ENOENT}, {"ENOMEM", syscall.ENOMEM},
	{"ENOSPC", syscall.ENOSPC}, {"EIO", syscall.EIO}, {"ENOTEMPTY", syscall.ENOTEMPTY},
	{"ENOSYS", syscall.ENOSYS}, {"EROFS", syscall.EROFS}, {"EBUSY", syscall.EBUSY},
	{"EAGAIN", syscall.EAGAIN}, {"EISCONN", syscall.EISCONN}, {"E2BIG", syscall.E2BIG},
	{"EPERM", syscall.EPERM},
}

// ErrnoFromName maps an ERROR reply's name to an errno. oxenstored's
// EQUOTA, which xs_wire.h lacks, is ENOSPC, what the C daemon says for the
// same quotas. Other unknown names map to EINVAL, as libxenstore does.
func ErrnoFromName(name string) syscall.Errno {
	if name == "EQUOTA" {
		return syscall.ENOSPC
	}
	for _, e := range errnoNames {
		if e.name == name {
			return e.no
		}
	}
	return syscall.EINVAL
}

// ErrnoName is the wire name of an errno; errnos the protocol does not know
// are sent as EINVAL, as xenstored does.
func ErrnoName(no syscall.Errno) string {
	for _, e := range errnoNames {
		if e.no == no {
			return e.name
		}
	}
	return "EINVAL"
}

// parseErrorPayload decodes the payload of an ERROR reply.
func parseErrorPayload(p []byte) syscall.Errno {
	s, _, _ := strings.Cut(string(p), "\x00")
	return ErrnoFromName(s)
}

// An OpError is the error of one xenstore operation.
type OpError struct {
	Op   string // the request type, e.g. "READ"
	Path string // the path or argument the request named, if any
	Err  error
}

func (e *OpError) Error() string {
	if e.Path != "" {
		return "xenstore: " + e.Op + " " + e.Path + ": " + e.Err.Error()
	}
	return "xenstore: " + e.Op + ": " + e.Err.Error()
}

func (e *OpError) Unwrap() error { return e.Err }

func opError(op MsgType, path string, err error) error {
	if err == nil {
		return nil
	}
	return &OpError{Op: op.String(), Path: path, Err: err}
}
