// Package xltest runs Debian's real xl 4.17 beside usbhotplugd in tests,
// on a host without a hypervisor: against a test's store socket, with a
// fixture tree mounted over /sys in a private mount namespace (xl has no
// sysfs option), the few hypervisor calls xl makes answered by a small
// preloaded shim (testdata/xlshim.c), and each guest's libxl
// configuration under /var/lib/xen. The shim hands each of xl's sysfs
// writes to the test's fake kernel as it is made, and gives xl the
// kernel's answer, as a real kernel would: the fixture's files are plain
// files.
package xltest
