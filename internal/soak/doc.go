// Package soak holds the soak test: the agent, as its own process on the
// real xenstored, plugged at, rebooted under, reloaded and killed with
// SIGKILL again and again, with the invariants checked after every
// restart. It has no code of its own outside the test.
package soak
