package agent

import (
	"strconv"
	"strings"

	"github.com/usbhotplugd/usbhotplugd/internal/assign"
	"github.com/usbhotplugd/usbhotplugd/internal/usbsysfs"
	"github.com/usbhotplugd/usbhotplugd/policy"
)

// A backendChange is what one backend watch event means to the agent.
type backendChange int

const (
	changeNone  backendChange = iota // another device class, or a key that holds no port
	changePort                       // one port's value: read that port
	changeAll                        // a controller came or went, or unknown: read every port
	changeState                      // a pv backend's state: its guest's devices waiting for the frontend are tried now
)

const backendRoot = "/local/domain/0/backend/"

// controllerKeys are the keys of a PVUSB backend that say nothing about
// which device is at which port.
var controllerKeys = map[string]bool{
	"state": true, "online": true, "hotplug-status": true, "frontend": true,
	"frontend-id": true, "usb-ver": true, "num-ports": true, "type": true,
}

// classifyBackend tells what a change at path under the backend tree
// means; for a port, where it is. The agent's own attaches fire this
// watch several times each, so the common case (a port or a state key)
// must not cost a read of every domain's ports.
func classifyBackend(path string) (backendChange, assign.Assignment) {
	rest, ok := strings.CutPrefix(path, backendRoot)
	if !ok {
		return changeAll, assign.Assignment{}
	}
	parts := strings.Split(rest, "/")
	var typ string
	switch parts[0] {
	case "vusb":
		typ = policy.TypePV
	case "qusb":
		typ = policy.TypeQUSB
	default:
		return changeNone, assign.Assignment{} // disks, networks, consoles
	}
	if len(parts) < 4 {
		return changeAll, assign.Assignment{} // a domain's or a controller's whole subtree
	}
	domid, err1 := strconv.ParseUint(parts[1], 10, 32)
	ctrl, err2 := strconv.Atoi(parts[2])
	if err1 != nil || err2 != nil || ctrl < 0 {
		return changeAll, assign.Assignment{}
	}
	if len(parts) == 4 && parts[3] == "state" && typ == policy.TypePV {
		// usbback serves a controller's ports once its frontend has
		// connected: a device that waited for that is tried at once.
		return changeState, assign.Assignment{Domid: uint32(domid), Controller: ctrl, Type: typ}
	}
	if len(parts) == 4 && controllerKeys[parts[3]] {
		return changeNone, assign.Assignment{}
	}
	if len(parts) == 5 && parts[3] == "port" {
		port, err := strconv.Atoi(parts[4])
		if err != nil || port < 1 || port > policy.MaxPVPorts {
			return changeAll, assign.Assignment{}
		}
		return changePort, assign.Assignment{Domid: uint32(domid), Controller: ctrl, Port: port, Type: typ}
	}
	return changeAll, assign.Assignment{}
}

// notePorts records what some ports now hold (BusID empty: nothing), as
// read from port generation since on, and returns the busids that moved:
// the one that left each port and the one that came. A busid the worker
// moved after since keeps what the worker knows (see noteAssignedSince),
// but is looked at where the read differs: the read may be the newer
// (xl, which picks its port outside its transaction, wrote over the
// worker's attach), and a pass reads the store.
func (a *Agent) notePorts(ports []assign.Assignment, since uint64) []string {
	a.mu.Lock()
	defer a.mu.Unlock()
	fresh := func(b string) bool { return a.touched[b] > since }
	var moved []string
	for _, x := range ports {
		for b, y := range a.ports {
			if y.Domid == x.Domid && y.Controller == x.Controller && y.Port == x.Port && b != x.BusID {
				if !fresh(b) {
					delete(a.ports, b)
				}
				moved = append(moved, b)
			}
		}
		if x.BusID == "" || usbsysfs.ValidBusID(x.BusID) != nil {
			continue
		}
		if fresh(x.BusID) {
			if y, ok := a.ports[x.BusID]; !ok || y != x {
				moved = append(moved, x.BusID)
			}
			continue
		}
		if y, ok := a.ports[x.BusID]; !ok || y != x {
			a.ports[x.BusID] = x
			moved = append(moved, x.BusID)
		}
	}
	return moved
}

// isVMName says path is a domain's name under /vm (/vm/UUID/name): xl
// rename writes it with /local/domain/DOMID/name, in one transaction, and
// so does a migration's arrival when NAME--incoming becomes NAME. No
// domain watch fires then; the agent's watch on /vm catches it.
func isVMName(path string) bool {
	rest, ok := strings.CutPrefix(path, "/vm/")
	if !ok {
		return false
	}
	uuid, key, ok := strings.Cut(rest, "/")
	return ok && uuid != "" && key == "name"
}
