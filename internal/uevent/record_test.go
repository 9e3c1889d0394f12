package uevent

import (
	"bytes"
	"context"
	"sync"
	"testing"
	"time"
)

// chanSource delivers what is sent on it.
type chanSource chan Message

func (c chanSource) Receive(ctx context.Context) (Message, error) {
	select {
	case m := <-c:
		return m, nil
	case <-ctx.Done():
		return Message{}, ctx.Err()
	}
}

// lockedBuf is a trace file read while the recorder writes it.
// Each write is signalled on wrote, for the reader to look again.
type lockedBuf struct {
	mu    sync.Mutex
	b     bytes.Buffer
	wrote chan struct{}
}

func (l *lockedBuf) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.wrote != nil {
		select {
		case l.wrote <- struct{}{}:
		default: // a signal is pending already
		}
	}
	return l.b.Write(p)
}

func (l *lockedBuf) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// A trace read while the recording goes on has every record so far: the
// recorder writes each out at once, not when it stops.
func TestRecorderWritesEachRecordAtOnce(t *testing.T) {
	dp := "/devices/pci0000:00/0000:00:04.0/usb1/1-1"
	e, err := Parse([]byte("add@" + dp + "\x00ACTION=add\x00DEVPATH=" + dp + "\x00SUBSYSTEM=usb\x00DEVTYPE=usb_device\x00SEQNUM=7\x00"))
	if err != nil {
		t.Fatal(err)
	}
	src := make(chanSource)
	out := lockedBuf{wrote: make(chan struct{}, 1)}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		_, err := (&Recorder{Src: src, W: NewTraceWriter(&out)}).Run(ctx)
		done <- err
	}()
	defer func() {
		cancel()
		if err := <-done; err != nil {
			t.Error(err)
		}
	}()
	for n := 1; n <= 2; n++ {
		src <- Message{Event: e}
		deadline := time.After(30 * time.Second)
		for {
			recs, err := ReadTrace(bytes.NewReader([]byte(out.String())), "trace")
			if err == nil && len(recs) == n {
				break
			}
			select {
			case <-out.wrote: // written since: read again
			case <-deadline:
				t.Fatalf("after %d events the trace holds %d records (%v)", n, len(recs), err)
			}
		}
	}
}

// A datagram the kernel sent that failed validation is in the trace as an
// overrun, which a replay answers as the agent does: a look at everything.
func TestRecorderKeepsARefusedEventAsAnOverrun(t *testing.T) {
	_, perr := Parse([]byte("add@/x\x00ACTION=add"))
	src := make(chanSource, 1)
	src <- Message{Refused: perr}
	var out lockedBuf
	ctx, cancel := context.WithCancel(context.Background())
	wrote := make(chan struct{}, 1)
	out.wrote = wrote
	done := make(chan RecordStats, 1)
	go func() {
		st, _ := (&Recorder{Src: src, W: NewTraceWriter(&out)}).Run(ctx)
		done <- st
	}()
	select {
	case <-wrote:
	case <-time.After(30 * time.Second):
		t.Fatal("nothing recorded")
	}
	cancel()
	st := <-done
	recs, err := ReadTrace(bytes.NewReader([]byte(out.String())), "trace")
	if err != nil || len(recs) != 1 || !recs[0].Overrun || recs[0].Event != nil || st.Refused != 1 || st.Events != 0 {
		t.Fatalf("trace %+v (%v), stats %+v", recs, err, st)
	}
}
