package agent

import (
	"slices"
	"testing"
)

// A root hub's pass is queued before the devices' already waiting: a
// controller just added is made inert before its ports' devices come.
func TestRootHubsGoFirst(t *testing.T) {
	a := New(Config{})
	for _, b := range []string{"1-2", "1-3", "usb3", "1-4", "usb4"} {
		a.enqueue(b, "add")
	}
	if want := []string{"usb4", "usb3", "1-2", "1-3", "1-4"}; !slices.Equal(a.queue, want) {
		t.Errorf("queue %v, want %v", a.queue, want)
	}
}
