//go:build linux

package uevent

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"reflect"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/usbhotplugd/usbhotplugd/internal/nstest"
)

// The listener tests run in a fresh user+network namespace, isolated from
// the host's events: TestListenerInNamespace re-executes the test binary
// there, and TestMain runs the body in the child.
const nsEnv = "USBHOTPLUGD_UEVENT_NS_CHILD"

func TestMain(m *testing.M) {
	if nstest.Child(nsEnv) {
		if err := nsBody(); err != nil {
			fmt.Println("FAIL:", err)
			os.Exit(1)
		}
		fmt.Println("namespace checks passed")
		os.Exit(0)
	}
	os.Exit(m.Run())
}

func TestListenerInNamespace(t *testing.T) {
	out, err := nstest.Run(t, nsEnv, syscall.CLONE_NEWNET, nil)
	if err != nil {
		t.Fatalf("namespace run failed: %v\n%s", err, out)
	}
	t.Logf("%s", out)
}

type sender struct{ fd int }

func newSender() (*sender, uint32, error) {
	fd, err := unix.Socket(unix.AF_NETLINK, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, unix.NETLINK_KOBJECT_UEVENT)
	if err != nil {
		return nil, 0, err
	}
	if err := unix.Bind(fd, &unix.SockaddrNetlink{Family: unix.AF_NETLINK}); err != nil {
		return nil, 0, err
	}
	sa, err := unix.Getsockname(fd)
	if err != nil {
		return nil, 0, err
	}
	return &sender{fd}, sa.(*unix.SockaddrNetlink).Pid, nil
}

func (s *sender) send(b []byte) error {
	return unix.Sendto(s.fd, b, 0, &unix.SockaddrNetlink{Family: unix.AF_NETLINK, Groups: 1})
}

func datagram(seq int) []byte {
	return fmt.Appendf(nil, "add@/devices/usb1/1-%d\x00ACTION=add\x00DEVPATH=/devices/usb1/1-%d\x00SUBSYSTEM=usb\x00DEVTYPE=usb_device\x00SEQNUM=%d\x00", seq%100+1, seq%100+1, seq)
}

func receive(l *Listener) (Message, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	return l.Receive(ctx)
}

func nsBody() error {
	trusted, port, err := newSender()
	if err != nil {
		return fmt.Errorf("sender: %w", err)
	}
	// The kernel's port id is 0; here the trusted "kernel" is our sender.
	l, err := listen(0, port)
	if err != nil {
		return err
	}
	defer l.Close()

	// 1. A datagram from the trusted sender arrives, parsed.
	if err := trusted.send(datagram(1)); err != nil {
		return fmt.Errorf("send: %w", err)
	}
	m, err := receive(l)
	if err != nil || m.Event.Seqnum != 1 || m.Event.Name() != "1-2" {
		return fmt.Errorf("first event %+v, %v", m, err)
	}

	// 2. Another sender is not the kernel: dropped.
	other, _, err := newSender()
	if err != nil {
		return err
	}
	other.send(datagram(2))
	// Nor is a flood of large datagrams from it: dropped, and the
	// listener's buffer does not grow to hold them.
	if err := other.send(make([]byte, 200000)); err != nil {
		return fmt.Errorf("large send: %w", err)
	}
	// 3. Malformed datagrams are refused without a panic, each said as
	// Refused: the kernel's event they were is lost.
	// The last, an input device's event with a name no event may hold,
	// is told by its subsystem.
	for _, bad := range [][]byte{[]byte("add@"), {}, []byte("add@/x\x00ACTION=add"), make([]byte, 9000), {0xff, 0x00, 0x01, 0x02, 0x03, 0x04, 0x05, 0x06, 0x00},
		[]byte("add@/devices/x/input/input9\x00ACTION=add\x00DEVPATH=/devices/x/input/input9\x00SUBSYSTEM=input\x00NAME=\"a\tb\"\x00SEQNUM=8\x00")} {
		trusted.send(bad)
	}
	trusted.send(datagram(3))
	refused, tooLarge, input := 0, false, false
	for m, err = receive(l); err == nil && m.Refused != nil; m, err = receive(l) {
		if !errors.Is(m.Refused, ErrMalformed) || m.Overrun || m.Event.Action != "" {
			return fmt.Errorf("refused datagram as %+v", m)
		}
		tooLarge = tooLarge || strings.Contains(m.Refused.Error(), "9000 bytes is more than 8192")
		if m.RefusedSubsystem != "" && (m.RefusedSubsystem != "input" || input) {
			return fmt.Errorf("refused datagram's subsystem %q", m.RefusedSubsystem)
		}
		input = input || m.RefusedSubsystem == "input"
		refused++
	}
	if err != nil || m.Event.Seqnum != 3 || refused < 5 || !tooLarge || !input {
		return fmt.Errorf("after %d refused datagrams (the large one told by its size: %v, the input one by its subsystem: %v): %+v, %v", refused, tooLarge, input, m, err)
	}
	// The empty datagram may or may not be delivered by the kernel.
	if st := l.Stats(); st.NotKernel != 2 || st.Malformed < 5 || st.Received != 2 {
		return fmt.Errorf("stats %+v, want 2 received, 2 not-kernel and at least 5 malformed", st)
	}
	if len(l.buf) > MaxDatagram+1 {
		return fmt.Errorf("the buffer grew to %d bytes", len(l.buf))
	}

	// 4. A burst of 20 000 into a small buffer: ENOBUFS, reported as an
	// overrun; the listener keeps going.
	small, err := listen(4096, port)
	if err != nil {
		return err
	}
	defer small.Close()
	for i := range 20000 {
		trusted.send(datagram(10 + i))
	}
	overrun, got := false, 0
	for {
		ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
		m, err := small.Receive(ctx)
		cancel()
		if errors.Is(err, context.DeadlineExceeded) {
			break
		}
		if err != nil {
			return fmt.Errorf("burst: %w", err)
		}
		if m.Overrun {
			overrun = true
		} else {
			got++
		}
	}
	if !overrun {
		return fmt.Errorf("no overrun reported after a burst of 20000 (received %d)", got)
	}
	trusted.send(datagram(99999))
	if m, err := receive(small); err != nil || m.Event.Seqnum != 99999 {
		return fmt.Errorf("after the overrun: %+v, %v", m, err)
	}

	// 5. Close and cancel unblock a waiting Receive within 100 ms.
	for _, how := range []string{"close", "cancel"} {
		l2, err := listen(0, port)
		if err != nil {
			return err
		}
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan error, 1)
		go func() { _, err := l2.Receive(ctx); done <- err }()
		if how == "close" {
			l2.Close()
		} else {
			cancel()
		}
		select {
		case err := <-done:
			if err == nil {
				cancel()
				return fmt.Errorf("%s: Receive returned no error", how)
			}
		case <-time.After(100 * time.Millisecond):
			cancel()
			return fmt.Errorf("%s did not unblock Receive within 100ms", how)
		}
		cancel()
		l2.Close()
	}
	// 6. Coldplug over the real socket: datagrams sent while sysfs is
	// scanned come after the scanned events, in order.
	l3, err := listen(0, port)
	if err != nil {
		return err
	}
	defer l3.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	s, err := Coldplug(ctx, l3, func() ([]Event, error) {
		for i := range 3 {
			if err := trusted.send(datagram(500 + i)); err != nil {
				return nil, err
			}
		}
		e, err := Parse(datagram(0))
		return []Event{e}, err
	})
	if err != nil {
		return err
	}
	defer s.Close()
	var order []string
	for range 4 {
		m, err := s.Receive(ctx)
		if err != nil {
			return fmt.Errorf("coldplug: %w", err)
		}
		order = append(order, fmt.Sprintf("%d/%v", m.Event.Seqnum, m.Coldplug))
	}
	if got := strings.Join(order, " "); got != "0/true 500/false 501/false 502/false" {
		return fmt.Errorf("coldplug order %s", got)
	}
	// 7. A recording of live datagrams reads back as the same events.
	l4, err := listen(0, port)
	if err != nil {
		return err
	}
	defer l4.Close()
	var buf bytes.Buffer
	rctx, rcancel := context.WithCancel(context.Background())
	rec := &Recorder{Src: l4, W: NewTraceWriter(&buf), Attrs: func(busid string) (map[string]string, error) {
		if busid == "1-2" {
			rcancel() // the last datagram sent below
		}
		return map[string]string{"serial": "S-" + busid}, nil
	}}
	var sent []Event
	for _, seq := range []int{700, 701} {
		e, _ := Parse(datagram(seq))
		sent = append(sent, e)
		trusted.send(datagram(seq))
	}
	st, err := rec.Run(rctx)
	if err != nil || st.Events != 2 {
		return fmt.Errorf("record: %+v %v", st, err)
	}
	recs, err := ReadTrace(&buf, "recorded")
	if err != nil {
		return err
	}
	if got := Events(recs); !reflect.DeepEqual(got, sent) || recs[1].Sysfs["serial"] != "S-1-2" {
		return fmt.Errorf("recorded %+v, sent %+v", recs, sent)
	}
	fmt.Printf("burst: %d delivered, overrun reported\n", got)
	return nil
}
