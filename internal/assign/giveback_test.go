package assign_test

import (
	"context"
	"errors"
	"syscall"
	"testing"

	"github.com/usbhotplugd/usbhotplugd/internal/fakekernel"
	"github.com/usbhotplugd/usbhotplugd/internal/usbsysfs"
	"github.com/usbhotplugd/usbhotplugd/internal/xenstore/xenstoretest"
)

// A give-back in which two interfaces' own drivers refuse them and the
// kernel is still probing the first of them when it is offered to its
// matching: the records stay, so that the next give-back binds by them
// and offers the other, which no one would offer once they were gone.
func TestGiveBackKeepsTheRecordsWhileAnOfferIsBusy(t *testing.T) {
	xenstoretest.ForEach(t, func(t *testing.T, s xenstoretest.Store) {
		ctx := context.Background()
		e := newEnv(t, s, true)
		hid := fakekernel.Intf{Class: "03", SubClass: "00", Protocol: "00", Driver: "usbhid"}
		err := (&fakekernel.Builder{Root: e.h.Sys.Root()}).Add(fakekernel.Dev{BusID: "1-7", DevNum: 30, Vendor: "1234", Product: "5678", Class: "00",
			Interfaces: []fakekernel.Intf{hid, hid, hid}}).Err()
		if err != nil {
			t.Fatal(err)
		}
		// As a detach leaves it: out of usbback, with its records.
		for _, n := range []string{"0", "1", "2"} {
			if err := e.xs.Write(ctx, "/libxl/usbback/1-7/1-7@1_"+n+"/driver_path", []byte("/sys/bus/usb/drivers/usbhid")); err != nil {
				t.Fatal(err)
			}
			if err := e.h.Sys.Unbind("1-7:1." + n); err != nil {
				t.Fatal(err)
			}
		}
		busy := true
		e.k.Fail = func(w fakekernel.Write) error {
			switch {
			case w.Path == "bus/usb/drivers/usbhid/bind" && (w.Data == "1-7:1.0" || w.Data == "1-7:1.1"):
				return syscall.EIO // the driver refuses them
			case w.Path == "bus/usb/drivers_probe" && w.Data == "1-7:1.0" && busy:
				return usbsysfs.ErrBusy // its probe outlasts the wait
			}
			return nil
		}
		err = e.h.Release(ctx, "1-7")
		if !errors.Is(err, usbsysfs.ErrBusy) {
			t.Fatalf("release: %v", err)
		}
		if has, err := e.h.HasRecord(ctx, "1-7"); err != nil || !has {
			t.Fatalf("the records went while 1-7:1.1 was neither bound nor offered: %v %v", has, err)
		}
		busy = false
		err = e.h.Release(ctx, "1-7")
		if has, herr := e.h.HasRecord(ctx, "1-7"); herr != nil || has {
			t.Errorf("the records stay after the second give-back (%v): %v %v", err, has, herr)
		}
		offered := map[string]bool{}
		for _, w := range e.k.Writes() {
			if w.Path == "bus/usb/drivers_probe" {
				offered[w.Data] = true
			}
		}
		if !offered["1-7:1.0"] || !offered["1-7:1.1"] {
			t.Errorf("offered to the kernel's matching: %v", offered)
		}
	})
}

// ReleaseUnbound that stops at an interface the kernel still probes
// offers nothing else: an interface whose recorded driver is not bound
// yet must not get the kernel's choice instead.
func TestReleaseUnboundOffersNothingWhileAnOfferIsBusy(t *testing.T) {
	xenstoretest.ForEach(t, func(t *testing.T, s xenstoretest.Store) {
		ctx := context.Background()
		e := newEnv(t, s, true)
		hid := fakekernel.Intf{Class: "03", SubClass: "00", Protocol: "00", Driver: "usbhid"}
		err := (&fakekernel.Builder{Root: e.h.Sys.Root()}).Add(fakekernel.Dev{BusID: "1-7", DevNum: 30, Vendor: "1234", Product: "5678", Class: "00",
			Interfaces: []fakekernel.Intf{hid, hid}}).Err()
		if err != nil {
			t.Fatal(err)
		}
		for _, n := range []string{"0", "1"} {
			if err := e.xs.Write(ctx, "/libxl/usbback/1-7/1-7@1_"+n+"/driver_path", []byte("/sys/bus/usb/drivers/usbhid")); err != nil {
				t.Fatal(err)
			}
			if err := e.h.Sys.Unbind("1-7:1." + n); err != nil {
				t.Fatal(err)
			}
		}
		// The bind of 1.0 by its record is busy: 1.1's is not made yet.
		e.k.Fail = func(w fakekernel.Write) error {
			if w.Path == "bus/usb/drivers/usbhid/bind" && w.Data == "1-7:1.0" {
				return usbsysfs.ErrBusy
			}
			return nil
		}
		if err := e.h.ReleaseUnbound(ctx, "1-7"); !errors.Is(err, usbsysfs.ErrBusy) {
			t.Fatalf("release: %v", err)
		}
		for _, w := range e.k.Writes() {
			if w.Path == "bus/usb/drivers_probe" {
				t.Errorf("offered to the kernel's matching while its own driver's bind was to come: %s", w.Data)
			}
		}
	})
}
