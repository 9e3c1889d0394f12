package daemon

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
)

// journalFile makes a file and names it in JOURNAL_STREAM, as systemd
// names the stream it connects stdout to.
func journalFile(t *testing.T) *os.File {
	f, err := os.Create(filepath.Join(t.TempDir(), "journal"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.Close() })
	var st syscall.Stat_t
	if err := syscall.Fstat(int(f.Fd()), &st); err != nil {
		t.Fatal(err)
	}
	t.Setenv("JOURNAL_STREAM", fmt.Sprintf("%d:%d", st.Dev, st.Ino))
	return f
}

func lines(t *testing.T, f *os.File) []string {
	b, err := os.ReadFile(f.Name())
	if err != nil {
		t.Fatal(err)
	}
	return strings.Split(strings.TrimSuffix(string(b), "\n"), "\n")
}

// Under systemd each line carries its priority in journald's stdout
// prefix: errors at err, warnings at warning, decisions at notice, the
// rest at info; `journalctl -p err` then shows the failures alone.
func TestLogPriorities(t *testing.T) {
	for _, format := range []string{"json", "console"} {
		t.Run(format, func(t *testing.T) {
			f := journalFile(t)
			log, err := NewLogger(f, format, "debug")
			if err != nil {
				t.Fatal(err)
			}
			log.Error().Err(errors.New("boom")).Msg("failed")
			log.Warn().Msg("careful")
			log.Info().Bool("audit", true).Str("busid", "1-2").Msg("attached")
			log.Info().Msg("ready")
			log.Debug().Msg("detail")
			got := lines(t, f)
			want := []string{"<3>", "<4>", "<5>", "<6>", "<7>"}
			if len(got) != len(want) {
				t.Fatalf("lines: %q", got)
			}
			for i, w := range want {
				if !strings.HasPrefix(got[i], w) {
					t.Errorf("line %d: %q, want the prefix %s", i, got[i], w)
				}
			}
			if format == "json" && !strings.HasPrefix(got[0], `<3>{"level":"error"`) {
				t.Errorf("the JSON after the prefix: %q", got[0])
			}
		})
	}
}

// A stdout that is not the journal's stream (redirected to a file under
// systemd) gets no prefix.
func TestLogNoPrefixElsewhere(t *testing.T) {
	journalFile(t)
	f, err := os.Create(filepath.Join(t.TempDir(), "other"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	log, err := NewLogger(f, "auto", "info")
	if err != nil {
		t.Fatal(err)
	}
	log.Error().Msg("failed")
	if got := lines(t, f); len(got) != 1 || !strings.HasPrefix(got[0], `{"level":"error"`) {
		t.Errorf("lines: %q", got)
	}
	if _, err := NewLogger(f, "xml", "info"); !errors.Is(err, ErrUsage) {
		t.Errorf("a bad format: %v", err)
	}
}

// The agent's own end, under systemd: its cause is one line at err.
func TestFatalErrorAtPriorityErr(t *testing.T) {
	h := newHost(t)
	f := journalFile(t)
	log, err := NewLogger(f, "auto", "info")
	if err != nil {
		t.Fatal(err)
	}
	h.cfg.Log = log
	h.src.kill()
	_, done := h.start()
	if err := h.awaitEnd(done); err == nil {
		t.Fatal("Run ended without an error")
	}
	var errs []string
	for _, l := range lines(t, f) {
		if strings.HasPrefix(l, "<3>") {
			errs = append(errs, l)
		}
	}
	if len(errs) != 1 || !strings.Contains(errs[0], "uevent reader") {
		t.Errorf("lines at err: %q", errs)
	}
}
