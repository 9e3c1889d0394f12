package daemon

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"testing"

	"github.com/rs/zerolog"

	"github.com/usbhotplugd/usbhotplugd/internal/fakekernel"
)

// FuzzControlRequest: any line a peer sends gets one JSON answer, never a
// panic; ok is false exactly when an error is said; only root reloads.
func FuzzControlRequest(f *testing.F) {
	for _, s := range []string{`{"request":"status"}`, `{"request":"explain"}`, `{"request":"explain","busid":"1-2"}`,
		`{"request":"explain","busid":"../../x"}`, `{"request":"watch"}`, `{"request":"reload"}`, `{"request":"metrics"}`, `{"request":""}`,
		`{"request":"status","busid":7}`, `[]`, `null`, `{"request":"status"} trailing`, "\x00", `{"REQUEST":"status"}`} {
		f.Add([]byte(s), false)
		f.Add([]byte(s), true)
	}
	dir := f.TempDir()
	root := filepath.Join(dir, "sys")
	if err := fakekernel.Standard(root); err != nil {
		f.Fatal(err)
	}
	pol := filepath.Join(dir, "policy.toml")
	if err := os.WriteFile(pol, []byte(goodPolicy), 0o644); err != nil {
		f.Fatal(err)
	}
	cfg := Config{PolicyPath: pol, StateDir: filepath.Join(dir, "state"), Sysfs: root, Log: zerolog.Nop()}
	cfg.setDefaults()
	d, closeAll, err := start(cfg)
	if err != nil {
		f.Fatal(err)
	}
	f.Cleanup(closeAll)
	f.Fuzz(func(t *testing.T, line []byte, admin bool) {
		r := roleReader
		if admin {
			r = roleAdmin
		}
		var req Request
		isReload := json.Unmarshal(line, &req) == nil && req.Request == ReqReload
		resp, watch, _ := d.request(context.Background(), line, r)
		if watch {
			return
		}
		b, err := json.Marshal(resp)
		if err != nil {
			t.Fatalf("%q: the answer does not marshal: %v", line, err)
		}
		if resp.OK == (resp.Error != "") || resp.OK == (resp.ErrorCode != "") {
			t.Errorf("%q: %s", line, b)
		}
		if isReload && !admin && resp.ErrorCode != CodeForbidden {
			t.Errorf("%q by a reader: %s", line, b)
		}
	})
}
