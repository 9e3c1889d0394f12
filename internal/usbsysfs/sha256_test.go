package usbsysfs

import (
	stdsha256 "crypto/sha256"
	"math/rand/v2"
	"testing"
)

// The descriptor hash is USBGuard's SHA-256: every length around the
// block and padding boundaries, written whole and in pieces, agrees with
// crypto/sha256.
func TestSHA256(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	for n := range 300 {
		b := make([]byte, n)
		for i := range b {
			b[i] = byte(r.Uint32())
		}
		want := stdsha256.Sum256(b)
		if got := sum256(b); got != want {
			t.Fatalf("%d bytes: %x, want %x", n, got, want)
		}
		h := newHash256()
		for rest := b; len(rest) > 0; {
			k := min(len(rest), 1+r.IntN(70))
			h.Write(rest[:k])
			rest = rest[k:]
		}
		if got := h.Sum(); got != want {
			t.Fatalf("%d bytes in pieces: %x, want %x", n, got, want)
		}
	}
}
