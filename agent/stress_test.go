package agent

import (
	"context"
	"errors"
	"fieldsync/agent/api"
	"fmt"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"fieldsync/crypto"
	fsync "fieldsync/sync"
)

// TestStressStateUnderRace drives every reader of the agent's state
// (history, status, record get, conflicts, metrics scrapes, bundle export)
// at once with every kind of writer: epoch rotations, revocation cuts,
// bundle imports, failed commits that reload the state, too-large writes,
// and sync ingest. It asserts only behaviour (no unexpected error, nothing
// acknowledged lost, the agents converge); its real check is the race
// detector, which CI runs on it (.ci/run: -race -short). Bounded in count:
// every goroutine does a fixed number of rounds.
func TestStressStateUnderRace(t *testing.T) {
	rounds := 24
	if testing.Short() {
		rounds = 12
	}
	omn, kaz := newTestBureau(t, "OMN"), newTestBureau(t, "KAZ")
	acfg := newTestDevice(t, omn, "Amina", crypto.RoleOfficer, kaz)
	var failing atomic.Bool
	acfg.FailCommit = func(n uint64) error {
		if failing.Load() && n%3 == 0 {
			return errors.New("injected: disk write failed")
		}
		return nil
	}
	acfg.MaxValueBytes, acfg.MaxChangeBytes = 48<<10, 64<<10
	a := openTestAgent(t, acfg)
	b := openTestAgent(t, newTestDevice(t, omn, "Bilal", crypto.RoleOfficer, kaz))
	k := openTestAgent(t, newTestDevice(t, kaz, "Kairat", crypto.RoleOfficer, omn))
	var victims []*Agent
	for i := range 3 {
		victims = append(victims, openTestAgent(t, newTestDevice(t, omn, fmt.Sprint("Victim ", i), crypto.RoleOfficer, kaz)))
	}
	sp, err := a.CreateSpace("stress", []string{"KAZ"})
	if err != nil {
		t.Fatal(err)
	}
	id := advSpaceID(t, sp.ID)
	advPut(t, a, sp.ID, "seed", "first")
	all := append([]*Agent{a, b, k}, victims...)
	advSettle(t, all...)
	for _, v := range victims {
		advPut(t, v, sp.ID, "v-"+v.dev.String()[:6], "victim's")
	}
	advSettle(t, all...)
	var revs [][]byte
	for _, v := range victims {
		revs = append(revs, advRevoke(t, omn, v.dev, map[crypto.SpaceID]uint64{id: advStateOfHead(t, v, id, v.dev)}, 0, time.Now()))
	}
	dir := t.TempDir()

	// Every error a goroutine meets that the test did not provoke ends the
	// test; provoked ones (injected commit failures, too large) are expected.
	var mu sync.Mutex
	var unexpected []error
	fail := func(what string, err error) {
		if err == nil || errors.Is(err, errTooLarge) || errors.Is(err, ErrClosed) {
			return
		}
		// Injected commit failures, as each path reports them, and the
		// writes queued behind one, built on the state it lost (the
		// committer fails them too: store.ErrStaleWrite).
		if msg := err.Error(); strings.Contains(msg, "injected") || strings.Contains(msg, "store write failed") ||
			errors.Is(err, errStaleWrite) || strings.Contains(msg, errStaleWrite.Error()) {
			return
		}
		mu.Lock()
		unexpected = append(unexpected, fmt.Errorf("%s: %w", what, err))
		mu.Unlock()
	}
	var acked sync.Map // record -> value acknowledged by A
	var wg sync.WaitGroup
	run := func(fn func(i int)) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range rounds {
				fn(i)
			}
		}()
	}
	ctx := context.Background()

	// Writers on A: plain writes, too-large writes (a validation error), and
	// release changes that make the next write rotate the epoch.
	run(func(i int) {
		rec, val := fmt.Sprintf("w%02d", i%5), fmt.Sprint("value ", i)
		if _, err := a.PutFields(api.RecordPutRequest{Space: sp.ID, Record: rec, Fields: []api.FieldValue{{Name: "name", Value: val}}}); err == nil {
			acked.Store(rec, val)
		} else {
			fail("put", err)
		}
		// Two values under the value limit, over the change limit together.
		big := strings.Repeat("x", 40<<10)
		if _, err := a.PutFields(api.RecordPutRequest{Space: sp.ID, Record: "big", Fields: []api.FieldValue{{Name: "scan", Value: big}, {Name: "scan2", Value: big}}}); err == nil {
			fail("too large put", errors.New("accepted"))
		}
	})
	run(func(i int) {
		_, err := a.ChangeRelease(api.SpaceBureauRequest{Space: sp.ID, Bureau: "KAZ"}, i%2 == 1)
		fail("release", err)
		_, err = a.PutFields(api.RecordPutRequest{Space: sp.ID, Record: "rot", Fields: []api.FieldValue{{Name: "n", Value: fmt.Sprint(i)}}})
		fail("put after release change", err)
	})
	run(func(i int) {
		if i < len(revs) {
			_, err := a.AddRevocation(revs[i])
			fail("revoke", err)
		}
	})
	run(func(i int) {
		failing.Store(i%2 == 0)
		time.Sleep(time.Millisecond)
	})
	// B writes (and rotates on its own once it hears of a revocation); its
	// envelopes reach A through the sync ingest path, and A's reach B.
	run(func(i int) {
		_, err := b.PutFields(api.RecordPutRequest{Space: sp.ID, Record: fmt.Sprintf("b%02d", i%4), Fields: []api.FieldValue{{Name: "name", Value: fmt.Sprint("bilal ", i)}}})
		fail("b put", err)
		if i < len(revs) {
			_, err := b.AddRevocation(revs[i])
			fail("b revoke", err)
		}
		for _, pair := range [][2]*Agent{{b, a}, {a, b}, {k, a}} {
			from, to := pair[0], pair[1]
			var envs []fsync.Envelope
			err := from.Envelopes(id, func(env []byte) error {
				h, _ := crypto.ParseHeader(env)
				envs = append(envs, fsync.Envelope{Space: fsync.SpaceID(id), Author: fsync.PeerID(h.Author), Seq: h.Seq, Data: append([]byte(nil), env...)})
				return nil
			})
			fail("envelopes", err)
			for _, r := range (syncAdapter{to}).IngestBatch(fsync.PeerID(from.dev), envs) {
				var re *fsync.RejectError
				if !errors.As(r.Err, &re) {
					fail("ingest batch", r.Err)
				}
			}
		}
		_, err = a.ShareKeys()
		fail("share keys", err)
	})
	run(func(i int) {
		want, out := filepath.Join(dir, fmt.Sprint("want", i)), filepath.Join(dir, fmt.Sprint("b", i, ".bundle"))
		if _, err := a.WriteWant(api.BundleWantRequest{Out: want}); err != nil {
			fail("want", err)
			return
		}
		if _, err := b.ExportBundle(ctx, api.BundleExportRequest{Want: want, Out: out}, nil); err != nil {
			fail("export from b", err)
			return
		}
		_, err := a.ImportBundle(ctx, api.BundleImportRequest{File: out}, nil)
		fail("import", err)
		_, err = a.ExportBundle(ctx, api.BundleExportRequest{Out: out + ".a"}, nil)
		fail("export from a", err)
	})
	// Readers of A's state. History opens every envelope of the space with
	// the space's epoch keys while rotations add keys: it runs more often.
	for range 2 {
		run(func(i int) {
			for _, rec := range []string{"rot", "w01", "seed", "b01"} {
				if _, err := a.History(api.RecordRef{Space: sp.ID, Record: rec}); !errors.Is(err, ErrNotFound) {
					fail("history", err)
				}
			}
		})
	}
	run(func(i int) {
		_ = a.Status()
		_, err = a.GetRecord(api.RecordRef{Space: sp.ID, Record: "seed"})
		fail("get", err)
		_, err = a.ConflictsList(api.ConflictsListRequest{})
		fail("conflicts", err)
		_, err = a.MetricsText()
		fail("metrics", err)
		_ = a.ListSpaces()
		_ = a.CertConflicts()
		_, err = a.Digest(api.SpaceRef{Space: sp.ID})
		fail("digest", err)
	})
	wg.Wait()
	failing.Store(false)
	for _, err := range unexpected {
		t.Error(err)
	}
	// Nothing acknowledged is lost, also across a restart, and the two
	// writers converge.
	advSettle(t, a, b, k)
	a = advReopen(t, a)
	acked.Range(func(rec, val any) bool {
		r, err := a.GetRecord(api.RecordRef{Space: sp.ID, Record: rec.(string)})
		if err != nil {
			t.Errorf("acknowledged %s lost: %v", rec, err)
			return true
		}
		// Only this goroutine wrote these records, one after another: the
		// last acknowledged value is the value.
		if got := r.Fields["name"].Value; got != val.(string) {
			t.Errorf("acknowledged %s = %q, record holds %q", rec, val, got)
		}
		return true
	})
	if st := a.Status(); len(st.Missing) != 0 {
		t.Fatalf("missing after the stress: %+v", st.Missing)
	}
	advSettle(t, a, b, k)
	advSameDigests(t, sp.ID, a, b)
}

// TestRefusedWriteDoesNotReload: writes refused by validation (too large,
// unknown space, nothing to write) leave the state as it was and cost no
// reload; a write whose commit fails does reload, so the count is live.
func TestRefusedWriteDoesNotReload(t *testing.T) {
	omn := newTestBureau(t, "OMN")
	cfg := newTestDevice(t, omn, "Amina", crypto.RoleOfficer)
	cfg.MaxValueBytes, cfg.MaxChangeBytes = 48<<10, 64<<10
	var failNext atomic.Bool
	cfg.FailCommit = func(uint64) error {
		if failNext.Swap(false) {
			return errors.New("injected: disk write failed")
		}
		return nil
	}
	a := openTestAgent(t, cfg)
	sp, err := a.CreateSpace("case", nil)
	if err != nil {
		t.Fatal(err)
	}
	advPut(t, a, sp.ID, "r", "v1")
	before := a.reloads.Load()
	big := strings.Repeat("x", 40<<10)
	if _, err := a.PutFields(api.RecordPutRequest{Space: sp.ID, Record: "big", Fields: []api.FieldValue{{Name: "a", Value: big}, {Name: "b", Value: big}}}); !errors.Is(err, errTooLarge) {
		t.Fatalf("too large change: %v", err)
	}
	if _, err := a.PutFields(api.RecordPutRequest{Space: "no-such-space", Record: "r", Fields: []api.FieldValue{{Name: "a", Value: "x"}}}); !errors.Is(err, ErrNotFound) {
		t.Fatalf("unknown space: %v", err)
	}
	if _, err := a.PutFields(api.RecordPutRequest{Space: sp.ID, Record: "r"}); err == nil {
		t.Fatal("a put of nothing was accepted")
	}
	if n := a.reloads.Load() - before; n != 0 {
		t.Fatalf("refused writes reloaded the state %d times", n)
	}
	advPut(t, a, sp.ID, "r", "v2")
	failNext.Store(true)
	if _, err := a.PutFields(api.RecordPutRequest{Space: sp.ID, Record: "r", Fields: []api.FieldValue{{Name: "name", Value: "lost"}}}); err == nil {
		t.Fatal("the injected commit failure did not fail the write")
	}
	advPut(t, a, sp.ID, "r", "v3") // builds on the state reloaded after the failure
	if n := a.reloads.Load() - before; n != 1 {
		t.Fatalf("a failed commit reloaded %d times, want 1", n)
	}
	if v, err := advValue(a, sp.ID, "r"); err != nil || v != "v3" {
		t.Fatalf("after the failed commit: %q, %v", v, err)
	}
}

// TestHeadsReportOnlyDurable: sync's Ingest returns before the envelope is
// on disk (one fsync serves many), so Heads, which peers take as what this
// device holds, must report only what reached the disk. Here the commits
// of received envelopes fail: Heads must not claim them (before the fix it
// reported them, and a peer would count its writes as held here).
func TestHeadsReportOnlyDurable(t *testing.T) {
	omn := newTestBureau(t, "OMN")
	a := openTestAgent(t, newTestDevice(t, omn, "Amina", crypto.RoleOfficer))
	bcfg := newTestDevice(t, omn, "Bilal", crypto.RoleOfficer)
	var failing atomic.Bool
	bcfg.FailCommit = func(uint64) error {
		if failing.Load() {
			return errors.New("injected: disk write failed")
		}
		return nil
	}
	b := openTestAgent(t, bcfg)
	sp, err := a.CreateSpace("case", nil)
	if err != nil {
		t.Fatal(err)
	}
	id := advSpaceID(t, sp.ID)
	for i := range 6 {
		advPut(t, a, sp.ID, fmt.Sprint("r", i), "v")
	}
	advCerts(t, b, a)
	log := advLog(t, a, id, a.dev)
	sb := syncAdapter{b}
	ingest := func(envs [][]byte) {
		t.Helper()
		for _, env := range envs {
			h, _ := crypto.ParseHeader(env)
			_, err := sb.Ingest(fsync.PeerID(a.dev), fsync.Envelope{Space: fsync.SpaceID(id), Author: fsync.PeerID(h.Author), Seq: h.Seq, Data: env})
			var re *fsync.RejectError
			if err != nil && !(failing.Load() && errors.As(err, &re)) {
				// While commits fail, a later envelope may find the
				// failure, reload, and be refused as a gap: sync sends
				// it again next round.
				t.Fatalf("ingest seq %d: %v", h.Seq, err)
			}
		}
	}
	ingest(log[:3])
	if heads, err := sb.Heads(fsync.SpaceID(id)); err != nil || heads[fsync.PeerID(a.dev)] != 3 {
		t.Fatalf("heads after three: %v, %v", heads, err) // and they are on disk now
	}
	failing.Store(true)
	ingest(log[3:]) // handed to the committer, which fails them
	heads, err := sb.Heads(fsync.SpaceID(id))
	if err != nil {
		t.Fatal(err)
	}
	if got := heads[fsync.PeerID(a.dev)]; got != 3 {
		t.Fatalf("heads report seq %d of A's log; only 3 reached the disk", got)
	}
	failing.Store(false)
	ingest(log[3:]) // sync sends them again
	heads, err = sb.Heads(fsync.SpaceID(id))
	if err != nil {
		t.Fatal(err)
	}
	if got := heads[fsync.PeerID(a.dev)]; got != uint64(len(log)) {
		t.Fatalf("after the retry heads report seq %d, want %d", got, len(log))
	}
}

// TestWriteTransactionPanicUnlocks: a transaction that panics after
// changing the state releases stateMu, and the next transaction reloads
// the state from the store, so nothing of the panicked one survives.
func TestWriteTransactionPanicUnlocks(t *testing.T) {
	omn := newTestBureau(t, "OMN")
	a := openTestAgent(t, newTestDevice(t, omn, "Amina", crypto.RoleOfficer))
	sp, err := a.CreateSpace("case", nil)
	if err != nil {
		t.Fatal(err)
	}
	advPut(t, a, sp.ID, "r", "v1")
	id := advSpaceID(t, sp.ID)
	before := a.reloads.Load()
	func() {
		defer func() {
			if recover() == nil {
				t.Fatal("the transaction did not panic")
			}
		}()
		a.withWrite(func(tx *tx) error {
			tx.changed()
			a.spaces[id].heads[a.dev] = head{Seq: 999} // a change the store never saw
			panic("a bug in a transaction")
		})
	}()
	done := make(chan error, 1)
	go func() {
		_, err := a.PutFields(api.RecordPutRequest{Space: sp.ID, Record: "r", Fields: []api.FieldValue{{Name: "v", Value: "v2"}}})
		done <- err
	}()
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(30 * time.Second): // a hang guard, not a timing check
		t.Fatal("stateMu is still held after the panic")
	}
	if a.reloads.Load() == before {
		t.Fatal("the next transaction did not reload the state")
	}
	if v, err := advValue(a, sp.ID, "r"); err != nil || v != "v2" {
		t.Fatalf("after the panic: %q, %v", v, err)
	}
	if got := advStateOfHead(t, a, id, a.dev); got == 999 || got == 1000 {
		t.Fatalf("the panicked transaction's head %d survived", got)
	}
}
