package fakekernel

import (
	"os"
	"path/filepath"
	"strings"
	"syscall"
)

// synthUevent is a write to a uevent file: checked as
// kobject_synth_uevent checks it, then the synthetic event it asks for is
// sent (for a usb device or interface: a port has no bus, and the kernel
// sends nothing for it), which changes nothing. It carries the keys the
// device has now, its driver included whatever the action, SYNTH_UUID
// ("0" when none is given) and each argument as SYNTH_ARG_KEY
// (shared/real-kernel/key-matrix.md).
func (k *Kernel) synthUevent(path, rel, data string) error {
	if err := checkSynth(path, data); err != nil {
		return err
	}
	dir := filepath.Join(k.root, filepath.Dir(rel))
	name := filepath.Base(dir)
	if !strings.HasPrefix(rel, "devices/") || !validDevice(name) && !validIntf(name) {
		return nil
	}
	f := strings.Fields(strings.TrimSuffix(data, "\n"))
	extra := map[string]string{"SYNTH_UUID": "0"}
	if len(f) > 1 {
		extra["SYNTH_UUID"] = f[1]
		for _, a := range f[2:] {
			key, v, _ := strings.Cut(a, "=")
			extra["SYNTH_ARG_"+key] = v
		}
	}
	k.emitWith(f[0], name, dir, currentDriver(dir), extra)
	return nil
}

// checkSynth checks a write to a uevent file as kobject_synth_uevent
// does: an action, then optionally a UUID and KEY=VALUE arguments.
func checkSynth(path, data string) error {
	f := strings.Fields(strings.TrimSuffix(data, "\n"))
	if len(f) == 0 {
		return errno(path, syscall.EINVAL)
	}
	switch f[0] {
	case "add", "remove", "change", "move", "online", "offline", "bind", "unbind":
	default:
		return errno(path, syscall.EINVAL)
	}
	if len(f) > 1 && !isUUID(f[1]) {
		return errno(path, syscall.EINVAL)
	}
	for _, a := range f[min(len(f), 2):] {
		if k, _, ok := strings.Cut(a, "="); !ok || k == "" {
			return errno(path, syscall.EINVAL)
		}
	}
	return nil
}

// isUUID accepts the 8-4-4-4-12 hex form.
func isUUID(s string) bool {
	if len(s) != 36 {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch i {
		case 8, 13, 18, 23:
			if c != '-' {
				return false
			}
		default:
			if !(c >= '0' && c <= '9' || c >= 'a' && c <= 'f' || c >= 'A' && c <= 'F') {
				return false
			}
		}
	}
	return true
}

// kstrtobool reads a boolean as the kernel's kstrtobool does: its first
// character (y/Y/1/n/N/0), or "on"/"off".
func kstrtobool(data string) (bool, bool) {
	s := strings.TrimSuffix(data, "\n")
	if s == "" {
		return false, false
	}
	switch s[0] {
	case 'y', 'Y', '1':
		return true, true
	case 'n', 'N', '0':
		return false, true
	case 'o', 'O':
		switch strings.ToLower(s) {
		case "on":
			return true, true
		case "off":
			return false, true
		}
	}
	return false, false
}

// writeFlag writes a 0/1 attribute as the kernel prints it.
func writeFlag(dir, attr string, v bool) error {
	s := "0\n"
	if v {
		s = "1\n"
	}
	return os.WriteFile(filepath.Join(dir, attr), []byte(s), 0o644)
}

// authorized reads a device's or interface's authorized attribute; one
// without it (a tree captured without it) is authorized, as every device
// is by default.
func authorized(dir string) bool { return readAttr(dir, "authorized") != "0" }
