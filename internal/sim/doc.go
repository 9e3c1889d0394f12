// Package sim is a simulated dom0 for replay, tests and benchmarks: it
// seeds xenstore the way a booted dom0 and `xl create` leave it, and (in
// later parts) runs the backend and frontend state machines of PVUSB.
package sim
