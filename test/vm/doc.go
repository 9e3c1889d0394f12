// Package vmtest runs usbhotplugd inside a real Linux kernel under QEMU
// and checks what it does to real devices.
//
// The guest is Debian's own kernel (fetched with apt and cached), the USB
// stack's modules, two modules built against Debian's headers (a usbback
// stand-in, usbback/, and a driver whose probe of QEMU's usb-serial is
// slow, slowprobe/), busybox, the static agent and a small PID 1 (guest/).
// The store is the real C xenstored on the host; the guest reaches it
// through virtio-serial ports, each a byte stream to the daemon's socket,
// which the agent opens as dom0 opens /dev/xen/xenbus. The simulated
// backends and domains (internal/sim) run on the host on that same store.
// Devices are plugged and unplugged over QMP.
//
// A scenario (scenarios/*.scn) is data, one step a line; Run executes one
// in a fresh VM, checking the invariants I1–I7 on the real sysfs and
// xenstore after every step.
//
// The same scenarios run on the fake kernel (Env.Fake: internal/fakekernel
// in this process, the agent as `usbhotplugd run` runs it, the same store
// and steps; the xl-like commands through the same assign.Host calls, HVM
// guests' device models on the host's QMP sockets), and
// TestFakeKernelCalibrated compares each device's usb uevents and the
// final drivers and ports with what the real kernel gave
// (testdata/calibration, written by `vmtest -calibrate`; all scenarios
// but quick.scn, the storm scenarios and those that mount a disk, suspend dom0,
// probe a device slowly or have EHCI companions, and
// config-rules-authorize.scn, see calibrate.go), so that
// the fast tests, which run on
// the fake kernel, stay true to the real one.
//
// The guest's control port speaks JSON lines: a request
// {"op","args","data"} gets a reply {"ok","err","out"}.
package vmtest
