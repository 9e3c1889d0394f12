package main

import (
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"github.com/usbhotplugd/usbhotplugd/policy"
)

var updateGolden = flag.Bool("update-xlcfg", false, "rewrite testdata/xlcfg/*.golden")

// import-xlcfg on xl.cfg files with every usbdev= form xl accepts and
// those it refuses, on the real kernel's tree: what it writes, what it
// reports, its exit status. What it writes is always a valid policy.
func TestImportXLCfgGolden(t *testing.T) {
	cases := map[string][]string{
		"accepted": {"accepted.cfg"},
		"refused":  {"refused.cfg"},
		"noname":   {"noname.cfg"},
		"single":   {"single.cfg"},
		"twice":    {"accepted.cfg", "twice.cfg"},
		"syntax":   {"syntax.cfg"},
	}
	for name, files := range cases {
		t.Run(name, func(t *testing.T) {
			args := []string{"import-xlcfg", "--sysfs", realTree}
			for _, f := range files {
				args = append(args, filepath.Join("testdata/xlcfg", f))
			}
			code, out, errs := runCmd(t, args...)
			got := fmt.Sprintf("%s--- stderr\n%s--- exit %d\n", out, errs, code)
			golden := filepath.Join("testdata/xlcfg", name+".golden")
			if *updateGolden {
				if err := os.WriteFile(golden, []byte(got), 0o644); err != nil {
					t.Fatal(err)
				}
			}
			want, err := os.ReadFile(golden)
			if err != nil {
				t.Fatal(err)
			}
			if got != string(want) {
				t.Errorf("import-xlcfg %s differs from %s (go test ./cmd/usbhotplugd -run ImportXLCfg -update-xlcfg rewrites it):\n%s", strings.Join(files, " "), golden, got)
			}
			if code != exitUsage && strings.TrimSpace(out) != "" {
				if _, err := policy.Parse("imported", []byte(out), nil); err != nil {
					t.Errorf("the policy written does not parse: %v", err)
				}
			}
		})
	}
}

// A named pipe given as an xl.cfg is refused at once, by name: a plain
// open would wait for a writer that never comes.
func TestImportXLCfgRefusesFIFO(t *testing.T) {
	fifo := filepath.Join(t.TempDir(), "kiosk.cfg")
	if err := syscall.Mkfifo(fifo, 0o600); err != nil {
		t.Skipf("mkfifo: %v", err)
	}
	code, out, errs := runCmd(t, "import-xlcfg", "--sysfs", realTree, fifo)
	if code == 0 || out != "" || !strings.Contains(errs, fifo+": not a regular file (a named pipe)") {
		t.Errorf("exit %d\n%s%s", code, out, errs)
	}
}
