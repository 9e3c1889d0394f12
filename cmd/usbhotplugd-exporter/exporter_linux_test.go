package main

import (
	"bufio"
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/rs/zerolog"

	"github.com/usbhotplugd/usbhotplugd/internal/daemon"
	"github.com/usbhotplugd/usbhotplugd/internal/metrics/metricstest"
)

func scrape(tb testing.TB, url string) []byte {
	tb.Helper()
	resp, err := http.Get(url)
	if err != nil {
		tb.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil || resp.StatusCode != http.StatusOK {
		tb.Fatalf("GET %s: %v %v\n%s", url, resp.Status, err, b)
	}
	if ct := resp.Header.Get("Content-Type"); !strings.HasPrefix(ct, "text/plain") {
		tb.Errorf("Content-Type %q, want the text format", ct)
	}
	return b
}

func exporterServer(tb testing.TB, stateDir string) *httptest.Server {
	srv := httptest.NewServer(handler(options{stateDir: stateDir, timeout: 10 * time.Second}, zerolog.Nop()))
	tb.Cleanup(srv.Close)
	return srv
}

// A scrape over HTTP against the agent running on the real xenstored: the
// exposition parses, follows the conventions, says what the agent did,
// and carries the same families as the agent's textfile.
func TestScrapeRunningAgent(t *testing.T) {
	h := newFleetHost(t, 1, 2)
	textfile := filepath.Join(h.dir, "usbhotplugd.prom")
	h.startAgent("--metrics-textfile", textfile)
	srv := exporterServer(t, h.stateDir)
	mfs := metricstest.Parse(t, scrape(t, srv.URL+"/metrics"))
	metricstest.CheckNames(t, mfs)
	for _, c := range []struct {
		name   string
		labels map[string]string
		want   float64
	}{
		{"usbhotplugd_up", nil, 1},
		{"usbhotplugd_devices", map[string]string{"state": "attached"}, 2},
		{"usbhotplugd_decisions_total", map[string]string{"action": "attached", "rule": "dev1"}, 1},
		{"usbhotplugd_attach_duration_seconds", nil, 2},
		{"usbhotplugd_xenstore_connected", nil, 1},
		{"usbhotplugd_policy_last_reload_success", nil, 1},
	} {
		if got := metricstest.Value(t, mfs, c.name, c.labels); got != c.want {
			t.Errorf("%s%v = %v, want %v", c.name, c.labels, got, c.want)
		}
	}
	for _, n := range []string{"go_goroutines", "process_resident_memory_bytes", "usbhotplugd_agent_request_duration_seconds", "usbhotplugd_build_info"} {
		if _, ok := mfs[n]; !ok {
			t.Errorf("%s missing", n)
		}
	}
	file := awaitTextfile(t, h.ctx, textfile, `usbhotplugd_devices{state="attached"} 2`)
	sameFamilies(t, metricstest.Parse(t, file), mfs)
	// Every metric the shipped alert rules use is served, or is one the
	// agent keeps with no series yet (no step has failed).
	empty := map[string]bool{}
	c, err := daemon.Dial(h.ctx, h.stateDir)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	resp, err := c.Call(daemon.Request{Request: daemon.ReqMetrics})
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range resp.Metrics {
		empty[f.Name] = len(f.Series) == 0 && f.Histogram == nil
	}
	rules, err := os.ReadFile("../../packaging/prometheus/usbhotplugd-alerts.yml")
	if err != nil {
		t.Fatal(err)
	}
	for _, n := range regexp.MustCompile(`usbhotplugd_[a-z_]+`).FindAllString(string(rules), -1) {
		if _, ok := mfs[n]; !ok && !empty[n] {
			t.Errorf("the alert rules use %s, which the exporter does not serve", n)
		}
	}
}

// awaitTextfile waits until the agent's textfile says want.
func awaitTextfile(t *testing.T, ctx context.Context, path, want string) []byte {
	t.Helper()
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	for {
		b, _ := os.ReadFile(path)
		if strings.Contains(string(b), want) {
			return b
		}
		select {
		case <-tick.C:
		case <-ctx.Done():
			t.Fatalf("the textfile never said %q:\n%s", want, b)
		}
	}
}

// sameFamilies: every family of the textfile is served with the same
// type, help and label names.
func sameFamilies(t *testing.T, file, served map[string]*dto.MetricFamily) {
	t.Helper()
	labels := func(mf *dto.MetricFamily) []string {
		var out []string
		for _, m := range mf.GetMetric() {
			for _, l := range m.GetLabel() {
				if !slices.Contains(out, l.GetName()) {
					out = append(out, l.GetName())
				}
			}
		}
		slices.Sort(out)
		return out
	}
	for n, f := range file {
		s, ok := served[n]
		switch {
		case !ok:
			t.Errorf("%s: in the textfile, not served", n)
		case s.GetType() != f.GetType() || s.GetHelp() != f.GetHelp():
			t.Errorf("%s: served as %v %q, the textfile has %v %q", n, s.GetType(), s.GetHelp(), f.GetType(), f.GetHelp())
		case !slices.Equal(labels(s), labels(f)):
			t.Errorf("%s: served with labels %v, the textfile has %v", n, labels(s), labels(f))
		}
	}
}

// With no agent, a scrape still answers: usbhotplugd_up 0 and the
// exporter's own metrics, so the "agent down" alert fires.
func TestAgentDown(t *testing.T) {
	srv := exporterServer(t, t.TempDir())
	mfs := metricstest.Parse(t, scrape(t, srv.URL+"/metrics"))
	metricstest.CheckNames(t, mfs)
	if got := metricstest.Value(t, mfs, "usbhotplugd_up", nil); got != 0 {
		t.Errorf("usbhotplugd_up %v, want 0", got)
	}
	if _, ok := mfs["usbhotplugd_devices"]; ok {
		t.Error("agent metrics served with no agent")
	}
	if _, ok := mfs["go_goroutines"]; !ok {
		t.Error("the exporter's own metrics missing")
	}
}

// Without systemd's socket or --listen there is nothing to serve on: a
// clear error, not a port of its own choosing.
func TestNoListener(t *testing.T) {
	t.Setenv("LISTEN_FDS", "")
	t.Setenv("LISTEN_PID", "")
	err := run(context.Background(), nil, io.Discard, io.Discard)
	if !errors.Is(err, errNoListener) {
		t.Fatalf("got %v, want %v", err, errNoListener)
	}
	if err := run(context.Background(), []string{"stray"}, io.Discard, io.Discard); err == nil || !strings.Contains(err.Error(), "stray") {
		t.Errorf("an argument: %v", err)
	}
}

// The binary serves on the TCP socket handed over as systemd does it
// (fd 3, LISTEN_FDS=1, LISTEN_PID its own), and stops on SIGTERM.
func TestSocketActivation(t *testing.T) {
	bin := filepath.Join(t.TempDir(), "usbhotplugd-exporter")
	if out, err := exec.Command("go", "build", "-o", bin, ".").CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	f, err := ln.(*net.TCPListener).File()
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	// exec keeps the shell's pid, which is what LISTEN_PID must name.
	cmd := exec.CommandContext(ctx, "/bin/sh", "-c", `LISTEN_PID=$$ LISTEN_FDS=1 exec "$0" --state-dir "$1"`, bin, t.TempDir())
	cmd.ExtraFiles = []*os.File{f}
	stderr, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	f.Close()
	ln.Close() // the child holds its own copy
	serving := make(chan struct{})
	go func() {
		sc := bufio.NewScanner(stderr)
		said := false
		for sc.Scan() {
			if !said && strings.Contains(sc.Text(), "serving /metrics") {
				said = true
				close(serving)
			}
		}
	}()
	select {
	case <-serving:
	case <-ctx.Done():
		t.Fatal("the exporter never said it serves")
	}
	mfs := metricstest.Parse(t, scrape(t, "http://"+ln.Addr().String()+"/metrics"))
	if got := metricstest.Value(t, mfs, "usbhotplugd_up", nil); got != 0 {
		t.Errorf("usbhotplugd_up %v with no agent", got)
	}
	cmd.Process.Signal(syscall.SIGTERM)
	if err := cmd.Wait(); err != nil {
		t.Errorf("after SIGTERM: %v", err)
	}
}
