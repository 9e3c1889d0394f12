//go:build race

package policy_test

// raceEnabled: the race detector makes the large-policy test ten times
// slower; it runs on fewer rules there.
const raceEnabled = true
