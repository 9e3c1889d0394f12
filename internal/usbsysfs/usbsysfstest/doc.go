// Package usbsysfstest builds sysfs fixture trees and runs a fake kernel
// over them: writes to bind and unbind files move the driver links at once
// and fail with the errnos a real kernel returns (see the captures in
// shared/real-kernel/errno-table.md).
package usbsysfstest
