package policy

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
)

// DropInDir is the directory of drop-ins beside a policy file:
// /etc/usbhotplugd/rules.d for /etc/usbhotplugd/policy.toml.
func DropInDir(policyPath string) string {
	return filepath.Join(filepath.Dir(policyPath), "rules.d")
}

// Options say which files make up a policy.
type Options struct {
	// Host is the host name that drop-ins are selected for; "" is this
	// host's name.
	Host string
	// NoDropIns reads the main file (and its includes) alone.
	NoDropIns bool
}

// A SkippedFile is a drop-in whose hosts do not name the host loaded for.
type SkippedFile struct {
	File  string
	Hosts []string
}

// Load reads the policy at path: that file, then each rules.d/*.toml beside
// it in lexical order, their rules after the main file's. For every device
// the first matching rule of that sequence decides. A drop-in with a
// top-level hosts = ["GLOB", ...] applies only on hosts whose name matches
// one of them; the others are parsed (a broken file is an error everywhere)
// and listed in Policy.Skipped. Load stops when ctx is done, with an error
// that wraps ctx.Err().
func Load(ctx context.Context, path string, opt Options) (*Policy, error) {
	host := opt.Host
	if host == "" {
		h, err := os.Hostname()
		if err != nil {
			return nil, fmt.Errorf("policy: the host name, to select drop-ins: %w", err)
		}
		host = h
	}
	data, err := readRegular(path)
	if err != nil {
		return nil, fmt.Errorf("policy: %w", err)
	}
	var dropIns []string
	if !opt.NoDropIns {
		if dropIns, err = listDropIns(DropInDir(path)); err != nil {
			return nil, fmt.Errorf("policy: %w", err)
		}
	}
	ps := newParseState(ctx, path, readInclude)
	ps.host = host
	ps.pol.Host = host
	ps.file(path, data, nil, false)
	for _, f := range dropIns {
		b, err := readRegular(f)
		if err != nil {
			kind := ErrInclude
			for _, k := range []error{ErrNotRegular, ErrLimit} {
				if errors.Is(err, k) {
					kind = k
				}
			}
			ps.errs = append(ps.errs, &Error{File: f, Kind: kind, Msg: strings.TrimPrefix(err.Error(), f+": ")})
			continue
		}
		ps.pol.DropIns = append(ps.pol.DropIns, f)
		ps.file(f, b, nil, true)
	}
	return ps.finish()
}

// listDropIns returns the *.toml files of dir in lexical order; no dir is
// no drop-ins. Hidden files (an editor's .swp, a tool's .tmp) are left out.
func listDropIns(dir string) ([]string, error) {
	ents, err := os.ReadDir(dir)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	var out []string
	for _, e := range ents {
		n := e.Name()
		if strings.HasPrefix(n, ".") || !strings.HasSuffix(n, ".toml") {
			continue
		}
		out = append(out, filepath.Join(dir, n))
	}
	slices.Sort(out)
	return out, nil
}

// selected reads a drop-in's hosts key and says whether the file applies
// to the host loaded for; a file that is not a drop-in may not have one.
func (fp *fileParser) selected(raw map[string]any, dropIn bool) bool {
	_, ok := raw["hosts"]
	if !ok {
		return true
	}
	if !dropIn {
		fp.fail(nil, []string{"hosts"}, "hosts", ErrUnknownKey, "hosts selects a drop-in in rules.d/ by host name; the main file and included files apply on every host")
		return true
	}
	pats, ok := fp.strs(nil, raw, nil, "hosts", "", ` (hosts = ["vdi-*"])`)
	if !ok {
		return false
	}
	match := false
	for i, p := range pats {
		if err := checkHostGlob(p); err != nil {
			fp.fail(nil, []string{"hosts", fmt.Sprint(i)}, fmt.Sprintf("hosts[%d]", i), ErrValue, "%v", err)
			return false
		}
		match = match || glob(strings.ToLower(p), strings.ToLower(fp.ps.host))
	}
	if !match && !fp.ps.allHosts {
		fp.ps.pol.Skipped = append(fp.ps.pol.Skipped, SkippedFile{File: fp.name, Hosts: pats})
	}
	return match || fp.ps.allHosts
}

// checkHostGlob accepts a host name pattern: letters, digits, '-', '.',
// '_' and the globs * and ?.
func checkHostGlob(s string) error {
	if s == "" || len(s) > 253 {
		return fmt.Errorf("%q is not a host name pattern (1 to 253 characters)", s)
	}
	for _, c := range s {
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || strings.ContainsRune("-._*?", c)) {
			return fmt.Errorf("%q is not a host name pattern (letters, digits, - . _ and the globs * ?)", s)
		}
	}
	return nil
}
