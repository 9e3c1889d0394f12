package devmodel

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/usbhotplugd/usbhotplugd/internal/qmp"
)

// The served device model answers QMP as QEMU does, through the client
// the agent uses: a controller and a usb-host on it are added, a taken
// port is refused with QEMU's class, and a closed model's socket is gone.
func TestServe(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	path := filepath.Join(t.TempDir(), "xen", "qmp-libxl-7")
	s, err := Serve(path)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := Serve(path); !errors.Is(err, ErrInUse) {
		t.Errorf("a second Serve on a live socket: %v, want ErrInUse", err)
	}
	c, err := qmp.Dial(ctx, path)
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Run(ctx, "device_add", map[string]any{"driver": "nec-usb-xhci", "id": "xenusb-0"}, nil); err != nil {
		t.Fatalf("controller: %v", err)
	}
	dev := map[string]any{"driver": "usb-host", "id": "xenusb-1-2", "bus": "xenusb-0.0", "port": "1", "hostbus": "1", "hostaddr": "2"}
	if err := c.Run(ctx, "device_add", dev, nil); err != nil {
		t.Fatalf("usb-host: %v", err)
	}
	dev["id"] = "xenusb-1-3"
	var qe *qmp.Error
	if err := c.Run(ctx, "device_add", dev, nil); !errors.As(err, &qe) || qe.Class != "GenericError" {
		t.Errorf("a taken port: %v, want QEMU's GenericError", err)
	}
	if err := c.Run(ctx, "device_del", map[string]any{"id": "xenusb-1-2"}, nil); err != nil {
		t.Errorf("device_del: %v", err)
	}
	c.Close()
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(path); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("the socket is left after Close: %v", err)
	}
}
