package packaging

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// fakes are systemctl and deb-systemd-helper as far as the maintainer
// scripts use them: each call is logged; a unit is enabled while the
// file "enabled.UNIT" says so; deb-systemd-helper's memory of the admin's
// choice of the agent is the file "dsh" (empty: never seen, so enable
// it). Shell builtins only: PATH holds nothing but the fakes.
const fakeSystemctl = `#!/bin/sh
echo "systemctl $*" >> "$FAKE/log"
cmd=$1
shift
for u; do
	case "$u" in -*) continue ;; esac
	case "$cmd" in
	enable) echo yes > "$FAKE/enabled.$u" ;;
	disable) echo no > "$FAKE/enabled.$u" ;;
	is-enabled) e=; read -r e < "$FAKE/enabled.$u" 2>/dev/null; [ "$e" = yes ] || exit 1 ;;
	esac
done
`

const fakeHelper = `#!/bin/sh
echo "deb-systemd-helper $*" >> "$FAKE/log"
[ "$1" = --quiet ] && shift
case "$1" in
enable) echo yes > "$FAKE/enabled.$2"; echo enabled > "$FAKE/dsh" ;;
update-state) s=; read -r s < "$FAKE/dsh" 2>/dev/null; [ -n "$s" ] || echo disabled > "$FAKE/dsh" ;;
was-enabled)
	s=; read -r s < "$FAKE/dsh" 2>/dev/null
	e=; read -r e < "$FAKE/enabled.$2" 2>/dev/null
	[ -z "$s" ] || { [ "$s" = enabled ] && [ "$e" = yes ]; } ;;
purge) : > "$FAKE/dsh" ;;
esac
`

// exporterUnits are the metrics exporter's units, as the scripts name them
// to systemctl.
const exporterUnits = "usbhotplugd-exporter.socket usbhotplugd-exporter.service"

type host struct {
	t     *testing.T
	dir   string
	path  string
	tools []string // unshare, mount, mkdir
}

// newHost is a machine running systemd, as the scripts see it: /run is a
// private tmpfs with /run/systemd/system in it (a mount namespace each
// run), and the fakes come first on PATH; deb says whether
// deb-systemd-helper is there (Debian) or not (an rpm system).
func newHost(t *testing.T, deb bool) *host {
	if os.Geteuid() != 0 {
		t.Skip("a private /run for the maintainer scripts needs root (mount namespace)")
	}
	h := &host{t: t, dir: t.TempDir()}
	for _, tool := range []string{"unshare", "mount", "mkdir"} {
		p, err := exec.LookPath(tool)
		if err != nil {
			t.Skipf("%s not found (util-linux, coreutils)", tool)
		}
		h.tools = append(h.tools, p)
	}
	bin := filepath.Join(h.dir, "bin")
	if err := os.Mkdir(bin, 0o755); err != nil {
		t.Fatal(err)
	}
	fakes := map[string]string{"systemctl": fakeSystemctl}
	if deb {
		fakes["deb-systemd-helper"] = fakeHelper
	}
	for name, body := range fakes {
		if err := os.WriteFile(filepath.Join(bin, name), []byte(body), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	// Only the fakes: the scripts need nothing but the shell's builtins,
	// and a real deb-systemd-helper must not be found on an "rpm" host.
	h.path = bin
	return h
}

// run runs a maintainer script with its arguments and returns what it
// asked systemd to do.
func (h *host) run(script string, args ...string) string {
	h.t.Helper()
	os.Remove(filepath.Join(h.dir, "log"))
	abs, err := filepath.Abs(filepath.Join("scripts", script))
	if err != nil {
		h.t.Fatal(err)
	}
	cmd := exec.Command(h.tools[0], append([]string{"-m", "/bin/sh", "-ec",
		`"$0" -t tmpfs tmpfs /run; "$1" -p /run/systemd/system; shift; exec /bin/sh "$@"`, h.tools[1], h.tools[2], abs}, args...)...)
	cmd.Env = []string{"PATH=" + h.path, "FAKE=" + h.dir}
	if out, err := cmd.CombinedOutput(); err != nil {
		h.t.Fatalf("%s %v: %v\n%s", script, args, err, out)
	}
	b, _ := os.ReadFile(filepath.Join(h.dir, "log"))
	return string(b)
}

func (h *host) admin(args ...string) {
	h.t.Helper()
	cmd := exec.Command(filepath.Join(h.dir, "bin", "systemctl"), args...)
	cmd.Env = []string{"FAKE=" + h.dir}
	if out, err := cmd.CombinedOutput(); err != nil {
		h.t.Fatalf("systemctl %v: %v\n%s", args, err, out)
	}
}

// enabled says whether the fakes have unit enabled.
func (h *host) enabled(unit string) bool {
	b, _ := os.ReadFile(filepath.Join(h.dir, "enabled."+unit))
	return strings.TrimSpace(string(b)) == "yes"
}

func has(log, call string) bool {
	for _, l := range strings.Split(log, "\n") {
		if l == call {
			return true
		}
	}
	return false
}

// Installing the .deb enables and starts the agent; an upgrade restarts
// it, unless the admin disabled it, which an upgrade and a reinstall
// respect; removal stops it, and disables the exporter's socket; a purge
// forgets the admin's choice.
func TestDebScriptsStartTheAgent(t *testing.T) {
	h := newHost(t, true)
	const unit = "usbhotplugd.service"
	if log := h.run("postinstall.sh", "configure", ""); !has(log, "deb-systemd-helper enable "+unit) || !has(log, "systemctl restart "+unit) {
		t.Errorf("first install does not enable and start the agent:\n%s", log)
	}
	if log := h.run("postinstall.sh", "configure", ""); strings.Contains(log, "enable usbhotplugd-exporter") || !has(log, "systemctl try-restart usbhotplugd-exporter.service") {
		t.Errorf("the exporter is enabled at install, or not restarted if it runs:\n%s", log)
	}
	if log := h.run("preremove.sh", "upgrade", "0.0.2"); strings.Contains(log, "stop") || strings.Contains(log, "disable") {
		t.Errorf("an upgrade stops the agent early:\n%s", log)
	}
	if log := h.run("postinstall.sh", "configure", "0.0.1"); !has(log, "systemctl restart "+unit) {
		t.Errorf("an upgrade does not restart the agent:\n%s", log)
	}

	h.admin("disable", unit)
	if log := h.run("postinstall.sh", "configure", "0.0.2"); strings.Contains(log, "restart "+unit) || strings.Contains(log, "helper enable") {
		t.Errorf("an upgrade enables or starts what the admin disabled:\n%s", log)
	}
	h.admin("enable", unit)
	h.run("postinstall.sh", "configure", "0.0.2") // the helper records it enabled again

	// The admin turned metrics on: removal stops the agent and the
	// exporter and disables the exporter's socket (no link may outlive
	// the package), not the agent (the helper keeps that choice).
	h.admin("enable", "usbhotplugd-exporter.socket")
	if log := h.run("preremove.sh", "remove"); !has(log, "systemctl stop "+unit) || !has(log, "systemctl stop "+exporterUnits) ||
		!has(log, "systemctl disable "+exporterUnits) || strings.Contains(log, "disable "+unit) {
		t.Errorf("removal does not stop the agent and the exporter, or not disable just the exporter:\n%s", log)
	}
	if h.enabled("usbhotplugd-exporter.socket") || !h.enabled(unit) {
		t.Errorf("after removal: exporter socket enabled %v, agent enabled %v", h.enabled("usbhotplugd-exporter.socket"), h.enabled(unit))
	}
	h.run("postremove.sh", "remove")
	if log := h.run("postinstall.sh", "configure", "0.0.2"); !has(log, "systemctl restart "+unit) {
		t.Errorf("a reinstall after removal does not start the agent:\n%s", log)
	}
	if log := h.run("postremove.sh", "purge"); !has(log, "deb-systemd-helper purge "+unit) {
		t.Errorf("purge does not forget the unit's state:\n%s", log)
	}
}

// The same scripts in an rpm: %post 1 enables and starts, %post 2
// restarts what is enabled, %preun 0 disables and stops, %preun 1 (an
// upgrade) does nothing.
func TestRpmScriptsStartTheAgent(t *testing.T) {
	h := newHost(t, false)
	const unit = "usbhotplugd.service"
	if log := h.run("postinstall.sh", "1"); !has(log, "systemctl enable "+unit) || !has(log, "systemctl restart "+unit) {
		t.Errorf("install does not enable and start the agent:\n%s", log)
	}
	if log := h.run("preremove.sh", "1"); log != "" {
		t.Errorf("an upgrade's %%preun touches the agent:\n%s", log)
	}
	if log := h.run("postinstall.sh", "2"); strings.Contains(log, "enable "+unit) || !has(log, "systemctl restart "+unit) {
		t.Errorf("an upgrade does not just restart the agent:\n%s", log)
	}
	h.admin("enable", "usbhotplugd-exporter.socket")
	if log := h.run("preremove.sh", "0"); !has(log, "systemctl disable "+unit) || !has(log, "systemctl stop "+unit) ||
		!has(log, "systemctl disable "+exporterUnits) || !has(log, "systemctl stop "+exporterUnits) {
		t.Errorf("erase does not disable and stop the agent and the exporter:\n%s", log)
	}
	if h.enabled("usbhotplugd-exporter.socket") || h.enabled(unit) {
		t.Error("erase leaves a unit enabled")
	}
	if log := h.run("postinstall.sh", "1"); strings.Contains(log, "enable usbhotplugd-exporter") {
		t.Errorf("the exporter is enabled at install:\n%s", log)
	}
}
