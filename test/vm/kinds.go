package vmtest

import (
	"fmt"
	"strconv"
	"strings"

	"github.com/usbhotplugd/usbhotplugd/internal/fakekernel"
)

// A fakeKind is what QEMU's device of one driver looks like to the
// kernel (from the VM's own trace: descriptors, classes, the dom0 driver
// each interface gets), for the fake kernel to plug the same.
type fakeKind struct {
	vendor, product, class, name string
	maxSpeed                     int // Mb/s: 12 full, 480 high, 5000 SuperSpeed
	wakeup                       bool
	intfs                        []fakekernel.Intf
	claimed                      []int               // interfaces the first one's driver claims
	configs                      [][]fakekernel.Intf // configurations 2 and on
}

var fakeKinds = map[string]fakeKind{
	"usb-kbd":     {"0627", "0001", "00", "QEMU USB Keyboard", 480, true, []fakekernel.Intf{{Class: "03", SubClass: "01", Protocol: "01", Driver: "usbhid"}}, nil, nil},
	"usb-mouse":   {"0627", "0001", "00", "QEMU USB Mouse", 480, true, []fakekernel.Intf{{Class: "03", SubClass: "01", Protocol: "02", Driver: "usbhid"}}, nil, nil},
	"usb-tablet":  {"0627", "0001", "00", "QEMU USB Tablet", 480, true, []fakekernel.Intf{{Class: "03", SubClass: "00", Protocol: "00", Driver: "usbhid"}}, nil, nil},
	"usb-storage": {"46f4", "0001", "00", "QEMU USB HARDDRIVE", 5000, false, []fakekernel.Intf{{Class: "08", SubClass: "06", Protocol: "50", Driver: "usb-storage"}}, nil, nil},
	"usb-hub":     {"0409", "55aa", "09", "QEMU USB Hub", 12, true, fakekernel.Hub, nil, nil},
	"usb-uas":     {"46f4", "0003", "00", "USB Attached SCSI HBA", 5000, false, []fakekernel.Intf{{Class: "08", SubClass: "06", Protocol: "62", Driver: "uas"}}, nil, nil},
	"usb-ccid":    {"08e6", "4433", "00", "QEMU USB CCID", 12, true, []fakekernel.Intf{{Class: "0b", SubClass: "00", Protocol: "00"}}, nil, nil},
	// Only the slowprobe module has a driver for it (test/vm/slowprobe).
	"usb-serial": {"0403", "6001", "00", "QEMU USB SERIAL", 12, false, []fakekernel.Intf{{Class: "ff", SubClass: "ff", Protocol: "ff", Driver: "slowprobe"}}, nil, nil},
	// Its control interface's driver claims the streaming one.
	"usb-audio": {"46f4", "0002", "00", "QEMU USB Audio", 12, false, []fakekernel.Intf{
		{Class: "01", SubClass: "01", Protocol: "04", Driver: "snd-usb-audio"}, {Class: "01", SubClass: "02", Protocol: "00", Driver: "snd-usb-audio"}}, []int{1}, nil},
	// Of its two configurations the kernel chooses CDC Ethernet: a
	// control and a data interface, which cdc_ether claims with it. Its
	// second is RNDIS, whose two rndis_host takes alike.
	"usb-net": {"0525", "a4a2", "02", "RNDIS/QEMU USB Network Device", 12, false, []fakekernel.Intf{
		{Class: "02", SubClass: "06", Protocol: "00", Driver: "cdc_ether"}, {Class: "0a", SubClass: "00", Protocol: "00", Driver: "cdc_ether"}}, []int{1},
		[][]fakekernel.Intf{{{Class: "02", SubClass: "02", Protocol: "ff", Driver: "rndis_host"}, {Class: "0a", SubClass: "00", Protocol: "00", Driver: "rndis_host"}}}},
}

// fakeDevice is the fake kernel's device for a plug: its busid is the
// one the VM's kernel gives it (xHCI's SuperSpeed devices on its USB 3
// root hub, bus 2), its speed the lower of its own and its port's.
func fakeDevice(p Plug, portSpeed func(busid string) string) (fakekernel.Dev, error) {
	k, ok := fakeKinds[p.Driver]
	if !ok {
		return fakekernel.Dev{}, fmt.Errorf("%s: a device the fake kernel does not model", p.Driver)
	}
	ctrl, _, _ := strings.Cut(p.Get("bus"), ".")
	port := p.Get("port")
	bus := map[string]int{"xhci": 1, "ehci": 3, "uhci": 4}[ctrl]
	if bus == 0 {
		return fakekernel.Dev{}, fmt.Errorf("bus %q: no such controller", p.Get("bus"))
	}
	if bus == 1 && k.maxSpeed >= 5000 && !strings.Contains(port, ".") {
		bus = 2
	}
	busid := fmt.Sprintf("%d-%s", bus, port)
	speed := k.maxSpeed
	if s, err := strconv.Atoi(portSpeed(busid)); err == nil && s < speed {
		speed = s
	}
	intfs := append([]fakekernel.Intf(nil), k.intfs...)
	return fakekernel.Dev{BusID: busid, Vendor: k.vendor, Product: k.product, Class: k.class, Serial: p.Get("serial"),
		Manufacturer: "QEMU", Name: k.name, Speed: strconv.Itoa(speed), Wakeup: k.wakeup, Interfaces: intfs, Claimed: k.claimed, Configs: k.configs}, nil
}

func busOf(busid string) int {
	n, _ := strconv.Atoi(strings.SplitN(busid, "-", 2)[0])
	return n
}
