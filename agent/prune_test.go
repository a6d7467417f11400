package agent

import (
	"testing"

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
func threeWrites(t *testing.T) (a, b *Agent, sp api.Space, seqs [3]uint64) {
	omn := newTestBureau(t, "OMN")
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
	return a, b, sp, seqs
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
			a, b, sp, seqs := threeWrites(t)
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
