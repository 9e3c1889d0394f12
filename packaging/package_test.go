package packaging

import (
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

// installVar asks for the test that installs the .deb on this machine
// (.ci/run sets it); without it, nothing is installed.
const installVar = "USBHOTPLUGD_TEST_INSTALL"

func need(t *testing.T, why string) {
	t.Helper()
	if os.Getenv("CI") != "" {
		t.Fatalf("cannot test the package: %s (CI must have it)", why)
	}
	t.Skipf("skipping the package test: %s", why)
}

func sh(t *testing.T, name string, args ...string) string {
	t.Helper()
	cmd := exec.Command(name, args...)
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("%s %s: %v\n%s", name, strings.Join(args, " "), err, out)
	}
	return string(out)
}

func build(t *testing.T, version string) string {
	t.Helper()
	cmd := exec.Command("make", "-C", "..", "package", "PKG_VERSION="+version)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("make package: %v\n%s", err, out)
	}
	debs, _ := filepath.Glob("../dist/usbhotplugd_" + version + "_*.deb")
	rpms, _ := filepath.Glob("../dist/usbhotplugd-" + version + "-*.rpm")
	if len(debs) != 1 || len(rpms) != 1 {
		t.Fatalf("make package made %v and %v", debs, rpms)
	}
	dst := filepath.Join(t.TempDir(), filepath.Base(debs[0]))
	b, err := os.ReadFile(debs[0])
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(dst, b, 0o644); err != nil {
		t.Fatal(err)
	}
	return dst
}

// The .deb and .rpm build from a clean clone; the .deb installs, its unit
// verifies, an upgrade keeps the admin's policy, and removal and purge
// leave nothing but what they should.
func TestDebInstallUpgradeRemove(t *testing.T) {
	if os.Getenv(installVar) != "1" {
		t.Skipf("skipping the package test: it installs and purges the .deb on this machine; set %s=1 to run it", installVar)
	}
	if os.Geteuid() != 0 {
		need(t, "installing a package needs root")
	}
	for _, tool := range []string{"dpkg", "systemd-analyze", "systemctl", "make"} {
		if _, err := exec.LookPath(tool); err != nil {
			need(t, tool+" is not installed")
		}
	}
	if out, _ := exec.Command("dpkg-query", "-W", "-f=${Status}", "usbhotplugd").Output(); strings.Contains(string(out), "installed") {
		need(t, "usbhotplugd is installed on this machine already; the test will not touch it")
	}
	first, second := build(t, "0.0.1"), build(t, "0.0.2")
	t.Cleanup(func() { exec.Command("dpkg", "-P", "usbhotplugd").Run() })

	sh(t, "dpkg", "-i", first)
	for _, f := range []string{"/usr/bin/usbhotplugd", "/lib/systemd/system/usbhotplugd.service", "/etc/usbhotplugd/policy.toml",
		"/usr/share/man/man8/usbhotplugd.8.gz", "/usr/share/man/man5/usbhotplugd-policy.5.gz",
		"/usr/share/man/man8/usbhotplugd-usbdev-attach.8.gz", "/usr/share/man/man8/usbhotplugd-exporter.8.gz", "/usr/share/zsh/vendor-completions/_usbhotplugd",
		"/usr/share/fish/vendor_completions.d/usbhotplugd.fish",
		"/usr/share/bash-completion/completions/usbhotplugd", "/usr/share/usbhotplugd/rules/reference.toml",
		"/usr/share/usbhotplugd/rules/deny-defaults.toml", "/usr/share/usbhotplugd/rules/examples/kiosk.toml",
		"/usr/bin/usbhotplugd-exporter", "/lib/systemd/system/usbhotplugd-exporter.socket", "/lib/systemd/system/usbhotplugd-exporter.service",
		"/usr/share/usbhotplugd/prometheus/usbhotplugd-alerts.yml"} {
		if _, err := os.Stat(f); err != nil {
			t.Errorf("installed package lacks %s", f)
		}
	}
	// Enabled at install, as Debian does for a daemon (and started, where
	// systemd runs; the maintainer scripts' own test checks that part).
	const wants = "/etc/systemd/system/multi-user.target.wants/usbhotplugd.service"
	if _, err := os.Lstat(wants); err != nil {
		t.Errorf("the install did not enable the unit: %v", err)
	}
	// Metrics are opt-in: the exporter is installed, not enabled.
	if _, err := os.Lstat("/etc/systemd/system/sockets.target.wants/usbhotplugd-exporter.socket"); err == nil {
		t.Error("the install enabled the exporter's socket")
	}
	if v := sh(t, "/usr/bin/usbhotplugd-exporter", "--version"); !strings.HasPrefix(v, "usbhotplugd-exporter 0.0.1 (commit ") {
		t.Errorf("exporter version: %q", v)
	}
	if v := sh(t, "/usr/bin/usbhotplugd", "version"); !strings.HasPrefix(v, "usbhotplugd 0.0.1 (commit ") {
		t.Errorf("version: %q", v)
	}
	// The shipped policy is valid, has no rule and so passes nothing through; the
	// shipped examples are valid where they are installed.
	if out := sh(t, "/usr/bin/usbhotplugd", "check", "/etc/usbhotplugd/policy.toml"); !strings.Contains(out, "valid: 0 rules,") {
		t.Errorf("check of the shipped policy: %s", out)
	}
	sh(t, "/usr/bin/usbhotplugd", "check", "/usr/share/usbhotplugd/rules/examples/kiosk.toml")
	if out := sh(t, "systemd-analyze", "verify", "/lib/systemd/system/usbhotplugd.service", "/lib/systemd/system/usbhotplugd-exporter.socket",
		"/lib/systemd/system/usbhotplugd-exporter.service"); strings.TrimSpace(out) != "" {
		t.Errorf("systemd-analyze verify is not clean:\n%s", out)
	}
	sec := sh(t, "systemd-analyze", "security", "--offline=true", "/lib/systemd/system/usbhotplugd.service")
	m := regexp.MustCompile(`Overall exposure level for usbhotplugd.service: ([0-9.]+) (\S+)`).FindStringSubmatch(sec)
	if m == nil {
		t.Fatalf("no exposure level in:\n%s", sec)
	}
	t.Logf("systemd-analyze security: exposure %s %s", m[1], m[2])
	if m[2] != "OK" {
		t.Errorf("exposure %s %s: the unit is not sandboxed enough", m[1], m[2])
	}

	// The admin's policy survives an upgrade.
	mine := "[[rule]]\nname = \"mine\"\naction = \"deny\"\n"
	if err := os.WriteFile("/etc/usbhotplugd/policy.toml", []byte(mine), 0o644); err != nil {
		t.Fatal(err)
	}
	sh(t, "dpkg", "--force-confold", "-i", second)
	if v := sh(t, "/usr/bin/usbhotplugd", "version"); !strings.HasPrefix(v, "usbhotplugd 0.0.2 ") {
		t.Errorf("after the upgrade: %q", v)
	}
	if b, _ := os.ReadFile("/etc/usbhotplugd/policy.toml"); string(b) != mine {
		t.Errorf("the upgrade replaced the admin's policy:\n%s", b)
	}

	// Removal keeps the policy (a configuration file); purge takes it.
	// The admin's enabled exporter socket leaves no link behind.
	const exporterWants = "/etc/systemd/system/sockets.target.wants/usbhotplugd-exporter.socket"
	sh(t, "systemctl", "enable", "usbhotplugd-exporter.socket")
	if _, err := os.Lstat(exporterWants); err != nil {
		t.Errorf("systemctl enable made no link: %v", err)
	}
	sh(t, "dpkg", "-r", "usbhotplugd")
	if _, err := os.Lstat(exporterWants); err == nil {
		t.Error("the exporter's socket is still enabled after dpkg -r")
	}
	if _, err := os.Stat("/usr/bin/usbhotplugd"); err == nil {
		t.Error("the binary is still there after dpkg -r")
	}
	if _, err := os.Stat("/etc/usbhotplugd/policy.toml"); err != nil {
		t.Error("dpkg -r removed the admin's policy")
	}
	sh(t, "dpkg", "-P", "usbhotplugd")
	if _, err := os.Stat("/etc/usbhotplugd/policy.toml"); err == nil {
		t.Error("the policy is still there after a purge")
	}
	if _, err := os.Lstat(wants); err == nil {
		t.Error("the unit is still enabled after a purge")
	}
}
