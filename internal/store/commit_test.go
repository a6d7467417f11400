package store

import (
	"errors"
	"fmt"
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
