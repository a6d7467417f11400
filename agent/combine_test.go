package agent

import (
	"fmt"
	gosync "sync"
	"sync/atomic"
	"testing"

	"fieldsync/agent/api"
	"fieldsync/crypto"
)

// Concurrent API writes share changes (one signature and fsync for many),
// and every one of them is still answered with its own record, durable,
// readable after a restart and on another device; writes to one record
// stay in order (never combined with each other) and make no conflict.
func TestCombinedWrites(t *testing.T) {
	omn := newTestBureau(t, "OMN")
	cfg := newTestDevice(t, omn, "Amina", crypto.RoleOfficer)
	a := openTestAgent(t, cfg)
	sp, err := a.CreateSpace("case", nil)
	if err != nil {
		t.Fatal(err)
	}
	const writers, each = 32, 20
	var wg gosync.WaitGroup
	errs := make(chan error, writers*each)
	for w := 0; w < writers; w++ {
		wg.Add(1)
		go func(w int) {
			defer wg.Done()
			for i := 0; i < each; i++ {
				rec := fmt.Sprintf("w%02d-%02d", w, i)
				if w%8 == 0 {
					rec = "shared" // four writers on one record
				}
				val := fmt.Sprintf("%d/%d", w, i)
				got, err := a.PutFields(api.RecordPutRequest{Space: sp.ID, Record: rec, Fields: []api.FieldValue{{Name: "f", Value: val}}})
				if err != nil {
					errs <- err
					return
				}
				if got.ID != rec || got.Fields["f"].Value != val {
					errs <- fmt.Errorf("answered %s=%q for a write of %s=%q", got.ID, got.Fields["f"].Value, rec, val)
					return
				}
			}
		}(w)
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	a.stateMu.Lock()
	changes := a.spaces[mustSpaceID(t, sp.ID)].heads[a.dev].Seq
	a.stateMu.Unlock()
	t.Logf("%d writes in %d envelopes", writers*each, changes)
	if changes >= writers*each {
		t.Errorf("%d envelopes for %d concurrent writes: nothing was combined", changes, writers*each)
	}
	check := func(who *Agent) {
		t.Helper()
		for w := 0; w < writers; w++ {
			if w%8 == 0 {
				continue
			}
			for i := 0; i < each; i++ {
				r, err := who.GetRecord(api.RecordRef{Space: sp.ID, Record: fmt.Sprintf("w%02d-%02d", w, i)})
				if err != nil || r.Fields["f"].Value != fmt.Sprintf("%d/%d", w, i) {
					t.Fatalf("record w%02d-%02d: %+v, %v", w, i, r.Fields["f"], err)
				}
			}
		}
		r, err := who.GetRecord(api.RecordRef{Space: sp.ID, Record: "shared"})
		if err != nil || r.Fields["f"].Conflict {
			t.Fatalf("shared record: %+v, %v (one device's writes never conflict)", r.Fields["f"], err)
		}
	}
	check(a)
	if err := a.Close(); err != nil {
		t.Fatal(err)
	}
	a = openTestAgent(t, cfg)
	check(a)
	b := openTestAgent(t, newTestDevice(t, omn, "Boris", crypto.RoleOfficer))
	transfer(t, b, a)
	if _, err := a.ShareKeys(); err != nil {
		t.Fatal(err)
	}
	transfer(t, a, b)
	check(b)
}

// Writes that arrive while a batch syncs wait for that sync and then share
// one change (docs/design.md §7, "Group commit"): with the first write's
// commit held, eight writers on distinct records are all held back (none
// builds its own change meanwhile), and once the commit is released the
// eight make exactly one more envelope — not one each, as when every
// request that found no leader wrote at once.
func TestWritesDuringASyncShareOneChange(t *testing.T) {
	omn := newTestBureau(t, "OMN")
	cfg := newTestDevice(t, omn, "Amina", crypto.RoleOfficer)
	var armed atomic.Bool
	entered, release := make(chan struct{}), make(chan struct{})
	cfg.FailCommit = func(uint64) error {
		if armed.CompareAndSwap(true, false) {
			entered <- struct{}{}
			<-release
		}
		return nil
	}
	a := openTestAgent(t, cfg)
	var once gosync.Once
	releaseAll := func() { once.Do(func() { close(release) }) }
	t.Cleanup(releaseAll) // before the agent closes, should the test fail
	sp, err := a.CreateSpace("case", nil)
	if err != nil {
		t.Fatal(err)
	}
	sid := mustSpaceID(t, sp.ID)
	put := func(rec, val string) error {
		got, err := a.PutFields(api.RecordPutRequest{Space: sp.ID, Record: rec, Fields: []api.FieldValue{{Name: "f", Value: val}}})
		if err == nil && got.Fields["f"].Value != val {
			err = fmt.Errorf("record %s answered %q, wrote %q", rec, got.Fields["f"].Value, val)
		}
		return err
	}
	if err := put("first", "0"); err != nil { // the space's profile is written
		t.Fatal(err)
	}
	seq := func() uint64 {
		a.stateMu.Lock()
		defer a.stateMu.Unlock()
		return a.spaces[sid].heads[a.dev].Seq
	}
	before := seq()
	const writers = 8
	errs := make(chan error, writers+2)
	armed.Store(true)
	go func() { errs <- put("first", "1") }()
	<-entered // its batch is with the committer, which holds it
	q := a.writeQueueFor(sid)
	for w := range writers {
		go func() { errs <- put(fmt.Sprintf("r%d", w), "v") }()
	}
	// All eight wait for the lead while the first batch is held; under a
	// policy that built each arrival's change at once they never would.
	waitFor(t, "eight writes held for combining", func() bool {
		q.mu.Lock()
		defer q.mu.Unlock()
		return len(q.pending) == writers
	})
	if got := seq(); got != before+1 {
		t.Fatalf("head moved from %d to %d while the first write's commit was held: writes did not wait to be combined", before, got)
	}
	releaseAll()
	for range writers + 1 {
		if err := <-errs; err != nil {
			t.Fatal(err)
		}
	}
	if got := seq(); got != before+2 {
		t.Errorf("%d envelopes for the held write and eight writes that arrived during its sync, want 2", got-before)
	}
	for w := range writers {
		r, err := a.GetRecord(api.RecordRef{Space: sp.ID, Record: fmt.Sprintf("r%d", w)})
		if err != nil || r.Fields["f"].Value != "v" {
			t.Fatalf("record r%d: %+v, %v", w, r.Fields["f"], err)
		}
	}
}

// A second write of a record whose write is in flight can never share its
// change, so it is built while that change syncs rather than after: with
// the commit of a batch writing "hot" held, the next write of "hot" (which
// was already waiting) still gets its envelope built and handed on.
func TestRewriteOfRecordInFlightPipelines(t *testing.T) {
	omn := newTestBureau(t, "OMN")
	cfg := newTestDevice(t, omn, "Amina", crypto.RoleOfficer)
	var holds atomic.Int32
	entered := make(chan struct{})
	release := make(chan struct{})
	cfg.FailCommit = func(uint64) error {
		if holds.Add(-1) >= 0 {
			entered <- struct{}{}
			<-release
		}
		return nil
	}
	a := openTestAgent(t, cfg)
	var once gosync.Once
	releaseAll := func() { once.Do(func() { close(release) }) }
	t.Cleanup(releaseAll)
	holds.Store(-1 << 20)
	sp, err := a.CreateSpace("case", nil)
	if err != nil {
		t.Fatal(err)
	}
	sid := mustSpaceID(t, sp.ID)
	put := func(rec, val string) error {
		_, err := a.PutFields(api.RecordPutRequest{Space: sp.ID, Record: rec, Fields: []api.FieldValue{{Name: "f", Value: val}}})
		return err
	}
	if err := put("first", "0"); err != nil {
		t.Fatal(err)
	}
	seq := func() uint64 {
		a.stateMu.Lock()
		defer a.stateMu.Unlock()
		return a.spaces[sid].heads[a.dev].Seq
	}
	before := seq()
	q := a.writeQueueFor(sid)
	holds.Store(1) // the next commit is held
	errs := make(chan error, 3)
	go func() { errs <- put("first", "1") }()
	<-entered
	// Two writes of "hot" wait behind the held batch.
	go func() { errs <- put("hot", "1") }()
	waitFor(t, "the first write of hot waiting", func() bool {
		q.mu.Lock()
		defer q.mu.Unlock()
		return len(q.pending) == 1
	})
	go func() { errs <- put("hot", "2") }()
	waitFor(t, "both writes of hot waiting", func() bool {
		q.mu.Lock()
		defer q.mu.Unlock()
		return len(q.pending) == 2
	})
	// Let the first batch through; hold the next one (the first "hot").
	holds.Store(1)
	release <- struct{}{}
	<-entered
	// The second "hot" is built while the first one's commit is held.
	waitFor(t, "the second write of hot built while the first syncs", func() bool { return seq() == before+3 })
	releaseAll()
	for range 3 {
		if err := <-errs; err != nil {
			t.Fatal(err)
		}
	}
	r, err := a.GetRecord(api.RecordRef{Space: sp.ID, Record: "hot"})
	if err != nil || r.Fields["f"].Value != "2" || r.Fields["f"].Conflict {
		t.Fatalf("hot: %+v, %v (want 2, no conflict)", r.Fields["f"], err)
	}
}
