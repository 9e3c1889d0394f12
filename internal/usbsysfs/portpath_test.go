package usbsysfs

import (
	"regexp"
	"testing"
)

// isPCIAddr accepts what the form's regexp accepts, and only that.
func TestIsPCIAddr(t *testing.T) {
	form := regexp.MustCompile(`^[0-9a-f]{4,8}:[0-9a-f]{2}:[0-9a-f]{2}\.[0-7]$`)
	names := []string{"0000:00:14.0", "0000:00:14.7", "abcd:ef:09.3", "0000:00:14.8", "0000:00:14", "0000:00:14.00",
		"0000:00:1G.0", "0000:00:1A.0", "10000:e1:00.0", "ffffffff:00:14.0", "100000000:00:14.0", "000:00:14.0", ":00:14.0", "0000-00:14.0", "0000:00-14.0", "0000:00:14-0", "", "usb1", "1-1.6", "pci0000:00"}
	// Every one-byte change of a good address.
	for _, good := range []string{"0000:00:14.0", "10000:e1:00.0"} {
		for i := range len(good) {
			for _, c := range []byte("09afgAF:.-7x\x00\xff") {
				b := []byte(good)
				b[i] = c
				names = append(names, string(b))
			}
		}
	}
	for _, n := range names {
		if got, want := isPCIAddr(n), form.MatchString(n); got != want {
			t.Errorf("isPCIAddr(%q) = %v, want %v", n, got, want)
		}
	}
}
