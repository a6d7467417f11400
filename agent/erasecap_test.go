package agent

import (
	"crypto/rand"
	"errors"
	"testing"
	"time"

	"fieldsync/agent/api"
	"fieldsync/crypto"
)

// An owner officer's laptop taken over before its revocation mints
// record-erase markers listing made-up slots, each up to 65,536 segments
// and as many chunks: every replica, relays included, kept every one on
// disk and every reference in memory. Now one device's markers are capped
// (maxRecordErasuresPerAuthor, maxRecordErasureRefsPerAuthor): beyond the
// cap they are refused and counted, on a relay as on an officer, and a
// marker held already is still taken again.
func TestInsiderRecordEraseMarkerFloodCapped(t *testing.T) {
	m := newMarkerMint(t)
	o, r := m.o, openTestAgent(t, newTestDevice(t, m.omn, "relay", crypto.RoleRelay))
	transfer(t, m.h, r)
	mint := func(first uint64, segs, chunks int) []byte { return m.mint(t, first, segs, chunks) }
	// The reference cap: one marker at the format's limits fills it...
	big := mint(1000, crypto.MaxErasedSegments, crypto.MaxErasedSegments)
	small := mint(1, 1, 0)
	for _, x := range []*Agent{o, r} {
		if fresh, err := x.AddErasure(big); err != nil || !fresh {
			t.Fatalf("the first marker: %v %v", fresh, err)
		}
		// ...and the next one is refused, counted as such.
		if _, err := x.AddErasure(small); !errors.Is(err, errErasureCap) {
			t.Fatalf("a marker beyond its author's %d references: %v, want refused", maxRecordErasureRefsPerAuthor, err)
		}
		// AddErasure itself does not count: the sync adapter and bundle
		// import do, by this reason.
		if rejectReason(&erasureRefused{errErasureCap}) != RejectErasureCap {
			t.Fatalf("a capped marker is not counted as %s", RejectErasureCap)
		}
		// A marker held already is taken again (sync offers it every round).
		if _, err := x.AddErasure(big); err != nil {
			t.Fatalf("the held marker again: %v", err)
		}
	}
}

// The same device's markers are capped in number too: a flood of one-slot
// markers stops at maxRecordErasuresPerAuthor.
func TestInsiderRecordEraseMarkerCountCapped(t *testing.T) {
	if testing.Short() {
		t.Skip("mints 4,097 markers")
	}
	m := newMarkerMint(t)
	for i := range maxRecordErasuresPerAuthor + 1 {
		_, err := m.o.AddErasure(m.mint(t, uint64(1000+i), 1, 0))
		if i < maxRecordErasuresPerAuthor && err != nil {
			t.Fatalf("marker %d: %v", i, err)
		}
		if i == maxRecordErasuresPerAuthor && !errors.Is(err, errErasureCap) {
			t.Fatalf("marker %d, beyond the cap: %v, want refused", i, err)
		}
	}
}

// markerMint is a hostile owner officer h with a space that observer o
// holds, and a way to mint record-erase markers in it listing slots of o.
type markerMint struct {
	h, o *Agent
	omn  *testBureau
	id   crypto.SpaceID
}

func newMarkerMint(t *testing.T) *markerMint {
	t.Helper()
	m := &markerMint{omn: newTestBureau(t, "OMN")}
	m.h = openTestAgent(t, newTestDevice(t, m.omn, "Hostile", crypto.RoleOfficer))
	m.o = openTestAgent(t, newTestDevice(t, m.omn, "Olga", crypto.RoleOfficer))
	sp, err := m.h.CreateSpace("case", nil)
	if err != nil {
		t.Fatal(err)
	}
	m.id = bundleSpaceID(t, sp.ID)
	transfer(t, m.o, m.h)
	transfer(t, m.h, m.o)
	return m
}

// mint signs a marker listing segs slots of o from seq first on, and
// chunks random chunk references.
func (m *markerMint) mint(t *testing.T, first uint64, segs, chunks int) []byte {
	t.Helper()
	var nonce [16]byte
	var key *crypto.SpaceKey
	m.h.withRead(func() error { s := m.h.spaces[m.id]; nonce, key = s.meta.Nonce, s.current; return nil })
	var refs []crypto.SegmentRef
	for i := range segs {
		refs = append(refs, crypto.SegmentRef{Author: m.o.dev, Seq: first + uint64(i), Index: 0})
	}
	var cr []crypto.ChunkRef
	for range chunks {
		var c crypto.ChunkRef
		rand.Read(c[:])
		cr = append(cr, c)
	}
	e, err := crypto.NewRecordErasure(m.h.id, m.id, nonce, m.omn.b.Public().Fingerprint(), key, "made-up", refs, cr, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	return e.Marshal()
}

// An officer mints erase markers for made-up spaces of its own bureau:
// each was a tombstone on every replica, without limit. Markers of spaces
// not held here are now capped per author; a marker of a space held here
// is still taken beyond it.
func TestInsiderSpaceEraseMarkerFloodCapped(t *testing.T) {
	if testing.Short() {
		t.Skip("mints 4,097 markers")
	}
	omn := newTestBureau(t, "OMN")
	h := openTestAgent(t, newTestDevice(t, omn, "Hostile", crypto.RoleOfficer))
	r := openTestAgent(t, newTestDevice(t, omn, "relay", crypto.RoleRelay))
	sp, err := h.CreateSpace("case", nil)
	if err != nil {
		t.Fatal(err)
	}
	real := bundleSpaceID(t, sp.ID)
	transfer(t, h, r)
	owner := omn.b.Public().Fingerprint()
	for i := range maxSpaceErasuresPerAuthor + 1 {
		var nonce [16]byte
		rand.Read(nonce[:])
		e, err := crypto.NewErasure(h.id, crypto.SpaceIDFor(owner, nonce), nonce, owner, time.Now())
		if err != nil {
			t.Fatal(err)
		}
		_, err = r.AddErasure(e.Marshal())
		if i < maxSpaceErasuresPerAuthor && err != nil {
			t.Fatalf("marker %d: %v", i, err)
		}
		if i == maxSpaceErasuresPerAuthor && !errors.Is(err, errErasureCap) {
			t.Fatalf("marker %d, beyond the cap: %v, want refused", i, err)
		}
	}
	var nonce [16]byte
	h.withRead(func() error { nonce = h.spaces[real].meta.Nonce; return nil })
	e, err := crypto.NewErasure(h.id, real, nonce, owner, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	if fresh, err := r.AddErasure(e.Marshal()); err != nil || !fresh {
		t.Fatalf("the marker of a space the relay holds, beyond the cap: %v %v", fresh, err)
	}
}

// An owner officer (or its laptop, taken over) signs a record-erase marker
// that names a decoy record by its keyed tag but lists the segments of
// another record: every replica cuts them (relays cannot read, and replicas
// must converge), and the victim record's history said nothing of it — its
// changes just vanished, erased under another record's name. Now a replica
// that can read the segments records which records they were and shows the
// erasure, flagged, in the victim record's history; an honest erasure shows
// in the erased record's history unflagged.
func TestInsiderMisattributedRecordEraseShown(t *testing.T) {
	omn := newTestBureau(t, "OMN")
	h := openTestAgent(t, newTestDevice(t, omn, "Hostile", crypto.RoleOfficer))
	v := openTestAgent(t, newTestDevice(t, omn, "Victor", crypto.RoleOfficer))
	o := openTestAgent(t, newTestDevice(t, omn, "Olga", crypto.RoleOfficer))
	sp, err := h.CreateSpace("case", nil)
	if err != nil {
		t.Fatal(err)
	}
	id := bundleSpaceID(t, sp.ID)
	for _, x := range []*Agent{v, o} {
		transfer(t, x, h)
	}
	if _, err := h.ShareKeys(); err != nil {
		t.Fatal(err)
	}
	for _, x := range []*Agent{v, o} {
		transfer(t, h, x)
	}
	advPut(t, v, sp.ID, "victim", "evidence")
	advPut(t, v, sp.ID, "decoy", "nothing")
	transfer(t, v, h)
	transfer(t, v, o)
	var refs []crypto.SegmentRef
	var nonce [16]byte
	var key *crypto.SpaceKey
	h.withRead(func() error {
		s := h.spaces[id]
		nonce, key = s.meta.Nonce, s.current
		refs, _, _, err = h.recordSegments(s, "victim")
		return err
	})
	if err != nil || len(refs) == 0 {
		t.Fatalf("victim's segments: %v %v", refs, err)
	}
	e, err := crypto.NewRecordErasure(h.id, id, nonce, omn.b.Public().Fingerprint(), key, "decoy", refs, nil, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	if fresh, err := o.AddErasure(e.Marshal()); err != nil || !fresh {
		t.Fatalf("the marker: %v %v", fresh, err)
	}
	if got, _ := advValue(o, sp.ID, "victim"); got == "evidence" {
		t.Fatalf("the marker did not cut the victim record here")
	}
	hist, err := o.History(api.RecordRef{Space: sp.ID, Record: "victim"})
	if err != nil {
		t.Fatal(err)
	}
	var shown *api.HistoryEntry
	for i := range hist {
		if hist[i].Outcome == api.OutcomeErased {
			shown = &hist[i]
		}
	}
	if shown == nil || shown.Author != h.dev.String() || shown.Error == "" {
		t.Fatalf("the victim record's history does not show who erased it under another name: %+v", hist)
	}
	// An honest erasure: shown in the erased record's history, unflagged.
	if _, err := o.EraseRecord(api.RecordEraseRequest{Space: sp.ID, Record: "decoy", Reason: "test"}); err != nil {
		t.Fatal(err)
	}
	hist, err = o.History(api.RecordRef{Space: sp.ID, Record: "decoy"})
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, x := range hist {
		if x.Outcome == api.OutcomeErased {
			n++
			if x.Author != o.dev.String() || x.Error != "" {
				t.Fatalf("the honest erasure in history: %+v", x)
			}
		}
	}
	if n != 1 {
		t.Fatalf("%d erasures in the decoy's history, want 1: %+v", n, hist)
	}
}
