package daemon

import (
	"bytes"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
)

// Two agents starting and stopping over and over never hold the lock at
// once, although each removes the file on its way out: a lock taken on the
// removed file is not taken for the lock.
func TestLockFileOneHolder(t *testing.T) {
	path := filepath.Join(t.TempDir(), LockFile)
	var holders, most atomic.Int32
	var wg sync.WaitGroup
	for range 4 {
		wg.Go(func() {
			for range 200 {
				f, err := lockPID(path)
				if err != nil {
					continue // held by another: as a second agent sees it
				}
				n := holders.Add(1)
				for m := most.Load(); n > m && !most.CompareAndSwap(m, n); m = most.Load() {
				}
				holders.Add(-1)
				os.Remove(f.Name())
				f.Close()
			}
		})
	}
	wg.Wait()
	if m := most.Load(); m != 1 {
		t.Fatalf("%d agents held the lock at once", m)
	}
}

// The second agent is refused while the first holds the lock, and is
// told who holds it.
func TestLockFileRefusesSecond(t *testing.T) {
	path := filepath.Join(t.TempDir(), LockFile)
	f, err := lockPID(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if _, err := lockPID(path); err == nil {
		t.Fatal("a second lock was taken")
	}
}

// An agent that opened the lock file just before its holder removed it
// and stopped must not take the lock on the removed file while a third
// agent holds the new one.
func TestLockFileRemovedMeanwhile(t *testing.T) {
	path := filepath.Join(t.TempDir(), LockFile)
	old, err := lockPID(path)
	if err != nil {
		t.Fatal(err)
	}
	late, err := os.OpenFile(path, os.O_RDWR, 0) // opened before the holder left
	if err != nil {
		t.Fatal(err)
	}
	os.Remove(old.Name())
	old.Close()
	third, err := lockPID(path)
	if err != nil {
		t.Fatal(err)
	}
	defer third.Close()
	f, err := lockOpened(late, path)
	if err != nil || f != nil {
		t.Fatalf("the lock on the removed file was taken (%v, %v) while another agent holds %s", f, err, path)
	}
}

// A second agent told who holds the lock reads only the pid's line of
// the file: a lock file grown huge (written over by something else) is
// not read whole into the error that goes to the journal.
func TestLockFileHugeIsNotReadWhole(t *testing.T) {
	path := filepath.Join(t.TempDir(), LockFile)
	f, err := lockPID(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if _, err := f.WriteAt(bytes.Repeat([]byte("x"), 8<<20), 16); err != nil {
		t.Fatal(err)
	}
	_, err = lockPID(path)
	if err == nil {
		t.Fatal("a second lock was taken")
	}
	if n := len(err.Error()); n > 512 {
		t.Errorf("the error is %d bytes long: %.200s…", n, err)
	}
}
