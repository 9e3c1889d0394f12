package main

import (
	"context"
	"encoding/binary"
	"fmt"
	"io"
	"os"
	"sort"
	"strings"
	"time"

	"github.com/usbhotplugd/usbhotplugd/internal/xenstore"
)

const resetReqID = 0x75736200 // "usb\0"

// resetPort removes the watches and transactions a previous user of the
// port left on its store connection (the kernel's xenbus device does this
// when its file is closed), and drains what was queued for that user.
func resetPort(name string) error {
	f, err := openPort(name)
	if err != nil {
		return err
	}
	defer f.Close()
	f.SetDeadline(time.Now().Add(30 * time.Second))
	var hdr [16]byte
	binary.LittleEndian.PutUint32(hdr[0:], uint32(xenstore.TypeResetWatches))
	binary.LittleEndian.PutUint32(hdr[4:], resetReqID)
	binary.LittleEndian.PutUint32(hdr[12:], 1)
	if _, err := f.Write(append(hdr[:], 0)); err != nil {
		return fmt.Errorf("reset %s: %w", name, err)
	}
	for {
		if _, err := io.ReadFull(f, hdr[:]); err != nil {
			return fmt.Errorf("reset %s: %w", name, err)
		}
		n := binary.LittleEndian.Uint32(hdr[12:])
		if _, err := io.CopyN(io.Discard, f, int64(n)); err != nil {
			return fmt.Errorf("reset %s: %w", name, err)
		}
		if binary.LittleEndian.Uint32(hdr[0:]) == uint32(xenstore.TypeResetWatches) && binary.LittleEndian.Uint32(hdr[4:]) == resetReqID {
			return nil
		}
	}
}

const vusbRoot = "/local/domain/0/backend/vusb"
const portsParam = "/sys/module/usbback/parameters/ports"

// backendPorts plays usbback's xenbus watch: every change under the pv
// backends rewrites the stand-in's port list.
func backendPorts() {
	if err := resetPort(portBackend); err != nil {
		fmt.Fprintf(os.Stderr, "vmguest: %v\n", err)
		return
	}
	f, err := openPort(portBackend)
	if err != nil {
		fmt.Fprintf(os.Stderr, "vmguest: %v\n", err)
		return
	}
	xs := xenstore.NewConn(f)
	ctx := context.Background()
	evs, err := xs.Watch(ctx, vusbRoot, "usbback")
	if err != nil {
		fmt.Fprintf(os.Stderr, "vmguest: watch %s: %v\n", vusbRoot, err)
		return
	}
	last := "\x00"
	for range evs {
		// An attach writes many nodes, each a watch event: the ones
		// queued meanwhile are taken together, so that the list follows
		// the store as closely as usbback's in-kernel watch does, not
		// seconds behind on a busy host (an attach's bind would then come
		// before the port and be refused).
		if !drain(evs) {
			return
		}
		cur := portList(ctx, xs)
		if cur == last {
			continue
		}
		if err := os.WriteFile(portsParam, []byte(cur), 0); err != nil {
			fmt.Fprintf(os.Stderr, "vmguest: %s: %v\n", portsParam, err)
			continue
		}
		last = cur
	}
}

// drain takes every event already queued; false when the watch ended.
func drain[T any](evs <-chan T) bool {
	for {
		select {
		case _, ok := <-evs:
			if !ok {
				return false
			}
		default:
			return true
		}
	}
}

func portList(ctx context.Context, xs *xenstore.Conn) string {
	var out []string
	doms, _ := xs.Directory(ctx, vusbRoot)
	for _, d := range doms {
		devs, _ := xs.Directory(ctx, vusbRoot+"/"+d)
		for _, dev := range devs {
			b := vusbRoot + "/" + d + "/" + dev
			ver, _ := xs.Read(ctx, b+"/usb-ver")
			ports, _ := xs.Directory(ctx, b+"/port")
			for _, p := range ports {
				v, err := xs.Read(ctx, b+"/port/"+p)
				if err == nil && len(v) > 0 {
					out = append(out, string(v)+"@"+strings.TrimSpace(string(ver)))
				}
			}
		}
	}
	sort.Strings(out)
	return strings.Join(out, " ")
}
