package agent

import (
	"bytes"
	"fmt"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"fieldsync/crdt"

	"fieldsync/agent/api"
	"fieldsync/crypto"
)

// cutEvery returns env with the segments whose index passes keep cut
// (crypto.EraseSegments): odd indexes are the values segments of the
// version 2 layout, even ones the skeletons.
func cutEvery(t testing.TB, env []byte, cut func(i int) bool) []byte {
	t.Helper()
	infos, err := crypto.Segments(env)
	if err != nil {
		t.Fatal(err)
	}
	var idx []int
	for i, in := range infos {
		if !in.Erased && cut(i) {
			idx = append(idx, i)
		}
	}
	out, err := crypto.EraseSegments(env, idx...)
	if err != nil {
		t.Fatal(err)
	}
	if crypto.Hash(out) != crypto.Hash(env) {
		t.Fatal("cutting changed the envelope ID")
	}
	return out
}

func valuesOnly(i int) bool { return i%2 == 1 }
func everySegment(int) bool { return true }

// threeWrites has a write record r.f = v1, v2, v3 in turn (each saw the
// one before) and returns the agents, the space and the seqs of the three
// changes. b is enrolled, holds the space's key and everything before v1.
func threeWrites(t *testing.T) (omn *testBureau, a, b *Agent, sp api.Space, seqs [3]uint64) {
	omn = newTestBureau(t, "OMN")
	a = openTestAgent(t, newTestDevice(t, omn, "Amina", crypto.RoleOfficer))
	b = openTestAgent(t, newTestDevice(t, omn, "Boris", crypto.RoleOfficer))
	sp, err := a.CreateSpace("case", nil)
	if err != nil {
		t.Fatal(err)
	}
	transfer(t, b, a)
	if _, err := a.ShareKeys(); err != nil {
		t.Fatal(err)
	}
	transfer(t, a, b)
	for i, v := range []string{"v1", "v2", "v3"} {
		if _, err := a.PutFields(api.RecordPutRequest{Space: sp.ID, Record: "r", Fields: []api.FieldValue{{Name: "f", Value: v}}}); err != nil {
			t.Fatal(err)
		}
		a.stateMu.Lock()
		seqs[i] = a.spaces[mustSpaceID(t, sp.ID)].heads[a.dev].Seq
		a.stateMu.Unlock()
	}
	return omn, a, b, sp, seqs
}

// envAt returns a's envelope (a's own log) at seq.
func envAt(t *testing.T, a *Agent, sp api.Space, seq uint64) []byte {
	t.Helper()
	env, err := a.db.get(envKey(mustSpaceID(t, sp.ID), a.dev, seq))
	if err != nil {
		t.Fatal(err)
	}
	return env
}

// The resurrection of docs/design.md §7 ("Bounded storage"): b holds v1
// whole, receives v2 pruned and v3 whole (v3 saw only v2). With v2's
// values segment cut, its skeleton still names v1 as seen: b shows v3
// alone, the same state as a device that held every change whole. The
// control cuts v2 whole (skeleton too, the stub of the first sketch): v1
// comes back beside v3, which is the attack the skeleton prevents.
func TestPruneStubKillsWhatItSaw(t *testing.T) {
	for _, tc := range []struct {
		name      string
		cut       func(int) bool
		resurrect bool
	}{{"values cut", valuesOnly, false}, {"skeleton cut too", everySegment, true}} {
		t.Run(tc.name, func(t *testing.T) {
			_, a, b, sp, seqs := threeWrites(t)
			if err := ingestNew(t, b, envAt(t, a, sp, seqs[0])); err != nil {
				t.Fatal(err)
			}
			r, err := b.GetRecord(api.RecordRef{Space: sp.ID, Record: "r"})
			if err != nil || r.Fields["f"].Value != "v1" {
				t.Fatalf("b before: %+v %v", r.Fields["f"], err)
			}
			if err := ingestNew(t, b, cutEvery(t, envAt(t, a, sp, seqs[1]), tc.cut)); err != nil {
				t.Fatal(err)
			}
			if err := ingestNew(t, b, envAt(t, a, sp, seqs[2])); err != nil {
				t.Fatal(err)
			}
			r, err = b.GetRecord(api.RecordRef{Space: sp.ID, Record: "r"})
			if err != nil {
				t.Fatal(err)
			}
			f := r.Fields["f"]
			resurrected := f.Conflict || len(f.Siblings) != 1
			if resurrected != tc.resurrect || f.Value != "v3" {
				t.Fatalf("b shows %+v; resurrection expected: %v", f, tc.resurrect)
			}
			if !tc.resurrect {
				da, _ := a.Digest(api.SpaceRef{Space: sp.ID})
				db, _ := b.Digest(api.SpaceRef{Space: sp.ID})
				if da.Digest != db.Digest || da.Envelopes != db.Envelopes {
					t.Fatalf("state differs from the whole copy's: %+v vs %+v", da, db)
				}
			}
		})
	}
}

// ingestNew has a ingest one envelope that must be new to it.
func ingestNew(t testing.TB, a *Agent, env []byte) error {
	t.Helper()
	added, err := a.Ingest(env)
	if err == nil && !added {
		t.Fatal("envelope not added")
	}
	return err
}

// envVersions counts the versions Badger's files hold under the space's
// envelope keys (overwritten ones included).
func envVersions(t *testing.T, a *Agent, space crypto.SpaceID) (keys, versions int) {
	t.Helper()
	seen := map[string]bool{}
	err := a.db.kv.VersionsUnder(envSpacePrefix(space), func(k, v []byte, deleted bool) error {
		seen[string(k)] = true
		versions++
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return len(seen), versions
}

func compactNow(t *testing.T, a *Agent, space string) api.Compacted {
	t.Helper()
	zero := int64(0)
	c, err := a.Compact(api.CompactRequest{Space: space, MinAgeSeconds: &zero})
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func put(t *testing.T, a *Agent, sp api.Space, rec, field, v string) {
	t.Helper()
	if _, err := a.PutFields(api.RecordPutRequest{Space: sp.ID, Record: rec, Fields: []api.FieldValue{{Name: field, Value: v}}}); err != nil {
		t.Fatal(err)
	}
}

// Compaction cuts the values segments of superseded writes and of removed
// notes, never of a live value or of a change younger than the minimum
// age; the state, the envelope IDs and the chains stay; history shows the
// pruned ops as pruned; the old versions leave Badger's files; a new
// device that receives the pruned envelopes reaches the same state.
func TestCompactPrunesDeadValues(t *testing.T) {
	omn, a, b, sp, _ := threeWrites(t) // r.f = v1, v2, v3
	space := mustSpaceID(t, sp.ID)
	put(t, a, sp, "live", "f", "keep-me")
	if _, err := a.AddNote(api.NoteAddRequest{Space: sp.ID, Record: "n", Text: "note-canary"}); err != nil {
		t.Fatal(err)
	}
	rec, err := a.GetRecord(api.RecordRef{Space: sp.ID, Record: "n"})
	if err != nil || len(rec.Notes) != 1 {
		t.Fatal(err)
	}
	id, err := crdt.ParseDot(rec.Notes[0].ID)
	if err != nil {
		t.Fatal(err)
	}
	_, err = a.writeRecord(a.spaces[space], "n", func(r *crdt.Record) ([]crdt.Op, error) {
		op, err := r.NoteRemove(crdt.NoteID(id))
		return []crdt.Op{op}, err
	})
	if err != nil {
		t.Fatal(err)
	}
	put(t, a, sp, "d", "f", "del-canary")
	if _, err := a.DeleteRecord(api.RecordRef{Space: sp.ID, Record: "d"}); err != nil {
		t.Fatal(err)
	}
	transfer(t, a, b)
	before, _ := a.Digest(api.SpaceRef{Space: sp.ID})

	// The default minimum age (24 h) keeps everything written just now.
	if c, err := a.Compact(api.CompactRequest{Space: sp.ID}); err != nil || c.Spaces[0].Envelopes != 0 {
		t.Fatalf("compacted young changes: %+v %v", c, err)
	}
	c := compactNow(t, a, sp.ID)
	st := c.Spaces[0]
	// v1 and v2 (superseded), the note (removed), d's put (deleted), and
	// the note's removal and d's delete, whose values segments hold no
	// value (empty entries): six.
	if st.Envelopes != 6 || st.Values != 6 || st.BytesAfter >= st.BytesBefore || !c.Reclaimed || st.Withheld != 0 {
		t.Fatalf("compaction: %+v", c)
	}
	if again := compactNow(t, a, sp.ID); again.Spaces[0].Envelopes != 0 {
		t.Fatalf("second pass cut again: %+v", again)
	}
	after, _ := a.Digest(api.SpaceRef{Space: sp.ID})
	if after.Digest != before.Digest || after.Envelopes != before.Envelopes || after.Bytes >= before.Bytes {
		t.Fatalf("digest before %+v after %+v", before, after)
	}
	if keys, versions := envVersions(t, a, space); versions != keys {
		t.Fatalf("%d versions of %d envelope keys left after reclaiming", versions, keys)
	}
	r, err := a.GetRecord(api.RecordRef{Space: sp.ID, Record: "live"})
	if err != nil || r.Fields["f"].Value != "keep-me" {
		t.Fatalf("live value: %+v %v", r, err)
	}
	hist, err := a.History(api.RecordRef{Space: sp.ID, Record: "r"})
	if err != nil {
		t.Fatal(err)
	}
	var shown []string
	for _, e := range hist {
		for _, o := range e.Ops {
			shown = append(shown, fmt.Sprintf("%s/%v", o.Value, o.Pruned))
		}
	}
	if strings.Join(shown, " ") != "/true /true v3/false" {
		t.Fatalf("history shows %v", shown)
	}
	certs := map[crypto.DeviceID]*crypto.Certificate{a.dev: a.cert, b.dev: b.cert}
	checkChains(t, a, space, certs)
	// A device joining now gets the stubs: same state, same envelopes.
	c2 := openTestAgent(t, newTestDevice(t, omn, "Chen", crypto.RoleOfficer))
	transfer(t, c2, a)
	if _, err := a.ShareKeys(); err != nil {
		t.Fatal(err)
	}
	transfer(t, a, c2)
	dc, _ := c2.Digest(api.SpaceRef{Space: sp.ID})
	da, _ := a.Digest(api.SpaceRef{Space: sp.ID}) // with the key share to c2
	if dc != da || dc.Digest != before.Digest {
		t.Fatalf("new device: %+v, want %+v", dc, da)
	}
	// b, holding every envelope whole, compacts to the same.
	if cb := compactNow(t, b, sp.ID); cb.Spaces[0].Envelopes != 6 {
		t.Fatalf("b compacted %+v", cb)
	}
	db, _ := b.Digest(api.SpaceRef{Space: sp.ID})
	if db != after {
		t.Fatalf("b: %+v, a: %+v", db, after)
	}
}

// A device that returns after the others pruned, holding old envelopes
// whole and writes nobody saw (docs/design.md §7, "Bounded storage"):
// what was overwritten or deleted elsewhere does not come back, its own
// writes are the concurrent edits they are (a register conflict beside
// the newest value, a delete-vs-edit conflict), every replica ends with
// the same state and envelopes, and its own pass then prunes its whole
// copies without changing the state.
func TestPruneReturningDevice(t *testing.T) {
	omn := newTestBureau(t, "OMN")
	a := openTestAgent(t, newTestDevice(t, omn, "Amina", crypto.RoleOfficer))
	b := openTestAgent(t, newTestDevice(t, omn, "Boris", crypto.RoleOfficer))
	r := openTestAgent(t, newTestDevice(t, omn, "Rania", crypto.RoleOfficer))
	sp, err := a.CreateSpace("case", nil)
	if err != nil {
		t.Fatal(err)
	}
	transfer(t, b, a)
	transfer(t, r, a)
	if _, err := a.ShareKeys(); err != nil {
		t.Fatal(err)
	}
	put(t, a, sp, "r", "f", "v1")
	put(t, a, sp, "d", "f", "deleted-canary")
	transfer(t, a, b)
	transfer(t, a, r)
	// r goes away. a overwrites r.f twice and deletes d; a and b prune.
	put(t, a, sp, "r", "f", "v2")
	put(t, a, sp, "r", "f", "v3")
	if _, err := a.DeleteRecord(api.RecordRef{Space: sp.ID, Record: "d"}); err != nil {
		t.Fatal(err)
	}
	transfer(t, a, b)
	if ca, cb := compactNow(t, a, sp.ID), compactNow(t, b, sp.ID); ca.Spaces[0].Envelopes == 0 || cb.Spaces[0].Envelopes != ca.Spaces[0].Envelopes {
		t.Fatalf("a pruned %+v, b %+v", ca, cb)
	}
	// Offline, r writes on what it holds: r.f over v1, d.g on the record
	// it still sees.
	put(t, r, sp, "r", "f", "offline")
	put(t, r, sp, "d", "g", "edit")
	// r returns: every pair syncs, twice over.
	for range 2 {
		for _, p := range [][2]*Agent{{r, b}, {b, r}, {b, a}, {a, b}, {r, a}, {a, r}} {
			transfer(t, p[0], p[1])
		}
	}
	var want api.Digest
	for i, x := range []*Agent{a, b, r} {
		d, err := x.Digest(api.SpaceRef{Space: sp.ID})
		if err != nil {
			t.Fatal(err)
		}
		if i == 0 {
			want = d
		} else if d.Digest != want.Digest || d.Envelopes != want.Envelopes {
			// Bytes differ: r holds whole what the others pruned.
			t.Fatalf("device %d: %+v, want %+v", i, d, want)
		}
		rec, err := x.GetRecord(api.RecordRef{Space: sp.ID, Record: "r"})
		if err != nil {
			t.Fatal(err)
		}
		var vals []string
		for _, s := range rec.Fields["f"].Siblings {
			vals = append(vals, s.Value)
		}
		if !rec.Fields["f"].Conflict || strings.Join(vals, ",") != "offline,v3" && strings.Join(vals, ",") != "v3,offline" {
			t.Fatalf("device %d: r.f = %+v, want the conflict v3 / offline and never v1", i, rec.Fields["f"])
		}
		dr, err := x.GetRecord(api.RecordRef{Space: sp.ID, Record: "d"})
		if err != nil {
			t.Fatal(err)
		}
		if _, back := dr.Fields["f"]; back || !dr.Deleted || !dr.DeleteConflict || dr.Fields["g"].Value != "edit" {
			t.Fatalf("device %d: d = %+v, want deleted with r's edit in conflict and no f", i, dr)
		}
	}
	// r prunes its own whole copies of what the others pruned.
	if cr := compactNow(t, r, sp.ID); cr.Spaces[0].Envelopes == 0 {
		t.Fatalf("r pruned nothing: %+v", cr)
	}
	if d, _ := r.Digest(api.SpaceRef{Space: sp.ID}); d != want {
		t.Fatalf("r after its pass: %+v, want %+v", d, want)
	}
}

// Pruning more than one store transaction holds is split into several
// commits: what is written back is the cut envelopes, here 200 of ~3.5 KB
// each (long field names stay in the skeleton), where a transaction takes
// ~460 KB.
func TestCompactSplitsLargeBatches(t *testing.T) {
	omn := newTestBureau(t, "OMN")
	a := openTestAgent(t, newTestDevice(t, omn, "Amina", crypto.RoleOfficer))
	sp, err := a.CreateSpace("case", nil)
	if err != nil {
		t.Fatal(err)
	}
	var fields []api.FieldValue
	for f := range 6 {
		fields = append(fields, api.FieldValue{Name: fmt.Sprintf("%d%s", f, strings.Repeat("f", 500))})
	}
	for round := range 2 {
		for i := range 200 {
			for f := range fields {
				fields[f].Value = fmt.Sprintf("value %d", round)
			}
			if _, err := a.PutFields(api.RecordPutRequest{Space: sp.ID, Record: fmt.Sprintf("r%d", i), Fields: fields}); err != nil {
				t.Fatal(err)
			}
		}
	}
	before, _ := a.Digest(api.SpaceRef{Space: sp.ID})
	c := compactNow(t, a, sp.ID)
	if c.Spaces[0].Envelopes != 200 || c.Spaces[0].BytesAfter >= c.Spaces[0].BytesBefore {
		t.Fatalf("compacted %+v", c)
	}
	if after, _ := a.Digest(api.SpaceRef{Space: sp.ID}); after.Digest != before.Digest || after.Envelopes != before.Envelopes {
		t.Fatal("state or envelope set changed")
	}
}

// A peer that sends a stub of a live write (its values segment cut): the
// receiver applies it without the value — the same state as any replica
// that got that stub, never an error or a made-up value — shows the
// sibling as value_withheld, lists the op as pruned in history, and counts
// it in compact's withheld (docs/design.md §7: an availability limit).
func TestPruneHostileStubOfLiveValue(t *testing.T) {
	_, a, b, sp, seqs := threeWrites(t)
	for _, s := range seqs[:2] {
		if err := ingestNew(t, b, envAt(t, a, sp, s)); err != nil {
			t.Fatal(err)
		}
	}
	if err := ingestNew(t, b, cutEvery(t, envAt(t, a, sp, seqs[2]), valuesOnly)); err != nil {
		t.Fatal(err)
	}
	r, err := b.GetRecord(api.RecordRef{Space: sp.ID, Record: "r"})
	if err != nil {
		t.Fatal(err)
	}
	f := r.Fields["f"]
	if f.Conflict || len(f.Siblings) != 1 || !f.Siblings[0].Withheld || f.Value != "" {
		t.Fatalf("b shows %+v, want v3's sibling withheld", f)
	}
	if ra, _ := a.GetRecord(api.RecordRef{Space: sp.ID, Record: "r"}); ra.Fields["f"].Siblings[0].Withheld {
		t.Fatal("a, holding v3 whole, shows it withheld")
	}
	hist, err := b.History(api.RecordRef{Space: sp.ID, Record: "r"})
	if err != nil || len(hist) != 3 || !hist[2].Ops[0].Pruned || hist[1].Ops[0].Pruned {
		t.Fatalf("history %+v %v", hist, err)
	}
	if c := compactNow(t, b, sp.ID); c.Spaces[0].Withheld != 1 {
		t.Fatalf("compact on b: %+v", c)
	}
}

// The agent prunes by itself once CompactEvery changes were applied:
// the pass runs on the after-commit worker, which stopAfterWork drains.
func TestCompactBackground(t *testing.T) {
	omn := newTestBureau(t, "OMN")
	cfg := newTestDevice(t, omn, "Amina", crypto.RoleOfficer)
	cfg.CompactEvery, cfg.PruneMinAge = 4, -1
	a := openTestAgent(t, cfg)
	sp, err := a.CreateSpace("case", nil)
	if err != nil {
		t.Fatal(err)
	}
	for i := range 4 {
		put(t, a, sp, "r", "f", fmt.Sprintf("v%d", i))
	}
	a.stopAfterWork() // runs what was queued, then stops
	hist, err := a.History(api.RecordRef{Space: sp.ID, Record: "r"})
	if err != nil {
		t.Fatal(err)
	}
	var pruned []bool
	for _, e := range hist {
		pruned = append(pruned, e.Ops[0].Pruned)
	}
	if fmt.Sprint(pruned) != "[true true true false]" {
		t.Fatalf("pruned by the background pass: %v", pruned)
	}
}

// A superseded attachment keeps its manifest (its values segment is not
// cut): a later record erasure must still find the file's chunks to drop.
func TestCompactKeepsAttachmentManifests(t *testing.T) {
	omn := newTestBureau(t, "OMN")
	a := openTestAgent(t, newTestDevice(t, omn, "Amina", crypto.RoleOfficer))
	sp, err := a.CreateSpace("case", nil)
	if err != nil {
		t.Fatal(err)
	}
	photo := filepath.Join(t.TempDir(), "passport.jpg")
	writeRandomFile(t, photo, 200<<10, 3)
	if _, err := a.Attach(api.AttachRequest{Space: sp.ID, Record: "p1", Field: "passport", Path: photo}); err != nil {
		t.Fatal(err)
	}
	put(t, a, sp, "p1", "passport", "replaced by text")
	put(t, a, sp, "p1", "passport", "and again")
	if c := compactNow(t, a, sp.ID); c.Spaces[0].Envelopes != 1 {
		t.Fatalf("compacted %+v: want only the superseded text pruned", c)
	}
	var chunks []crypto.ChunkRef
	a.withRead(func() error {
		var err error
		_, chunks, _, err = a.recordSegments(a.spaces[mustSpaceID(t, sp.ID)], "p1")
		return err
	})
	if len(chunks) == 0 {
		t.Fatal("the erasure no longer finds the superseded attachment's chunks")
	}
}

// Compaction beside writes: reclaiming flushes Badger's memtables with a
// DropPrefix, which makes Badger refuse every write while it runs; run
// beside the agent's writers, a write failed ("Writes are blocked"). Now the
// flush and the value-log collection run with the writers held back.
func TestCompactBesideWrites(t *testing.T) {
	_, a, _, sp, _ := threeWrites(t)
	stop := make(chan struct{})
	errs := make(chan error, 1)
	go func() {
		defer close(errs)
		for i := 0; ; i++ {
			select {
			case <-stop:
				return
			default:
			}
			if _, err := a.PutFields(api.RecordPutRequest{Space: sp.ID, Record: fmt.Sprint("w", i%50),
				Fields: []api.FieldValue{{Name: "f", Value: fmt.Sprint("v", i)}}}); err != nil {
				errs <- err
				return
			}
		}
	}()
	zero := int64(0)
	for range 20 {
		if _, err := a.Compact(api.CompactRequest{MinAgeSeconds: &zero}); err != nil {
			t.Errorf("compact: %v", err)
			break
		}
	}
	close(stop)
	if err := <-errs; err != nil {
		t.Fatalf("a write beside compaction failed: %v", err)
	}
}

// Background passes also rewrite the store's files once enough is pruned:
// the whole old version of a pruned envelope then stays in no table and no
// value-log file. Without it, Badger's own compactions rarely reached those
// keys (their values live in the value log) and every old version stayed
// on disk until someone ran `fieldsync compact`.
func TestCompactBackgroundReclaims(t *testing.T) {
	omn := newTestBureau(t, "OMN")
	cfg := newTestDevice(t, omn, "Amina", crypto.RoleOfficer)
	cfg.CompactEvery, cfg.PruneMinAge, cfg.ReclaimAfterPruned = 4, -1, 1
	a := openTestAgent(t, cfg)
	sp, err := a.CreateSpace("case", nil)
	if err != nil {
		t.Fatal(err)
	}
	id := mustSpaceID(t, sp.ID)
	put(t, a, sp, "r", "f", strings.Repeat("superseded ", 100)) // in the value log
	var first []byte
	a.Envelopes(id, func(env []byte) error { first = bytes.Clone(env); return nil })
	for i := range 3 {
		put(t, a, sp, "r", "f", fmt.Sprint("v", i+1))
	}
	a.stopAfterWork() // runs the queued pass, then stops
	a.Close()
	hits, _ := forensicHits(t, cfg, id, map[string][]byte{"the pruned envelope's whole old version": first})
	for _, h := range hits {
		if strings.HasPrefix(h, "the pruned") {
			t.Fatalf("after a background pass: %s", h)
		}
	}
}

// Overwritten records leave their old values in the store's files too
// (in the value log from 512 bytes on), pruned or not: after enough
// changes applied, a background pass rewrites the files, and no old
// version of the record is left.
func TestCompactBackgroundReclaimsOverwrites(t *testing.T) {
	const canary = "CANARYoverwritten"
	omn := newTestBureau(t, "OMN")
	cfg := newTestDevice(t, omn, "Amina", crypto.RoleOfficer)
	cfg.CompactEvery = 2 // a rewrite after 16 × 2 changes; nothing is old enough to prune
	a := openTestAgent(t, cfg)
	sp, err := a.CreateSpace("case", nil)
	if err != nil {
		t.Fatal(err)
	}
	id := mustSpaceID(t, sp.ID)
	put(t, a, sp, "r", "f", canary+strings.Repeat(".", 600))
	for i := range 2 * reclaimAfterPasses {
		put(t, a, sp, "r", "f", fmt.Sprint("v", i)+strings.Repeat(".", 600))
	}
	a.stopAfterWork()
	a.Close()
	hits, _ := forensicHits(t, cfg, id, map[string][]byte{"an old version of the record": []byte(canary)})
	for _, h := range hits {
		if strings.HasPrefix(h, "an old version") {
			t.Fatalf("after the background passes: %s", h)
		}
	}
}

// `compact --min-age 0` prunes every dead value, also of changes whose HLC
// is ahead of this device's clock (a peer's clock pushed ours within the
// drift allowed, or the clock was set back): "at once" skipped them, and
// the chaos test's returning-device phase found nothing to prune (seed 3).
func TestCompactAtOnceBeyondOwnClock(t *testing.T) {
	omn := newTestBureau(t, "OMN")
	var offset atomic.Int64
	cfg := newTestDevice(t, omn, "Amina", crypto.RoleOfficer)
	cfg.Now = func() time.Time { return time.Now().Add(time.Duration(offset.Load())) }
	a := openTestAgent(t, cfg)
	sp, err := a.CreateSpace("case", nil)
	if err != nil {
		t.Fatal(err)
	}
	put(t, a, sp, "r", "f", "v1")
	put(t, a, sp, "r", "f", "v2")
	offset.Store(int64(-5 * time.Minute)) // the clock set back: v1's HLC is ahead of it
	c := compactNow(t, a, sp.ID)
	if len(c.Spaces) != 1 || c.Spaces[0].Envelopes != 1 {
		t.Fatalf("compact at once with the changes' HLC ahead of the clock: %+v, want v1's envelope cut", c.Spaces)
	}
	if r, err := a.GetRecord(api.RecordRef{Space: sp.ID, Record: "r"}); err != nil || r.Fields["f"].Value != "v2" {
		t.Fatalf("r after compact: %+v %v", r, err)
	}
}
