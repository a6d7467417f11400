package store

import (
	"bytes"
	"errors"
	"fmt"
	"runtime"
	"sync"
	"testing"
)

func openTest(t *testing.T) *DB {
	t.Helper()
	db, err := Open(Options{Dir: t.TempDir(), EncryptionKey: make([]byte, 32)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	return db
}

// Concurrent writers each get their group written, atomically, and the
// committer packs many into one transaction.
func TestCommitterGroupsConcurrentWriters(t *testing.T) {
	db := openTest(t)
	c := NewCommitter(db, nil)
	defer c.Stop()
	var wg sync.WaitGroup
	for w := range 32 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range 20 {
				k := fmt.Sprintf("w%02d-%02d", w, i)
				if err := <-c.Submit([]Entry{{Key: []byte(k + "a"), Val: []byte("x")}, {Key: []byte(k + "b"), Val: []byte("y")}}, 1, 1); err != nil {
					t.Error(err)
				}
			}
		}()
	}
	wg.Wait()
	n := 0
	if err := db.ScanKeys([]byte("w"), func([]byte) error { n++; return nil }); err != nil {
		t.Fatal(err)
	}
	if n != 32*20*2 {
		t.Fatalf("%d keys stored, want %d", n, 32*20*2)
	}
	if c.Writes() != 640 || c.Commits() > c.Writes() {
		t.Fatalf("%d writes in %d commits", c.Writes(), c.Commits())
	}
	t.Logf("%d writes in %d fsynced commits", c.Writes(), c.Commits())
}

// A failed commit fails its generation: later groups built on it fail
// without being written, groups of a later generation go through, and a
// barrier returns once everything before it is settled.
func TestCommitterFailedGeneration(t *testing.T) {
	db := openTest(t)
	fail := true
	c := NewCommitter(db, func(uint64) error {
		if fail {
			return errors.New("injected")
		}
		return nil
	})
	defer c.Stop()
	if err := <-c.Submit([]Entry{{Key: []byte("a"), Val: []byte("1")}}, 1, 1); err == nil {
		t.Fatal("injected failure not reported")
	}
	fail = false
	if c.FailedGen() != 1 {
		t.Fatalf("failed generation %d, want 1", c.FailedGen())
	}
	if err := <-c.Submit([]Entry{{Key: []byte("b"), Val: []byte("2")}}, 1, 2); !errors.Is(err, ErrStaleWrite) {
		t.Fatalf("write on the failed generation: %v", err)
	}
	done := c.Submit([]Entry{{Key: []byte("c"), Val: []byte("3")}}, 2, 3)
	c.Barrier()
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
	default:
		t.Fatal("barrier returned before the write submitted ahead of it")
	}
	if c.Committed() != 3 {
		t.Fatalf("committed write %d, want 3", c.Committed())
	}
	for k, want := range map[string]error{"a": ErrNotFound, "b": ErrNotFound, "c": nil} {
		if _, err := db.Get([]byte(k)); !errors.Is(err, want) {
			t.Fatalf("%s: %v, want %v", k, err, want)
		}
	}
}

// A group larger than a transaction fails whole (nothing of it is
// written) and fails the groups packed after it in that round.
func TestCommitGroupsTooLarge(t *testing.T) {
	db := openTest(t)
	big := make([]Entry, 0, 20000)
	for i := range 20000 {
		big = append(big, Entry{Key: []byte(fmt.Sprintf("big%06d", i)), Val: make([]byte, 1024)})
	}
	errs := db.CommitGroups([][]Entry{{{Key: []byte("small"), Val: []byte("ok")}}, big})
	if errs[0] != nil || !errors.Is(errs[1], ErrTooLarge) {
		t.Fatalf("errors %v", errs)
	}
	if _, err := db.Get([]byte("big000000")); !errors.Is(err, ErrNotFound) {
		t.Fatalf("part of the oversize group was written: %v", err)
	}
}

// Places are taken in one order and filled in another (the agent signs
// outside its lock): groups still reach the disk in the order of their
// places. When a write's Wait returns, every group placed before it is on
// disk, and nothing placed after an unfilled place is written before it.
func TestCommitterReserveKeepsOrder(t *testing.T) {
	db := openTest(t)
	c := NewCommitter(db, nil)
	defer c.Stop()
	const n = 300
	var order sync.Mutex // the agent's state lock: places are taken under it
	next := uint64(0)
	var wg sync.WaitGroup
	for w := range 16 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range n / 16 {
				order.Lock()
				next++
				id := next
				tk := c.Reserve(1, id)
				order.Unlock()
				if (w+i)%3 == 0 {
					runtime.Gosched() // others fill theirs first
				}
				tk.Fill([]Entry{{Key: fmt.Appendf(nil, "o%05d", id), Val: []byte("x")}})
				if err := tk.Wait(); err != nil {
					t.Error(err)
					return
				}
				for j := uint64(1); j < id; j++ {
					if _, err := db.Get(fmt.Appendf(nil, "o%05d", j)); err != nil {
						t.Errorf("write %d acknowledged before write %d placed ahead of it is on disk: %v", id, j, err)
						return
					}
				}
			}
		}()
	}
	wg.Wait()
	if c.Commits() >= c.Writes() {
		t.Logf("no group shared a commit (%d writes, %d commits)", c.Writes(), c.Commits())
	}
}

// Nothing placed after an unfilled place is written, Submit's and
// Barrier's included, until it is filled; a cancelled place fails and
// fails every later group of its generation, and a later generation goes
// through.
func TestCommitterUnfilledPlaceHoldsLaterGroups(t *testing.T) {
	db := openTest(t)
	c := NewCommitter(db, nil)
	defer c.Stop()
	first := c.Reserve(1, 1)
	later := c.Submit([]Entry{{Key: []byte("later"), Val: []byte("x")}}, 1, 2)
	barrier := make(chan struct{})
	go func() { c.Barrier(); close(barrier) }()
	second := c.Reserve(1, 3)
	second.Fill([]Entry{{Key: []byte("second"), Val: []byte("x")}})
	// The background goroutine and the barrier's waiter are free to lead:
	// had either written past the unfilled place, "later" would be on disk
	// once second's Wait returned. Wait in a goroutine and settle first
	// only after checking nothing was written.
	res := make(chan error, 1)
	go func() { res <- second.Wait() }()
	for range 100 {
		runtime.Gosched()
	}
	for _, k := range []string{"later", "second"} {
		if _, err := db.Get([]byte(k)); !errors.Is(err, ErrNotFound) {
			t.Fatalf("%s written while a place before it is unfilled: %v", k, err)
		}
	}
	select {
	case <-barrier:
		t.Fatal("barrier returned while a place before it is unfilled")
	default:
	}
	first.Cancel(errors.New("signature failed"))
	if err := first.Wait(); err == nil || err.Error() != "signature failed" {
		t.Fatalf("cancelled place: %v", err)
	}
	if err := <-later; !errors.Is(err, ErrStaleWrite) {
		t.Fatalf("group after a cancelled place of its generation: %v", err)
	}
	if err := <-res; !errors.Is(err, ErrStaleWrite) {
		t.Fatalf("reserved group after a cancelled place of its generation: %v", err)
	}
	<-barrier
	if c.FailedGen() != 1 {
		t.Fatalf("failed generation %d, want 1", c.FailedGen())
	}
	tk := c.Reserve(2, 4)
	tk.Fill([]Entry{{Key: []byte("next"), Val: []byte("x")}})
	if err := tk.Wait(); err != nil {
		t.Fatal(err)
	}
	for k, want := range map[string]error{"later": ErrNotFound, "second": ErrNotFound, "next": nil} {
		if _, err := db.Get([]byte(k)); !errors.Is(err, want) {
			t.Fatalf("%s: %v, want %v", k, err, want)
		}
	}
}

// A lone writer commits on its own goroutine (no hand-off to another
// goroutine but Badger's own), and after Stop places fail instead of
// hanging.
func TestCommitterLoneWriterLeads(t *testing.T) {
	db := openTest(t)
	var leaders sync.Map
	c := NewCommitter(db, func(uint64) error {
		leaders.Store(goid(), true)
		return nil
	})
	me := goid()
	tk := c.Reserve(1, 1)
	tk.Fill([]Entry{{Key: []byte("a"), Val: []byte("1")}})
	if err := tk.Wait(); err != nil {
		t.Fatal(err)
	}
	if _, ok := leaders.Load(me); !ok {
		t.Fatal("a lone write was committed on another goroutine than its writer's")
	}
	c.Stop()
	tk = c.Reserve(1, 2)
	tk.Fill([]Entry{{Key: []byte("b"), Val: []byte("1")}})
	if err := tk.Wait(); !errors.Is(err, ErrCommitterStopped) {
		t.Fatalf("write after Stop: %v", err)
	}
	if err := <-c.Submit(nil, 1, 3); !errors.Is(err, ErrCommitterStopped) {
		t.Fatalf("submit after Stop: %v", err)
	}
	c.Barrier()
}

// goid is the calling goroutine's number (tests only).
func goid() string {
	b := make([]byte, 64)
	b = b[:runtime.Stack(b, false)]
	f := bytes.Fields(b)
	return string(f[1])
}

// Stop returns once a commit a writer leads is over (the background
// goroutine, which Stop ends, is not the one committing).
func TestCommitterStopWhileWriterLeads(t *testing.T) {
	db := openTest(t)
	entered, release := make(chan struct{}), make(chan struct{})
	c := NewCommitter(db, func(uint64) error {
		close(entered)
		<-release
		return nil
	})
	tk := c.Reserve(1, 1)
	tk.Fill([]Entry{{Key: []byte("a"), Val: []byte("1")}})
	res := make(chan error, 1)
	go func() { res <- tk.Wait() }()
	<-entered
	stopped := make(chan struct{})
	go func() { c.Stop(); close(stopped) }()
	close(release)
	if err := <-res; err != nil {
		t.Fatal(err)
	}
	<-stopped // hangs if the lead's end does not wake the background goroutine
}
