package daemon

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/mattn/go-isatty"
	"github.com/rs/zerolog"

	"github.com/usbhotplugd/usbhotplugd/internal/safetext"
)

// ErrUsage marks a bad logging option (the command line's exit code 2).
var ErrUsage = errors.New("usage")

// NewLogger logs to w: JSON under systemd or into a file, text for people
// on a terminal (format "auto"), or as format says ("json", "console").
// When w is the journal's stream (systemd's JOURNAL_STREAM names it),
// each line starts with its syslog priority, "<3>" for errors, "<4>"
// warnings, "<6>" information, "<7>" debugging: journald takes it as the
// line's priority (SyslogLevelPrefix=yes, its default), so
// `journalctl -p err` shows the failures.
func NewLogger(w io.Writer, format, level string) (zerolog.Logger, error) {
	lvl, err := zerolog.ParseLevel(level)
	if err != nil || level == "" {
		return zerolog.Logger{}, fmt.Errorf("%w: --log-level %q: one of debug, info, warn, error", ErrUsage, level)
	}
	journal := isJournal(w)
	switch format {
	case "auto":
		format = "json"
		if f, ok := w.(*os.File); ok && !journal && isatty.IsTerminal(f.Fd()) {
			format = "console"
		}
	case "json", "console":
	default:
		return zerolog.Logger{}, fmt.Errorf("%w: --log-format %q: one of auto, json, console", ErrUsage, format)
	}
	var out io.Writer = w
	switch {
	case journal:
		out = &PriorityWriter{W: w, Console: format == "console"}
	case format == "console":
		out = SafeConsole(zerolog.ConsoleWriter{Out: w, TimeFormat: time.DateTime})
	}
	// The daemon's tasks log at once, and a writer need not take
	// concurrent writes (a test's buffer, a console writer's state).
	return zerolog.New(zerolog.SyncWriter(out)).Level(lvl).With().Timestamp().Logger(), nil
}

// SafeConsole escapes what a terminal would act on in the messages and
// field values a console writer prints: they carry device strings that
// whoever plugs a device in chooses. JSON logs need nothing: they keep the
// strings exact.
func SafeConsole(w zerolog.ConsoleWriter) zerolog.ConsoleWriter {
	w.FormatMessage = func(i any) string {
		if i == nil {
			return ""
		}
		return safetext.Line(fmt.Sprint(i))
	}
	w.FormatFieldValue = func(i any) string { return safetext.Line(fieldText(i)) }
	return w
}

// fieldText is a field's value as the console shows it. The writer hands
// a value that is no string or number (a bool, a list) as its JSON bytes:
// they are text, not a list of byte values.
func fieldText(i any) string {
	if b, ok := i.([]byte); ok {
		return string(b)
	}
	return fmt.Sprint(i)
}

// isJournal says w is the stream systemd connected to the journal: its
// device and inode are JOURNAL_STREAM's ("DEV:INODE"). A stdout that was
// redirected elsewhere is not, even under systemd.
func isJournal(w io.Writer) bool {
	f, ok := w.(*os.File)
	js := os.Getenv("JOURNAL_STREAM")
	if !ok || js == "" {
		return false
	}
	dev, ino, ok := strings.Cut(js, ":")
	if !ok {
		return false
	}
	var st syscall.Stat_t
	if err := syscall.Fstat(int(f.Fd()), &st); err != nil {
		return false
	}
	return strconv.FormatUint(uint64(st.Dev), 10) == dev && strconv.FormatUint(st.Ino, 10) == ino
}

// Syslog priorities (RFC 5424) that journald reads from a line's prefix.
const (
	prioErr     = 3
	prioWarning = 4
	prioNotice  = 5
	prioInfo    = 6
	prioDebug   = 7
)

// Priority is the syslog priority of a zerolog level.
func Priority(l zerolog.Level) int {
	switch {
	case l >= zerolog.ErrorLevel && l <= zerolog.PanicLevel:
		return prioErr
	case l == zerolog.WarnLevel:
		return prioWarning
	case l == zerolog.InfoLevel, l == zerolog.NoLevel:
		return prioInfo
	default:
		return prioDebug
	}
}

// PriorityWriter prefixes each line with its syslog priority ("<3>"),
// the stdout protocol journald understands. Decisions (the audit records)
// go at notice, above the agent's other information. Each Write is one
// whole line, as zerolog writes; Console writes it as text.
type PriorityWriter struct {
	W       io.Writer
	Console bool
	mu      sync.Mutex
}

// Write writes p at priority info.
func (w *PriorityWriter) Write(p []byte) (int, error) { return w.WriteLevel(zerolog.InfoLevel, p) }

// WriteLevel writes p at the priority of l.
func (w *PriorityWriter) WriteLevel(l zerolog.Level, p []byte) (int, error) {
	prio := Priority(l)
	if prio == prioInfo && isDecision(p) {
		prio = prioNotice
	}
	var b bytes.Buffer
	b.Write([]byte{'<', byte('0' + prio), '>'})
	if w.Console {
		cw := SafeConsole(zerolog.ConsoleWriter{Out: &b, TimeFormat: time.DateTime, NoColor: true})
		if _, err := cw.Write(p); err != nil {
			return 0, err
		}
	} else {
		b.Write(p)
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	if _, err := w.W.Write(b.Bytes()); err != nil {
		return 0, err
	}
	return len(p), nil
}

func isDecision(p []byte) bool { return bytes.Contains(p, []byte(`"audit":true`)) }
