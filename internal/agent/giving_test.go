package agent

import (
	"slices"
	"testing"

	"github.com/usbhotplugd/usbhotplugd/internal/usbsysfs"
)

// writes records what toDom0 writes to sysfs.
type writes []string

func (w *writes) SetInterfaceAuthorized(intf string, on bool) error {
	*w = append(*w, "authorized "+intf)
	return nil
}

func (w *writes) Probe(intf string) error {
	*w = append(*w, "probe "+intf)
	return nil
}

// A give-back cut short is finished with what it lacks: an interface left
// authorized without a driver is only offered, one still inert is
// authorized first, and one with its driver is left alone.
func TestToDom0Again(t *testing.T) {
	d := usbsysfs.Device{BusID: "1-6", Interfaces: []usbsysfs.Interface{
		{Name: "1-6:1.0", Authorized: true},
		{Name: "1-6:1.1"},
		{Name: "1-6:1.2", Authorized: true, Driver: "usbhid"},
	}}
	var w writes
	if err := toDom0(&w, d, true); err != nil {
		t.Fatal(err)
	}
	want := writes{"probe 1-6:1.0", "authorized 1-6:1.1", "probe 1-6:1.1"}
	if !slices.Equal(w, want) {
		t.Errorf("writes %q, want %q", w, want)
	}
}
