package agent

import "github.com/usbhotplugd/usbhotplugd/internal/assign"

// maxLeft bounds how many departed devices the agent remembers.
const maxLeft = 1024

// A leftPort is where a device was when it left.
type leftPort struct {
	domain string
	at     assign.Assignment
	seq    uint64
}

// identity names a device across plugs: its id and serial, or, without a
// serial, its id and the socket it is in.
func identity(id, serial, busid string) string {
	if serial != "" {
		return id + "/" + serial
	}
	return id + "@" + busid
}

// rememberLeft notes where a device the agent had attached was when it
// left, so that plugged back it goes to the same port if it is free: a
// guest that saw it at that port sees it again there.
func (a *Agent) rememberLeft(key, domain string, at assign.Assignment) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.seq++
	a.left[key] = leftPort{domain: domain, at: at, seq: a.seq}
	if len(a.left) > maxLeft {
		oldest, min := "", a.seq
		for k, v := range a.left {
			if v.seq < min {
				oldest, min = k, v.seq
			}
		}
		delete(a.left, oldest)
	}
}
