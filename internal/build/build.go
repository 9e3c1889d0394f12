// Package build holds the version information stamped into the binary at
// link time with -ldflags -X.
package build

import "runtime"

// Set by the linker: -X github.com/usbhotplugd/usbhotplugd/internal/build.Version=...
var (
	Version = "dev"
	Commit  = "unknown"
)

// GoVersion is the Go toolchain the binary was built with.
func GoVersion() string { return runtime.Version() }
