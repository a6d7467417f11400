package agent

import (
	"crypto/rand"
	"testing"

	"fieldsync/agent/api"
	"fieldsync/crdt"
	"fieldsync/crypto"
	fsync "fieldsync/sync"
)

// forge signs, as a's device, a change for the next seq of its log in the
// space without storing it — what a cloned laptop would produce.
func forge(t *testing.T, a *Agent, space crypto.SpaceID, value string) []byte {
	t.Helper()
	a.stateMu.Lock()
	defer a.stateMu.Unlock()
	sp := a.spaces[space]
	hd := sp.heads[a.dev]
	ch := &crdt.Change{Author: crdt.ReplicaID(a.dev), Seq: hd.Seq + 1, HLC: a.clock.Now(a.physMillis()),
		Ops: []crdt.Op{crdt.NewPut("r1", "f", []byte(value))}}
	body, err := ch.MarshalBinary()
	if err != nil {
		t.Fatal(err)
	}
	env, err := crypto.Seal(crypto.Header{Kind: crypto.KindChange, Space: space, Author: a.dev, Seq: hd.Seq + 1, HLC: ch.HLC.Pack(), Prev: hd.Hash}, body, sp.current, a.id, rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return env
}

// TestForkFrozenEverywhere: a device signs two different envelopes for one
// seq and each reaches a different replica. The replica that sees both
// freezes the author there; the evidence it passes on makes the other do
// the same; both end with the same state and refuse the author's later
// envelopes in that space.
func TestForkFrozenEverywhere(t *testing.T) {
	omn := newTestBureau(t, "OMN")
	a := openTestAgent(t, newTestDevice(t, omn, "Amina", crypto.RoleOfficer))
	b := openTestAgent(t, newTestDevice(t, omn, "Boris", crypto.RoleOfficer))
	c := openTestAgent(t, newTestDevice(t, omn, "Chen", crypto.RoleOfficer))
	sp, _ := a.CreateSpace("case", nil)
	id, _ := crypto.ParseSpaceID(sp.ID)
	a.PutFields(api.RecordPutRequest{Space: sp.ID, Record: "r1", Fields: []api.FieldValue{{Name: "f", Value: "honest"}}})
	transfer(t, b, a)
	transfer(t, c, a)
	if n, err := a.ShareKeys(); err != nil || n != 2 {
		t.Fatalf("ShareKeys = %d, %v", n, err)
	}
	transfer(t, a, b)
	transfer(t, a, c)

	eB, eC := forge(t, a, id, "clone one"), forge(t, a, id, "clone two")
	if _, err := b.Ingest(eB); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Ingest(eC); err != nil {
		t.Fatal(err)
	}
	forkSeq := a.spaces[id].heads[a.dev].Seq + 1
	// C meets B's branch: proof of the fork.
	if _, err := c.Ingest(eB); !isReject(err, RejectFork) {
		t.Fatalf("second envelope for one seq: %v", err)
	}
	if st := c.Status(); len(st.Forks) != 1 || st.Forks[0].Seq != forkSeq || st.Forks[0].Author != a.dev.String() {
		t.Fatalf("c's forks: %+v", st.Forks)
	}
	// The evidence travels as a mesh object; B freezes too.
	blobs := c.evidenceBlobs()
	if len(blobs) != 1 {
		t.Fatalf("c holds %d pieces of evidence", len(blobs))
	}
	if added, err := (syncAdapter{b}).IngestMeshObject(fsyncPeer(), blobs[0]); err != nil || !added {
		t.Fatalf("b ingests the evidence: %v %v", added, err)
	}
	db, _ := b.Digest(api.SpaceRef{Space: sp.ID})
	dc, _ := c.Digest(api.SpaceRef{Space: sp.ID})
	if db != dc {
		t.Fatalf("b and c differ after freezing:\n%+v\n%+v", db, dc)
	}
	rb, _ := b.GetRecord(api.RecordRef{Space: sp.ID, Record: "r1"})
	if rb.Fields["f"].Value != "honest" || rb.Fields["f"].Conflict {
		t.Fatalf("b's r1 after the freeze: %+v", rb.Fields["f"])
	}
	// Anything more from the forked author in that space is refused.
	a.PutFields(api.RecordPutRequest{Space: sp.ID, Record: "r1", Fields: []api.FieldValue{{Name: "f", Value: "later"}}})
	var later []byte
	a.Envelopes(id, func(env []byte) error { later = env; return nil })
	for _, x := range []*Agent{b, c} {
		if _, err := x.Ingest(later); !isReject(err, RejectFrozen) {
			t.Fatalf("later envelope from the forked author: %v", err)
		}
	}
	// The freeze survives a restart.
	cfg := c.cfg
	c.Close()
	c2 := openTestAgent(t, cfg)
	if st := c2.Status(); len(st.Forks) != 1 {
		t.Fatalf("after restart: forks %+v", st.Forks)
	}
}

func fsyncPeer() fsync.Peer { return fsync.Peer{} }
