package policygen

import "github.com/usbhotplugd/usbhotplugd/internal/atomicfile"

// ErrExists: the file to write is there already, and replacing it was not
// asked for.
var ErrExists = atomicfile.ErrExists

// WriteFile writes data to path atomically (a hidden temporary file in the
// same directory, which policy loading skips, synced and renamed), so a
// reader sees the old file or the new one, never half of one. Without
// replace, an existing path is left alone and ErrExists returned.
func WriteFile(path string, data []byte, replace bool) error {
	return atomicfile.Write(path, data, 0o644, replace)
}
