package policygen

import "testing"

func TestSlugAndNames(t *testing.T) {
	if got := slug("  QEMU USB Hub (rev 2) "); got != "qemu-usb-hub-rev-2" {
		t.Errorf("slug: %q", got)
	}
	n := names{}
	if a, b, c := n.unique("x"), n.unique("x"), n.unique("x-2"); a != "x" || b != "x-2" || c != "x-2-2" {
		t.Errorf("names: %s %s %s", a, b, c)
	}
}
