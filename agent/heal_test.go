package agent

import (
	"bytes"
	"context"
	"strings"
	"testing"

	"fieldsync/agent/api"
	"fieldsync/crypto"
	fsync "fieldsync/sync"
)

// heldOf returns holder's copy of author's envelope at seq.
func heldOf(t *testing.T, holder, author *Agent, sp api.Space, seq uint64) []byte {
	t.Helper()
	env, err := holder.db.get(envKey(mustSpaceID(t, sp.ID), author.dev, seq))
	if err != nil {
		t.Fatal(err)
	}
	return env
}

// digestsEqual fails unless a and b hold the same state of the space.
func digestsEqual(t *testing.T, a, b *Agent, sp api.Space) {
	t.Helper()
	da, err1 := a.Digest(api.SpaceRef{Space: sp.ID})
	db, err2 := b.Digest(api.SpaceRef{Space: sp.ID})
	if err1 != nil || err2 != nil || da.Digest != db.Digest || da.Envelopes != db.Envelopes {
		t.Fatalf("states differ: %+v %v vs %+v %v", da, err1, db, err2)
	}
}

// A stub of a live write (its values segment cut by a hostile peer) is
// healed when a whole copy of the same envelope arrives: the value is
// back, the held envelope is the whole one, the state equals the state
// of a replica that got the whole copy first, and it is counted.
func TestHealStubOfLiveValue(t *testing.T) {
	_, a, b, sp, seqs := threeWrites(t)
	for _, s := range seqs[:2] {
		if err := ingestNew(t, b, envAt(t, a, sp, s)); err != nil {
			t.Fatal(err)
		}
	}
	whole := envAt(t, a, sp, seqs[2])
	if err := ingestNew(t, b, cutEvery(t, whole, valuesOnly)); err != nil {
		t.Fatal(err)
	}
	r, err := b.GetRecord(api.RecordRef{Space: sp.ID, Record: "r"})
	if err != nil || !r.Fields["f"].Siblings[0].Withheld {
		t.Fatalf("the stub applied with its value: %+v %v (the test proves nothing)", r.Fields["f"], err)
	}
	added, err := b.Ingest(whole)
	if err != nil || added {
		t.Fatalf("whole copy: added %v, %v", added, err)
	}
	r, err = b.GetRecord(api.RecordRef{Space: sp.ID, Record: "r"})
	if f := r.Fields["f"]; err != nil || f.Value != "v3" || f.Siblings[0].Withheld || f.Conflict {
		t.Fatalf("after the whole copy b shows %+v %v", f, err)
	}
	if held := heldOf(t, b, a, sp, seqs[2]); !bytes.Equal(held, whole) {
		t.Fatal("b still holds the stub")
	}
	digestsEqual(t, a, b, sp)
	if st := b.Status(); st.Healed != 1 {
		t.Fatalf("status healed %d, want 1", st.Healed)
	}
	if m, err := b.MetricsText(); err != nil || !strings.Contains(m, "\nfieldsync_stub_values_healed_total 1\n") {
		t.Fatalf("metrics (%v) lack fieldsync_stub_values_healed_total 1", err)
	}
	hist, err := b.History(api.RecordRef{Space: sp.ID, Record: "r"})
	if err != nil || hist[2].Ops[0].Pruned {
		t.Fatalf("history still shows v3 withheld: %+v %v", hist, err)
	}
	if c := compactNow(t, b, sp.ID); c.Spaces[0].Withheld != 0 {
		t.Fatalf("compact counts %d withheld", c.Spaces[0].Withheld)
	}
	// Again: nothing more to heal.
	if added, err := b.Ingest(whole); err != nil || added || b.Status().Healed != 1 {
		t.Fatalf("a second whole copy: %v %v, healed %d", added, err, b.Status().Healed)
	}
}

// A pruned value stays pruned: a whole copy of a change whose values are
// dead (superseded) does not put them back.
func TestHealLeavesPrunedValues(t *testing.T) {
	_, a, _, sp, seqs := threeWrites(t)
	old := envAt(t, a, sp, seqs[0])
	if c := compactNow(t, a, sp.ID); c.Spaces[0].Envelopes < 2 {
		t.Fatalf("compacted %+v", c)
	}
	pruned := envAt(t, a, sp, seqs[0])
	if bytes.Equal(pruned, old) {
		t.Fatal("v1 not pruned: the test proves nothing")
	}
	if added, err := a.Ingest(old); err != nil || added {
		t.Fatalf("whole old copy: %v %v", added, err)
	}
	if !bytes.Equal(envAt(t, a, sp, seqs[0]), pruned) || a.Status().Healed != 0 {
		t.Fatal("a whole copy un-pruned a dead value")
	}
}

// An erased record never comes back: a whole copy made before the record
// erasure, arriving at a replica that held a stub of its live write and
// then took the erase marker, heals nothing (the canary stays gone).
func TestHealNeverUnerases(t *testing.T) {
	_, a, b, sp, seqs := threeWrites(t)
	put(t, a, sp, "r", "g", "erase-canary")
	a.stateMu.Lock()
	last := a.spaces[mustSpaceID(t, sp.ID)].heads[a.dev].Seq
	a.stateMu.Unlock()
	whole := envAt(t, a, sp, last)
	for _, s := range seqs {
		if err := ingestNew(t, b, envAt(t, a, sp, s)); err != nil {
			t.Fatal(err)
		}
	}
	if err := ingestNew(t, b, cutEvery(t, whole, valuesOnly)); err != nil {
		t.Fatal(err)
	}
	if _, err := a.EraseRecord(api.RecordEraseRequest{Space: sp.ID, Record: "r", Reason: "court order"}); err != nil {
		t.Fatal(err)
	}
	for _, blob := range a.recordErasureBlobs() {
		if _, err := b.AddRecordErasure(blob); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := b.Ingest(whole); err != nil {
		t.Fatal(err)
	}
	if st := b.Status(); st.Healed != 0 {
		t.Fatalf("healed %d segments of an erased record", st.Healed)
	}
	if r, err := b.GetRecord(api.RecordRef{Space: sp.ID, Record: "r"}); err == nil && len(r.Fields) > 0 {
		t.Fatalf("the erased record came back: %+v", r.Fields)
	}
	held := heldOf(t, b, a, sp, last)
	if bytes.Contains(held, []byte("erase-canary")) || !bytes.Equal(held, envAt(t, a, sp, last)) {
		t.Fatal("b holds another copy than the eraser's cut one")
	}
	infos, _ := crypto.Segments(held)
	for i, in := range infos {
		if !in.Erased {
			t.Fatalf("segment %d of the erased record's change is sealed again", i)
		}
	}
	digestsEqual(t, a, b, sp)
}

// transferLastAsStub hands to all of from's certificates and envelopes of
// space, from's own newest one as a stub: its values segments cut, as a
// hostile peer would send a live write.
func transferLastAsStub(t *testing.T, from, to *Agent, space crypto.SpaceID) {
	t.Helper()
	from.stateMu.Lock()
	last := from.spaces[space].heads[from.dev].Seq
	from.stateMu.Unlock()
	for _, c := range from.Certificates() {
		if _, err := to.AddCertificate(c); err != nil {
			t.Fatal(err)
		}
	}
	err := from.Envelopes(space, func(env []byte) error {
		if h, _ := crypto.ParseHeader(env); h.Author == from.dev && h.Seq == last {
			env = cutEvery(t, env, valuesOnly)
		}
		_, err := to.Ingest(env)
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
}

// withheldOverSync sets up two officers over real sync: b holds a stub of
// a's live write (v3 of r.f) and the same heads as a, so no round sends it
// again. It returns once b runs and knows a's address, with a probe of
// whether b still shows v3 withheld and an explicit round from b to a.
func withheldOverSync(t *testing.T) (a, b *Agent, sp api.Space, withheld func() bool, round func()) {
	_, cfgA, cfgB := omnOfficers(t)
	cfgA.CompactEvery, cfgB.CompactEvery = -1, -1
	a = startSyncAgent(t, cfgA)
	sp, err := a.CreateSpace("case", nil)
	if err != nil {
		t.Fatal(err)
	}
	space := mustSpaceID(t, sp.ID)
	cfgB.Join = []string{a.SyncAddr()}
	b = openTestAgent(t, cfgB)
	transfer(t, b, a)
	if _, err := a.ShareKeys(); err != nil {
		t.Fatal(err)
	}
	for _, v := range []string{"v1", "v2", "v3"} {
		put(t, a, sp, "r", "f", v)
	}
	transferLastAsStub(t, a, b, space)
	withheld = func() bool {
		r, err := b.GetRecord(api.RecordRef{Space: sp.ID, Record: "r"})
		return err == nil && r.Fields["f"].Siblings[0].Withheld
	}
	if !withheld() {
		t.Fatal("b does not show v3 withheld: the test proves nothing")
	}
	runAgent(t, b)
	waitFor(t, "b's sync to start", func() bool { return b.SyncAddr() != "" })
	// b joined a over memberlist; until the join is through, b has no
	// address for a (under the race detector that took longer than the start).
	waitFor(t, "b to know a's address", func() bool {
		for _, p := range b.engine().Peers() {
			if p.ID == fsync.PeerID(a.DeviceID()) && p.Alive && p.Addr != "" {
				return true
			}
		}
		return false
	})
	round = func() {
		t.Helper()
		if _, err := b.engine().SyncWith(context.Background(), fsync.PeerID(a.DeviceID())); err != nil {
			t.Fatal(err)
		}
	}
	round()
	if !withheld() || b.Status().Healed != 0 {
		t.Fatal("healed without asking: the test proves nothing")
	}
	return a, b, sp, withheld, round
}

// Over real sync: once `compact` has counted the live value b holds
// without its bytes, b asks (its heads told to peers go below the stub)
// and the next round's whole copy heals it.
func TestHealAsksPeers(t *testing.T) {
	a, b, sp, withheld, round := withheldOverSync(t)
	if c := compactNow(t, b, sp.ID); c.Spaces[0].Withheld != 1 {
		t.Fatalf("compact on b: %+v", c)
	}
	round()
	waitFor(t, "the stub to heal", func() bool { return b.Status().Healed == 1 && !withheld() })
	digestsEqual(t, a, b, sp)
}

// Without `compact`: the background pass that looks for stubs (the first,
// then every healAskEvery-th) asks; the others do not.
func TestHealAsksPeersInBackground(t *testing.T) {
	a, b, sp, withheld, round := withheldOverSync(t)
	b.backgroundPasses.Store(1) // the next pass is the second
	for range healAskEvery - 1 {
		b.compactBackground()
		round()
		if !withheld() || b.Status().Healed != 0 {
			t.Fatalf("healed after background pass %d, which does not ask", b.backgroundPasses.Load())
		}
	}
	b.compactBackground() // pass healAskEvery+1
	round()
	waitFor(t, "the stub to heal", func() bool { return b.Status().Healed == 1 && !withheld() })
	digestsEqual(t, a, b, sp)
}
