package xenstore

import (
	"testing"
	"time"
)

// The pauses between a transaction's tries: none before the first retry,
// then doubling within [d/2, d], at most 32 ms, in all well under a
// second.
func TestRetryPause(t *testing.T) {
	var most time.Duration
	for try := range maxTxRetries {
		p := retryPause(try)
		switch {
		case try < 2 && p != 0:
			t.Errorf("try %d pauses %v", try, p)
		case try >= 2:
			d := time.Millisecond << min(try-2, 5)
			if p < d/2 || p > d {
				t.Errorf("try %d pauses %v, not within [%v, %v]", try, p, d/2, d)
			}
		}
		most += time.Millisecond << max(0, min(try-2, 5))
	}
	if most > time.Second {
		t.Errorf("the tries may wait %v in all", most)
	}
}
