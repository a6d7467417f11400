package store

import (
	"bytes"
	"errors"
	"fmt"
	"math/rand/v2"
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

// Writers take places under a lock, as the agent does, and some places are
// cancelled (a failed signature): a writer that finds its generation failed
// moves to a new one behind a barrier, as the agent's reload does. Every
// acknowledged group is on disk, and no group placed after a cancelled one
// of its generation is acknowledged.
func TestCommitterCancelsFailTheirGeneration(t *testing.T) {
	db := openTest(t)
	c := NewCommitter(db, nil)
	defer c.Stop()
	var mu sync.Mutex // the agent's state lock
	gen, next := uint64(1), uint64(0)
	type outcome struct {
		gen, id   uint64
		cancelled bool
		err       error
	}
	var omu sync.Mutex
	var outs []outcome
	var wg sync.WaitGroup
	for w := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			rng := rand.New(rand.NewPCG(uint64(w), 7))
			for range 60 {
				mu.Lock()
				if c.FailedGen() >= gen {
					c.Barrier()
					gen = c.FailedGen() + 1
				}
				next++
				o := outcome{gen: gen, id: next}
				tk := c.Reserve(o.gen, o.id)
				mu.Unlock()
				if rng.IntN(12) == 0 {
					o.cancelled = true
					tk.Cancel(errors.New("signature failed"))
				} else {
					tk.Fill([]Entry{{Key: fmt.Appendf(nil, "c%05d", o.id), Val: []byte("x")}})
				}
				o.err = tk.Wait()
				omu.Lock()
				outs = append(outs, o)
				omu.Unlock()
			}
		}()
	}
	wg.Wait()
	acked, cancels := 0, 0
	for _, o := range outs {
		if o.cancelled {
			cancels++
			if o.err == nil {
				t.Fatalf("cancelled place %d acknowledged", o.id)
			}
			for _, p := range outs {
				if p.gen == o.gen && p.id > o.id && p.err == nil {
					t.Fatalf("write %d acknowledged after the cancelled place %d of its generation %d", p.id, o.id, o.gen)
				}
			}
			continue
		}
		_, err := db.Get(fmt.Appendf(nil, "c%05d", o.id))
		switch {
		case o.err == nil && err != nil:
			t.Fatalf("acknowledged write %d not on disk: %v", o.id, err)
		case o.err != nil && err == nil:
			t.Fatalf("failed write %d on disk", o.id)
		case o.err == nil:
			acked++
		}
	}
	if cancels == 0 || acked == 0 {
		t.Fatalf("%d cancels, %d acknowledged: nothing tested", cancels, acked)
	}
	t.Logf("%d acknowledged, %d cancelled, %d failed as stale", acked, cancels, len(outs)-acked-cancels)
}
