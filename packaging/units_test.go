package packaging

import (
	"os"
	"os/exec"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/coreos/go-systemd/v22/unit"
)

// directives reads a unit file's directives by section ("Service",
// "Socket"…), each key's values in order, as systemd's syntax has them.
func directives(t *testing.T, path string) map[string]map[string][]string {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	secs, err := unit.DeserializeSections(f)
	if err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	out := map[string]map[string][]string{}
	for _, sec := range secs {
		if out[sec.Section] == nil {
			out[sec.Section] = map[string][]string{}
		}
		for _, e := range sec.Entries {
			out[sec.Section][e.Name] = append(out[sec.Section][e.Name], e.Value)
		}
	}
	return out
}

// The exporter's units: started by its socket only (the service has no
// [Install] of its own, and the package enables neither), the sandbox
// forbids opening any socket but AF_UNIX, and the user is in the control
// socket's read-only group as a supplementary group (the agent reads it
// from SO_PEERGROUPS), never by Group=: DynamicUser implies RemoveIPC,
// which would remove every IPC object of the host's adm group at stop.
func TestExporterUnits(t *testing.T) {
	sock := directives(t, "usbhotplugd-exporter.socket")
	if got := sock["Socket"]["ListenStream"]; !slices.Equal(got, []string{"10036"}) {
		t.Errorf("ListenStream %v, want the documented port 10036", got)
	}
	if got := sock["Install"]["WantedBy"]; !slices.Equal(got, []string{"sockets.target"}) {
		t.Errorf("socket WantedBy %v", got)
	}
	svc := directives(t, "usbhotplugd-exporter.service")
	if _, ok := svc["Install"]; ok {
		t.Error("the service has an [Install] section: it would be enabled without its socket")
	}
	if got, ok := svc["Service"]["Group"]; ok {
		t.Errorf("Group=%v: with DynamicUser's RemoveIPC, stopping the exporter removes that group's IPC objects", got)
	}
	for k, want := range map[string]string{"RestrictAddressFamilies": "AF_UNIX", "DynamicUser": "yes", "SupplementaryGroups": "adm",
		"PrivateNetwork": "yes", "CapabilityBoundingSet": "", "NoNewPrivileges": "yes", "ProtectSystem": "strict"} {
		if got := svc["Service"][k]; !slices.Equal(got, []string{want}) {
			t.Errorf("%s=%v, want %q", k, got, want)
		}
	}
	if got := svc["Service"]["ExecStart"]; len(got) != 1 || !strings.Contains(got[0], "--state-dir /run/usbhotplugd") || strings.Contains(got[0], "--listen") {
		t.Errorf("ExecStart %v: the socket, and the agent's state directory", got)
	}
	for name, u := range map[string]map[string]map[string][]string{"socket": sock, "service": svc} {
		if got := u["Unit"]["Documentation"]; len(got) != 1 || !strings.HasPrefix(got[0], "man:usbhotplugd-exporter(8) ") {
			t.Errorf("the %s's Documentation=%v does not name its man page first", name, got)
		}
	}
	nfpm, err := os.ReadFile("nfpm.yaml")
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range []string{"/usr/bin/usbhotplugd-exporter", "/lib/systemd/system/usbhotplugd-exporter.socket", "/lib/systemd/system/usbhotplugd-exporter.service"} {
		if !strings.Contains(string(nfpm), "dst: "+f+"\n") {
			t.Errorf("nfpm.yaml does not install %s", f)
		}
	}
	analyze, err := exec.LookPath("systemd-analyze")
	if err != nil {
		t.Skip("systemd-analyze not installed: the sandbox's exposure is not measured")
	}
	out, _ := exec.Command(analyze, "security", "--offline=true", "usbhotplugd-exporter.service").CombinedOutput()
	m := regexp.MustCompile(`Overall exposure level for usbhotplugd-exporter.service: ([0-9.]+) (\S+)`).FindSubmatch(out)
	if m == nil {
		t.Fatalf("no exposure level in:\n%s", out)
	}
	t.Logf("systemd-analyze security: exposure %s %s", m[1], m[2])
	if string(m[2]) != "SAFE" {
		t.Errorf("exposure %s %s, want SAFE", m[1], m[2])
	}
}
