package uevent

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"sync"

	"github.com/usbhotplugd/usbhotplugd/internal/usbsysfs"
)

// Scan makes an add event for every device and interface present in sysfs,
// in coldplug order: parents before children, each device before its
// interfaces. The events carry the keys the kernel's own would (PRODUCT,
// TYPE, BUSNUM, DEVNUM, INTERFACE, DRIVER when bound) and SEQNUM 0. A
// device that cannot be read has none, and the events of the others come
// with the *usbsysfs.UnreadableError naming it.
func Scan(sys *usbsysfs.FS) ([]Event, error) {
	devs, scanErr := sys.Devices()
	if _, err := usbsysfs.Partial(scanErr); err != nil {
		return nil, err
	}
	out := make([]Event, 0, 3*len(devs))
	for _, d := range devs {
		dp, err := sys.DevPath(d.BusID)
		if errors.Is(err, fs.ErrNotExist) {
			continue // left while we read
		}
		if err != nil {
			return nil, err
		}
		product := fmt.Sprintf("%x/%x/%x", d.Vendor, d.Product, d.BCDDevice)
		typ := fmt.Sprintf("%d/%d/%d", d.Class, d.SubClass, d.Protocol)
		env := map[string]string{
			"ACTION": "add", "DEVPATH": dp, "SUBSYSTEM": "usb", "DEVTYPE": "usb_device",
			"PRODUCT": product, "TYPE": typ,
			"BUSNUM":  fmt.Sprintf("%03d", d.BusNum),
			"DEVNUM":  fmt.Sprintf("%03d", d.DevNum),
			"DEVNAME": fmt.Sprintf("bus/usb/%03d/%03d", d.BusNum, d.DevNum),
			"SEQNUM":  "0",
		}
		if drv, err := sys.Driver(d.BusID); err == nil && drv != "" {
			env["DRIVER"] = drv
		}
		out = append(out, Event{Action: "add", DevPath: dp, Subsystem: "usb", DevType: "usb_device", Env: env})
		for _, in := range d.Interfaces {
			ip := dp + "/" + in.Name
			ienv := map[string]string{
				"ACTION": "add", "DEVPATH": ip, "SUBSYSTEM": "usb", "DEVTYPE": "usb_interface",
				"PRODUCT": product, "TYPE": typ,
				"INTERFACE": fmt.Sprintf("%d/%d/%d", in.Class, in.SubClass, in.Protocol),
				"SEQNUM":    "0",
			}
			if in.Driver != "" {
				ienv["DRIVER"] = in.Driver
			}
			out = append(out, Event{Action: "add", DevPath: ip, Subsystem: "usb", DevType: "usb_interface", Env: ienv})
		}
	}
	return out, scanErr
}

// MaxQueued bounds the live messages a Stream holds while its consumer is
// busy. Past it, messages are dropped and one Overrun stands for them all,
// exactly as the kernel reports a full socket buffer.
const MaxQueued = 1 << 16

// A Stream delivers a coldplug scan and then live messages. Live messages
// that arrive during the scan and while the consumer is busy are queued in
// order; none is lost without an Overrun taking its place.
type Stream struct {
	cancel context.CancelFunc
	done   chan struct{}

	mu     sync.Mutex
	wake   chan struct{} // signalled when queue or err changes
	cold   []Message
	queue  []Message
	err    error // the Source's terminal error
	closed bool
}

// Coldplug starts receiving from src, then runs scan, and returns a Stream
// that yields the scanned events (marked Coldplug) before anything src
// delivered. Since src is read before the scan begins, a device that
// appears during the scan is seen at least once, and one that leaves
// during it is followed by its remove. The Stream owns a goroutine reading
// src until Close.
func Coldplug(ctx context.Context, src Source, scan func() ([]Event, error)) (*Stream, error) {
	ctx, cancel := context.WithCancel(ctx)
	s := &Stream{cancel: cancel, done: make(chan struct{}), wake: make(chan struct{}, 1)}
	go s.pump(ctx, src)
	evs, err := scan()
	if err != nil {
		s.Close()
		return nil, fmt.Errorf("uevent: coldplug scan: %w", err)
	}
	s.mu.Lock()
	s.cold = make([]Message, len(evs))
	for i, e := range evs {
		s.cold[i] = Message{Event: e, Coldplug: true}
	}
	s.mu.Unlock()
	return s, nil
}

func (s *Stream) pump(ctx context.Context, src Source) {
	defer close(s.done)
	for {
		m, err := src.Receive(ctx)
		s.mu.Lock()
		switch {
		case err != nil:
			s.err = err
		case len(s.queue) >= MaxQueued:
			if !s.queue[len(s.queue)-1].Overrun {
				s.queue[len(s.queue)-1] = Message{Overrun: true}
			}
		default:
			s.queue = append(s.queue, m)
		}
		s.mu.Unlock()
		select {
		case s.wake <- struct{}{}:
		default:
		}
		if err != nil {
			return
		}
	}
}

// Receive returns the next message: scanned events first, then live ones. It
// returns ctx.Err() when ctx ends, the Source's error once its queued
// messages are drained, and os.ErrClosed-like errors after Close.
func (s *Stream) Receive(ctx context.Context) (Message, error) {
	for {
		s.mu.Lock()
		if s.closed {
			s.mu.Unlock()
			return Message{}, errStreamClosed
		}
		if len(s.cold) > 0 {
			m := s.cold[0]
			s.cold = s.cold[1:]
			s.mu.Unlock()
			return m, nil
		}
		if len(s.queue) > 0 {
			m := s.queue[0]
			s.queue[0] = Message{}
			s.queue = s.queue[1:]
			s.mu.Unlock()
			return m, nil
		}
		if s.err != nil {
			err := s.err
			s.mu.Unlock()
			return Message{}, err
		}
		s.mu.Unlock()
		select {
		case <-s.wake:
		case <-ctx.Done():
			return Message{}, ctx.Err()
		}
	}
}

var errStreamClosed = errors.New("uevent: stream closed")

// Close stops the Stream's goroutine and waits for it. It does not close
// the Source.
func (s *Stream) Close() {
	s.cancel()
	<-s.done
	s.mu.Lock()
	s.closed = true
	s.mu.Unlock()
}
