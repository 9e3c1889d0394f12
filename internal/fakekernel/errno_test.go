package fakekernel_test

import (
	"bufio"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"

	"github.com/usbhotplugd/usbhotplugd/internal/fakekernel"
	"github.com/usbhotplugd/usbhotplugd/internal/usbsysfs"
)

// realHost is a copy of a real kernel's sysfs after coldplug, with the
// fake kernel over it.
func realHost(t *testing.T) (*usbsysfs.FS, *fakekernel.Kernel) {
	t.Helper()
	root := filepath.Join(fakekernel.TempDir(t), "sys")
	if err := fakekernel.Copy("../usbsysfs/testdata/real/sys", root); err != nil {
		t.Fatal(err)
	}
	k := fakekernel.NewKernel(root)
	return usbsysfs.NewFS(root).WithWriter(k), k
}

type row struct {
	op, file, data string
	errno          syscall.Errno // 0 for success
}

// readTable reads the rows of the real kernel's errno table.
func readTable(t testing.TB) []row {
	f, err := os.Open("testdata/errno-table.md")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	names := map[string]syscall.Errno{"ENODEV": syscall.ENODEV, "EBUSY": syscall.EBUSY, "EINVAL": syscall.EINVAL}
	var rows []row
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		c := strings.Split(sc.Text(), "|")
		if len(c) != 9 || !strings.HasPrefix(strings.TrimSpace(c[2]), "`…/") {
			continue
		}
		cell := func(i int) string { return strings.Trim(strings.TrimSpace(c[i]), "`") }
		data, err := strconv.Unquote(cell(3))
		if err != nil {
			t.Fatalf("row %s: bytes %s: %v", cell(1), cell(3), err)
		}
		r := row{op: cell(1), file: strings.TrimPrefix(cell(2), "…/"), data: data}
		if e := cell(5); e != "-" {
			name, _, _ := strings.Cut(e, " ")
			if r.errno = names[name]; r.errno == 0 {
				t.Fatalf("row %s: errno %q", r.op, e)
			}
		}
		rows = append(rows, r)
	}
	if len(rows) < 50 {
		t.Fatalf("%d rows read from the table", len(rows))
	}
	return rows
}

// after are checks of the tree after some rows: what the real kernel did.
var after = map[string]func(t *testing.T, f *usbsysfs.FS){
	"unbind-usbhid-kbdif-nonl":     driverIs("1-1:1.0", ""),
	"bind-usbhid-kbdif-nl":         driverIs("1-1:1.0", "usbhid"),
	"bind-usbstorage-kbdif-bound":  driverIs("1-1:1.0", "usbhid"),
	"bind-usbhid-nodriver-if":      driverIs("4-2:1.0", ""),
	"drivers_probe-kbdif":          driverIs("1-1:1.0", "usbhid"),
	"unbind-usb-generic-tablet":    interfaces("1-2"),
	"bind-usb-generic-tablet":      interfaces("1-2", "1-2:1.0=usbhid"),
	"authorized-0-tablet":          interfaces("1-2"),
	"authorized-1-tablet":          interfaces("1-2", "1-2:1.0=usbhid"),
	"bConfigurationValue-0-tablet": interfaces("1-2"),
	"bConfigurationValue-1-tablet": interfaces("1-2", "1-2:1.0=usbhid"),
	"unbind-hub-hubif":             present("1-3", "1-3.1", "1-3.2", "1-3.3"),
	"bind-hub-hubif":               present("1-3", "1-3.1", "1-3.2", "1-3.3"),
	"synth-remove-device":          interfaces("1-2", "1-2:1.0=usbhid"),
	"synth-unbind-interface":       driverIs("1-1:1.0", "usbhid"),
}

func driverIs(intf, want string) func(*testing.T, *usbsysfs.FS) {
	return func(t *testing.T, f *usbsysfs.FS) {
		if got, err := f.Driver(intf); err != nil || got != want {
			t.Errorf("%s has driver %q (%v), want %q", intf, got, err, want)
		}
	}
}

func interfaces(busid string, want ...string) func(*testing.T, *usbsysfs.FS) {
	return func(t *testing.T, f *usbsysfs.FS) {
		ifs, err := f.Interfaces(busid)
		if err != nil {
			t.Fatal(err)
		}
		var got []string
		for _, in := range ifs {
			got = append(got, in.Name+"="+in.Driver)
		}
		if !slices.Equal(got, want) {
			t.Errorf("%s has interfaces %v, want %v", busid, got, want)
		}
	}
}

// present checks that a hub is there, and its children are when its hub
// interface is bound and are not when it is not.
func present(hub string, children ...string) func(*testing.T, *usbsysfs.FS) {
	return func(t *testing.T, f *usbsysfs.FS) {
		bound := f.BoundTo(hub+":1.0", "hub")
		for _, c := range children {
			if f.Present(c) != bound {
				t.Errorf("hub %s bound %v, but child %s present %v", hub, bound, c, f.Present(c))
			}
		}
	}
}

// Every row of the real kernel's table, in its order, on the host it was
// captured on: the fake kernel answers the same errno and leaves the tree
// as the real one did.
func TestErrnoTable(t *testing.T) {
	f, k := realHost(t)
	for _, r := range readTable(t) {
		p := filepath.Join(f.Root(), "bus/usb", r.file)
		if strings.HasSuffix(p, "/port/uevent") {
			os.MkdirAll(filepath.Dir(p), 0o755) // the capture kept no port directories
		}
		err := k.WriteAttr(p, []byte(r.data))
		var got syscall.Errno
		if err != nil && !errors.As(err, &got) {
			t.Errorf("%s: %v is no errno", r.op, err)
			continue
		}
		if got != r.errno {
			t.Errorf("%s: write %q to %s: errno %v, the real kernel's %v", r.op, r.data, r.file, got, r.errno)
		}
		if check := after[r.op]; check != nil {
			t.Run(r.op, func(t *testing.T) { check(t, f) })
		}
	}
}
