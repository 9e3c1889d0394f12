package sim

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"sync"
)

// QMPError is what a simulated QEMU answers to a command it refuses, in
// QEMU's words.
type QMPError struct{ Class, Desc string }

func (e *QMPError) Error() string { return e.Class + ": " + e.Desc }

// A DeviceModel is a simulated QEMU for the USB commands libxl sends over
// QMP: emulated controllers (each with a bus "<id>.0" and its ports) and
// usb-host devices on them, refusing what QEMU refuses (a taken id, a bus
// or port that does not exist or is in use).
type DeviceModel struct {
	mu      sync.Mutex
	ports   map[string]int    // bus name → ports
	devices map[string]string // id → "bus/port" for USB devices, "" for controllers
	used    map[string]string // "bus/port" → id
}

// NewDeviceModel starts an empty simulated QEMU.
func NewDeviceModel() *DeviceModel {
	return &DeviceModel{ports: map[string]int{}, devices: map[string]string{}, used: map[string]string{}}
}

// controllerPorts is the number of ports of a QEMU USB controller model.
func controllerPorts(driver string) (int, bool) {
	switch driver {
	case "piix3-usb-uhci":
		return 2, true
	case "usb-ehci":
		return 6, true
	case "nec-usb-xhci":
		return 15, true
	}
	return 0, false
}

// Run implements the QMP commands device_add and device_del.
func (q *DeviceModel) Run(ctx context.Context, command string, args, out any) error {
	m, _ := args.(map[string]any)
	str := func(k string) string { s, _ := m[k].(string); return s }
	q.mu.Lock()
	defer q.mu.Unlock()
	switch command {
	case "device_add":
		id, driver := str("id"), str("driver")
		if _, dup := q.devices[id]; dup {
			return &QMPError{"GenericError", fmt.Sprintf("Duplicate device ID '%s' for device", id)}
		}
		if n, ok := controllerPorts(driver); ok {
			q.devices[id] = ""
			q.ports[id+".0"] = n
			return nil
		}
		if driver != "usb-host" {
			return &QMPError{"GenericError", fmt.Sprintf("'%s' is not a valid device model name", driver)}
		}
		bus, port := str("bus"), str("port")
		n, ok := q.ports[bus]
		if !ok {
			return &QMPError{"GenericError", fmt.Sprintf("Bus '%s' not found", bus)}
		}
		var p int
		if _, err := fmt.Sscan(port, &p); err != nil || p < 1 || p > n {
			return &QMPError{"GenericError", fmt.Sprintf("usb port %s (bus %s) not found (in use?)", port, strings.TrimSuffix(bus, ".0"))}
		}
		key := bus + "/" + port
		if _, inUse := q.used[key]; inUse {
			return &QMPError{"GenericError", fmt.Sprintf("usb port %s (bus %s) not found (in use?)", port, strings.TrimSuffix(bus, ".0"))}
		}
		q.devices[id], q.used[key] = key, id
		return nil
	case "device_del":
		id := str("id")
		where, ok := q.devices[id]
		if !ok {
			return &QMPError{"DeviceNotFound", fmt.Sprintf("Device '%s' not found", id)}
		}
		delete(q.devices, id)
		if where != "" {
			delete(q.used, where)
		} else {
			delete(q.ports, id+".0")
		}
		return nil
	case "qom-list":
		if str("path") != "/machine/peripheral" {
			return &QMPError{"DeviceNotFound", fmt.Sprintf("Device '%s' not found", str("path"))}
		}
		list := []map[string]string{}
		for id := range q.devices {
			list = append(list, map[string]string{"name": id, "type": "child<device>"})
		}
		return setOut(out, list)
	case "qom-get":
		id := strings.TrimPrefix(str("path"), "/machine/peripheral/")
		where, ok := q.devices[id]
		if !ok || where == "" {
			return &QMPError{"DeviceNotFound", fmt.Sprintf("Device '%s' not found", str("path"))}
		}
		bus, port, _ := strings.Cut(where, "/")
		switch str("property") {
		case "port":
			return setOut(out, port)
		case "parent_bus":
			return setOut(out, "/machine/peripheral/"+strings.TrimSuffix(bus, ".0")+"/"+bus)
		}
		return &QMPError{"GenericError", fmt.Sprintf("Property '%s' not found", str("property"))}
	}
	return &QMPError{"CommandNotFound", fmt.Sprintf("The command %s has not been found", command)}
}

// setOut decodes v into out the way a QMP client decodes a return value.
func setOut(out, v any) error {
	if out == nil {
		return nil
	}
	b, err := json.Marshal(v)
	if err != nil {
		return err
	}
	return json.Unmarshal(b, out)
}

// Devices lists the ids QEMU holds, for tests.
func (q *DeviceModel) Devices() []string {
	q.mu.Lock()
	defer q.mu.Unlock()
	var out []string
	for id := range q.devices {
		out = append(out, id)
	}
	return out
}
