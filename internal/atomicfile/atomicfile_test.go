package atomicfile_test

import (
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"github.com/usbhotplugd/usbhotplugd/internal/atomicfile"
)

func TestWriteReplaces(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "status.json")
	for _, data := range []string{"old\n", "new\n"} {
		if err := atomicfile.Write(path, []byte(data), 0o644, true); err != nil {
			t.Fatal(err)
		}
		if got, _ := os.ReadFile(path); string(got) != data {
			t.Errorf("contents %q, want %q", got, data)
		}
	}
	st, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if st.Mode().Perm() != 0o644 {
		t.Errorf("mode %v", st.Mode())
	}
	assertOnly(t, dir, "status.json")
}

// Without replace, an existing file is left as it was and the error says
// so; nothing of the attempt stays.
func TestWriteKeepsAnExistingFile(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "policy.toml")
	if err := atomicfile.Write(path, []byte("first"), 0o600, false); err != nil {
		t.Fatal(err)
	}
	err := atomicfile.Write(path, []byte("second"), 0o644, false)
	if !errors.Is(err, atomicfile.ErrExists) {
		t.Fatalf("err = %v, want ErrExists", err)
	}
	if got, _ := os.ReadFile(path); string(got) != "first" {
		t.Errorf("contents %q", got)
	}
	assertOnly(t, dir, "policy.toml")
}

// A directory that cannot be written fails before anything is there.
func TestWriteUnwritableDir(t *testing.T) {
	if err := atomicfile.Write(filepath.Join(t.TempDir(), "no", "such", "f"), []byte("x"), 0o644, true); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("err = %v", err)
	}
}

func assertOnly(t *testing.T, dir string, names ...string) {
	t.Helper()
	des, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	if len(des) != len(names) {
		var got []string
		for _, de := range des {
			got = append(got, de.Name())
		}
		t.Errorf("directory holds %q, want %q", got, names)
	}
}

// A missing directory, or a directory where the file goes, is said of the
// path asked for, never of the temporary file beside it.
func TestWriteSaysWhatIsWrongWithPath(t *testing.T) {
	dir := t.TempDir()
	for _, c := range []struct {
		path string
		want error
	}{
		{filepath.Join(dir, "missing", "x.toml"), fs.ErrNotExist},
		{dir, syscall.EISDIR},
	} {
		err := atomicfile.Write(c.path, []byte("x"), 0o644, true)
		if !errors.Is(err, c.want) || strings.Contains(err.Error(), ".tmp") {
			t.Errorf("%s: %v", c.path, err)
		}
	}
}
