package agent

import (
	"errors"
	"fmt"
	"strings"
	gosync "sync"
	"sync/atomic"
	"testing"

	"fieldsync/agent/api"
	"fieldsync/crdt"
	"fieldsync/crypto"
	"fieldsync/internal/store"
	fsync "fieldsync/sync"
)

// Signing outside the write lock (docs/design.md §7, "Signing outside the
// write lock"): a change is chained under stateMu and signed after it is
// released, its place in the commit order taken before.

// putDirect writes field f of record rec through the write path without
// write combining, so that a second write can be built while the first is
// still being signed.
func putDirect(a *Agent, sid crypto.SpaceID, rec, val string) error {
	a.stateMu.Lock()
	sp := a.spaces[sid]
	a.stateMu.Unlock()
	rid := crdt.RecordID(rec)
	_, _, err := a.writeOps(sp, func(load func(crdt.RecordID) (*crdt.Record, error)) ([]crdt.Op, error) {
		r, err := load(rid)
		if err != nil {
			return nil, err
		}
		if r == nil {
			r = crdt.NewRecord(rid)
		}
		return []crdt.Op{r.Put("f", []byte(val))}, nil
	})
	return err
}

// ownSeq is this device's head in the space, as writers see it.
func ownSeq(a *Agent, sid crypto.SpaceID) uint64 {
	a.stateMu.Lock()
	defer a.stateMu.Unlock()
	return a.spaces[sid].heads[a.dev].Seq
}

// checkOwnLog checks this device's log in the space on disk: every seq from
// 1 to the head is stored and signed, each names the ID of the one before
// (no gap, no fork), the head's ID is the last one's, and nothing is stored
// beyond the head.
func checkOwnLog(t *testing.T, a *Agent, sid crypto.SpaceID) {
	t.Helper()
	head := ownSeq(a, sid)
	if head == 0 {
		t.Fatal("no envelope of this device in the space: nothing checked")
	}
	a.stateMu.Lock()
	want := a.spaces[sid].heads[a.dev].Hash
	a.stateMu.Unlock()
	var prev [32]byte
	for seq := uint64(1); seq <= head; seq++ {
		env, err := a.db.get(envKey(sid, a.dev, seq))
		if err != nil {
			t.Fatalf("own envelope %d of %d: %v", seq, head, err)
		}
		h, _, err := crypto.Verify(env, a.id.Public())
		if err != nil {
			t.Fatalf("own envelope %d: %v", seq, err)
		}
		if h.Seq != seq || h.Prev != prev {
			t.Fatalf("own envelope %d: seq %d, prev %x, want prev %x (a fork or a gap)", seq, h.Seq, h.Prev[:6], prev[:6])
		}
		prev = crypto.Hash(env)
	}
	if prev != want {
		t.Fatalf("head %d names %x, the envelope stored is %x", head, want[:6], prev[:6])
	}
	if _, err := a.db.get(envKey(sid, a.dev, head+1)); err == nil {
		t.Fatalf("an envelope stored beyond the head %d", head)
	}
}

// A write whose signature fails fails, and so does the write chained on it
// meanwhile (it names an envelope that will never exist); until then neither
// is on disk nor in sync's summary, the later one waits for the earlier one's
// place, and the next write reloads and takes the failed seq again: the log
// has no gap and no fork.
func TestWriteSignFailureFailsWritesBuiltOnIt(t *testing.T) {
	omn := newTestBureau(t, "OMN")
	a := openTestAgent(t, newTestDevice(t, omn, "Amina", crypto.RoleOfficer))
	sp, err := a.CreateSpace("case", nil)
	if err != nil {
		t.Fatal(err)
	}
	sid := mustSpaceID(t, sp.ID)
	if err := putDirect(a, sid, "hot", "0"); err != nil { // and the profile
		t.Fatal(err)
	}
	before := ownSeq(a, sid)
	entered, release := make(chan struct{}), make(chan struct{})
	var once gosync.Once
	releaseAll := func() { once.Do(func() { close(release) }) }
	t.Cleanup(releaseAll)
	a.stateMu.Lock()
	var fired atomic.Bool
	a.signHook = func(seq uint64) error {
		if seq == before+1 && fired.CompareAndSwap(false, true) {
			close(entered)
			<-release
			return errors.New("injected signature failure")
		}
		return nil
	}
	a.stateMu.Unlock()
	summary := func() uint64 {
		v, err := syncAdapter{a}.Heads(fsync.SpaceID(sid))
		if err != nil {
			t.Fatal(err)
		}
		return v[fsync.PeerID(a.dev)]
	}
	first, second := make(chan error, 1), make(chan error, 1)
	go func() { first <- putDirect(a, sid, "hot", "1") }()
	<-entered // chained, its place taken, stateMu released, being signed
	if got := ownSeq(a, sid); got != before+1 {
		t.Fatalf("head %d while the first write signs, want %d", got, before+1)
	}
	go func() { second <- putDirect(a, sid, "hot", "2") }()
	waitFor(t, "the second write chained on the first", func() bool { return ownSeq(a, sid) == before+2 })
	// The second is signed and given to its place, but its place is after
	// the first's, which is not filled: nothing of either is on disk, and
	// sync's summary shows neither.
	for _, seq := range []uint64{before + 1, before + 2} {
		if _, err := a.db.get(envKey(sid, a.dev, seq)); !errors.Is(err, errKVNotFound) {
			t.Fatalf("envelope %d on disk before the one placed ahead of it: %v", seq, err)
		}
	}
	if got := summary(); got != before {
		t.Fatalf("sync's summary reports own seq %d while %d and %d are not stored, want %d", got, before+1, before+2, before)
	}
	releaseAll()
	if err := <-first; err == nil || !strings.Contains(err.Error(), "injected signature failure") {
		t.Fatalf("the write whose signature failed: %v", err)
	}
	if err := <-second; !errors.Is(err, store.ErrStaleWrite) {
		t.Fatalf("the write chained on a failed one: %v, want %v", err, store.ErrStaleWrite)
	}
	if err := putDirect(a, sid, "hot", "3"); err != nil {
		t.Fatal(err)
	}
	if got := ownSeq(a, sid); got != before+1 {
		t.Fatalf("head %d after the failed writes and one more, want %d", got, before+1)
	}
	checkOwnLog(t, a, sid)
	if got := summary(); got != before+1 {
		t.Fatalf("summary %d once stored, want %d", got, before+1)
	}
	r, err := a.GetRecord(api.RecordRef{Space: sp.ID, Record: "hot"})
	if err != nil || r.Fields["f"].Value != "3" {
		t.Fatalf("record after the failed writes: %+v, %v", r.Fields["f"], err)
	}
}

// Many writers in several spaces, combined and direct, sign in parallel
// outside the lock: every write is acknowledged and read back, and each
// space's log is whole, chained and signed (run it with -race).
func TestWriteConcurrentSignersKeepLogsWhole(t *testing.T) {
	omn := newTestBureau(t, "OMN")
	a := openTestAgent(t, newTestDevice(t, omn, "Amina", crypto.RoleOfficer))
	var sids []crypto.SpaceID
	var names []string
	for i := range 3 {
		sp, err := a.CreateSpace(fmt.Sprintf("case %d", i), nil)
		if err != nil {
			t.Fatal(err)
		}
		sids, names = append(sids, mustSpaceID(t, sp.ID)), append(names, sp.ID)
	}
	const writers, each = 12, 15
	var wg gosync.WaitGroup
	errs := make(chan error, writers*each)
	for w := range writers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range each {
				s := (w + i) % len(sids)
				rec, val := fmt.Sprintf("w%02d-%02d", w, i), fmt.Sprintf("v%d", i)
				var err error
				if w%2 == 0 {
					err = putDirect(a, sids[s], rec, val)
				} else {
					_, err = a.PutFields(api.RecordPutRequest{Space: names[s], Record: rec, Fields: []api.FieldValue{{Name: "f", Value: val}}})
				}
				if err != nil {
					errs <- fmt.Errorf("%s: %w", rec, err)
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	for w := range writers {
		for i := range each {
			s := (w + i) % len(sids)
			rec := fmt.Sprintf("w%02d-%02d", w, i)
			r, err := a.GetRecord(api.RecordRef{Space: names[s], Record: rec})
			if err != nil || r.Fields["f"].Value != fmt.Sprintf("v%d", i) {
				t.Fatalf("acknowledged write %s: %+v, %v", rec, r.Fields["f"], err)
			}
		}
	}
	for _, sid := range sids {
		checkOwnLog(t, a, sid)
		v, err := syncAdapter{a}.Heads(fsync.SpaceID(sid))
		if err != nil {
			t.Fatal(err)
		}
		if got, want := v[fsync.PeerID(a.dev)], ownSeq(a, sid); got != want {
			t.Fatalf("summary %d once every write is acknowledged, head %d", got, want)
		}
	}
}
