package agent

import (
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"fieldsync/agent/api"
	"fieldsync/crdt"
	"fieldsync/crypto"
	fsync "fieldsync/sync"
)

// recordNeedles are what must not survive a record's erasure anywhere: the
// canary's plaintext and the sealed bytes of every segment of the record
// (from a, before the erasure).
func recordNeedles(t *testing.T, a *Agent, space crypto.SpaceID, record, canary string) map[string][]byte {
	t.Helper()
	n := map[string][]byte{"canary plaintext": []byte(canary)}
	var refs []crypto.SegmentRef
	a.withRead(func() error {
		var err error
		refs, _, _, err = a.recordSegments(a.spaces[space], "p1")
		return err
	})
	for _, r := range refs {
		env, err := a.db.get(envKey(space, r.Author, r.Seq))
		if err != nil {
			t.Fatal(err)
		}
		infos, err := crypto.Segments(env)
		if err != nil {
			t.Fatal(err)
		}
		n[fmt.Sprintf("sealed segment %d of seq %d", r.Index, r.Seq)] = bytes.Clone(infos[r.Index].Sealed())
	}
	if len(refs) < 2 {
		t.Fatalf("only %d segments of the record: the check proves little", len(refs))
	}
	return n
}

// fieldChunks returns the chunk refs of the attachment in a record's field.
func fieldChunks(t *testing.T, a *Agent, space crypto.SpaceID, record, field string) []crypto.ChunkRef {
	t.Helper()
	var refs []crypto.ChunkRef
	a.withRead(func() error {
		r, err := a.loadRecord(a.spaces[space], crdt.RecordID(record))
		if err != nil || r == nil {
			t.Fatalf("record %s: %v", record, err)
		}
		v, ok := r.Register(field)
		if !ok {
			t.Fatalf("no field %s", field)
		}
		_, refs, _, err = parseManifest(v.Siblings[0].Value)
		return err
	})
	if len(refs) == 0 {
		t.Fatal("no chunks")
	}
	return refs
}

// recordHits is forensicHits without the keys naming the space (the space
// stays; only the record goes).
func recordHits(t *testing.T, cfg Config, space crypto.SpaceID, needles map[string][]byte) (out []string) {
	t.Helper()
	hits, versions := forensicHits(t, cfg, space, needles)
	if versions < 10 {
		t.Fatalf("%s: only %d versions read", cfg.Layout.Dir, versions)
	}
	for _, h := range hits {
		if !strings.HasPrefix(h, "a key ") {
			out = append(out, h)
		}
	}
	return out
}

// checkChains verifies every envelope of the space held by x: signature
// (against certs) and hash chain per author.
func checkChains(t *testing.T, x *Agent, space crypto.SpaceID, certs map[crypto.DeviceID]*crypto.Certificate) {
	t.Helper()
	prev := map[crypto.DeviceID][32]byte{}
	n := 0
	err := x.Envelopes(space, func(env []byte) error {
		h, err := crypto.ParseHeader(env)
		if err != nil {
			return err
		}
		if c := certs[h.Author]; c == nil {
			return fmt.Errorf("no certificate of %s", h.Author)
		} else if _, _, err := crypto.Verify(env, c.Device); err != nil {
			return fmt.Errorf("%s seq %d: %w", h.Author, h.Seq, err)
		}
		if h.Prev != prev[h.Author] {
			return fmt.Errorf("%s seq %d: chain broken", h.Author, h.Seq)
		}
		prev[h.Author] = crypto.Hash(env)
		n++
		return nil
	})
	if err != nil || n < 5 {
		t.Fatalf("chains of %s: %v (%d envelopes)", x.dev, err, n)
	}
}

// TestEraseRecordCanary is issue 16's record erasure: a canary in record
// p1, written in changes it shares with p2 and p3 (combined writes). Two
// owner officers, a partner's officer and the relay sync over loopback; a
// third owner officer is offline at the erasure. Afterwards no store holds
// the canary or any sealed segment of p1, in any version Badger holds
// (value log collected, old versions dropped); every author's chain still
// verifies; p2 and p3 are intact and identical everywhere; and a bundle
// made before the erasure does not bring p1 back.
func TestEraseRecordCanary(t *testing.T) {
	const canary = "CANARYrecord16"
	omn, kaz, all, R, A, sp := erasureMesh(t)
	cfgB, cfgD, cfgP := *all[1], *all[2], *all[3]
	space := bundleSpaceID(t, sp.ID)
	B, D, P := startStoppable(t, cfgB), startStoppable(t, cfgD), startStoppable(t, cfgP)
	officers := []*runningAgent{A, B, D, P}
	for _, x := range officers[1:] {
		waitFor(t, "every officer to hold the space's key", func() bool {
			x.stateMu.Lock()
			defer x.stateMu.Unlock()
			s := x.spaces[space]
			return s != nil && s.current != nil
		})
	}
	// p1 holds the canary; p2 and p3 share its changes. B writes p1 and p2
	// in one change too, so two authors' logs carry it.
	combinedChange(t, A.Agent, space, [2]string{"p2", "two"}, [2]string{"p1", "witness " + canary}, [2]string{"p3", "three"})
	waitFor(t, "B to read p1", func() bool {
		r, err := B.GetRecord(api.RecordRef{Space: sp.ID, Record: "p1"})
		return err == nil && r.Fields["f"].Value == "witness "+canary
	})
	combinedChange(t, B.Agent, space, [2]string{"p1", "seen again " + canary}, [2]string{"p2", "two, by B"})
	// Attachments: a photo holding the canary on p1 only (its chunks must
	// go), and one file on both p1 and p3 (its chunks must stay: p3 names
	// them).
	dir := t.TempDir()
	photo, shared := filepath.Join(dir, "passport.jpg"), filepath.Join(dir, "map.pdf")
	pix, doc := make([]byte, 300<<10), make([]byte, 200<<10)
	for i := range pix {
		pix[i], doc[i%len(doc)] = byte(i*7%251), byte(i*13%241)
	}
	copy(pix[1000:], canary)
	os.WriteFile(photo, pix, 0o600)
	os.WriteFile(shared, doc, 0o600)
	for _, at := range []api.AttachRequest{{Record: "p1", Field: "photo", Path: photo}, {Record: "p1", Field: "map", Path: shared}, {Record: "p3", Field: "map", Path: shared}} {
		at.Space = sp.ID
		if _, err := A.Attach(at); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := A.PutFields(api.RecordPutRequest{Space: sp.ID, Record: "p3", Fields: []api.FieldValue{{Name: "g", Value: "later"}}}); err != nil {
		t.Fatal(err)
	}
	for _, x := range append(officers, R) {
		waitFor(t, "every replica to hold every envelope", func() bool {
			d, err := x.Digest(api.SpaceRef{Space: sp.ID})
			da, _ := A.Digest(api.SpaceRef{Space: sp.ID})
			db, _ := B.Digest(api.SpaceRef{Space: sp.ID})
			return err == nil && d.Envelopes == da.Envelopes && da.Envelopes == db.Envelopes && d.Count > 0
		})
	}
	for _, x := range officers {
		waitFor(t, "every officer to read p1's last value", func() bool {
			r, err := x.GetRecord(api.RecordRef{Space: sp.ID, Record: "p1"})
			return err == nil && r.Fields["f"].Value == "seen again "+canary
		})
	}
	chunksA := A.AttachStatus().Chunks
	for _, x := range []*runningAgent{B, D, P, R} {
		waitFor(t, "every replica to hold every attachment chunk", func() bool { return x.AttachStatus().Chunks == chunksA })
	}
	if res, err := A.Find(api.FindRequest{Query: canary}); err != nil || len(res.Hits) == 0 {
		t.Fatalf("the canary is not found before the erasure (%v)", err)
	}
	needles := recordNeedles(t, A.Agent, space, "p1", canary)
	photoRefs := fieldChunks(t, A.Agent, space, "p1", "photo")
	sharedRefs := fieldChunks(t, A.Agent, space, "p3", "map")
	for i, r := range photoRefs {
		c, err := A.getChunk(space, r)
		if err != nil {
			t.Fatal(err)
		}
		needles[fmt.Sprintf("photo chunk %d", i)] = c
	}
	old := filepath.Join(t.TempDir(), "before.fsb")
	if _, err := A.ExportBundle(context.Background(), api.BundleExportRequest{Out: old}, nil); err != nil {
		t.Fatal(err)
	}
	D.stop() // offline at the erasure

	// Neither the partner's officer nor the relay may erase.
	for _, by := range []*runningAgent{P, R} {
		if _, err := by.EraseRecord(api.RecordEraseRequest{Space: sp.ID, Record: "p1", Reason: "hostile"}); !errors.Is(err, ErrForbidden) {
			t.Fatalf("%s erased the record: %v", by.cert.Role, err)
		}
	}
	er, err := A.EraseRecord(api.RecordEraseRequest{Space: sp.ID, Record: "p1", Reason: "court order 16/3"})
	if err != nil {
		t.Fatal(err)
	}
	if er.Segments < 2 || er.Envelopes < 2 {
		t.Fatalf("erase: %+v", er)
	}
	want := map[string]map[string]string{"p2": {"f": "two, by B"}, "p3": {"f": "three", "g": "later", "map": ""}}
	gone := func(x *runningAgent) func() bool {
		return func() bool {
			_, err := x.GetRecord(api.RecordRef{Space: sp.ID, Record: "p1"})
			return errors.Is(err, ErrNotFound)
		}
	}
	for _, x := range []*runningAgent{A, B, P} {
		waitFor(t, "the record's erasure to reach every officer", gone(x))
	}
	relayCut := func() bool {
		cut := 0
		R.Envelopes(space, func(env []byte) error {
			if infos, err := crypto.Segments(env); err == nil {
				for _, s := range infos {
					if s.Erased {
						cut++
					}
				}
			}
			return nil
		})
		return cut == er.Segments
	}
	waitFor(t, "the relay to cut the record's segments", relayCut)
	if er.Chunks != len(photoRefs) {
		t.Fatalf("the marker names %d chunks; the photo has %d (the shared file's must not be named)", er.Chunks, len(photoRefs))
	}
	D = startStoppable(t, cfgD)
	waitFor(t, "the device offline at the erasure to erase on its return", gone(D))
	if res, err := A.Find(api.FindRequest{Query: canary}); err != nil || len(res.Hits) != 0 {
		t.Fatalf("search after erasure: %+v, %v", res.Hits, err)
	}
	certs := map[crypto.DeviceID]*crypto.Certificate{}
	for _, c := range A.Certificates() {
		cert, err := crypto.ParseCertificate(c)
		if err != nil {
			t.Fatal(err)
		}
		certs[cert.Device.ID()] = cert
	}
	for _, x := range append([]*runningAgent{A, B, D, P}, R) {
		checkChains(t, x.Agent, space, certs)
		for _, r := range sharedRefs {
			if ok, _ := x.hasChunk(space, r); !ok {
				t.Fatalf("%s lost a chunk p3 still names", x.cert.Role)
			}
		}
		for _, r := range photoRefs {
			if ok, _ := x.hasChunk(space, r); ok {
				t.Fatalf("%s still holds a chunk of the erased photo", x.cert.Role)
			}
		}
	}
	for _, x := range []*runningAgent{A, B, D, P} {
		for id, fields := range want {
			waitFor(t, "the other records to be intact everywhere", func() bool {
				r, err := x.GetRecord(api.RecordRef{Space: sp.ID, Record: id})
				if err != nil || len(r.Fields) != len(fields) {
					return false
				}
				for f, v := range fields {
					if v == "" && r.Fields[f].Attachment == nil || v != "" && r.Fields[f].Value != v || r.Fields[f].Conflict {
						return false
					}
				}
				return true
			})
		}
	}

	// Every byte of every store.
	for i, x := range []*runningAgent{A, B, D, P, R} {
		x.stop()
		cfg := *all[i]
		for _, h := range recordHits(t, cfg, space, needles) {
			t.Errorf("%s: %s", filepath.Base(cfg.Layout.Dir), h)
		}
		scanForCanary(t, cfg.Layout.Dir, []byte(canary))
	}

	// The old bundle brings nothing back: not to B, which holds the cut
	// envelopes, and not to a new officer that has only the marker.
	B2 := openTestAgent(t, cfgB)
	if _, err := B2.ImportBundle(context.Background(), api.BundleImportRequest{File: old}, nil); err != nil {
		t.Fatal(err)
	}
	if _, err := B2.GetRecord(api.RecordRef{Space: sp.ID, Record: "p1"}); err == nil {
		t.Fatal("the old bundle brought p1 back")
	}
	markers := B2.erasureBlobs()
	B2.Close()
	for _, h := range recordHits(t, cfgB, space, needles) {
		t.Errorf("after the old bundle: %s", h)
	}
	cfgE := newTestDevice(t, omn, "Erlan", crypto.RoleOfficer, kaz)
	E := openTestAgent(t, cfgE)
	for _, c := range A.Certificates() {
		if _, err := E.AddCertificate(c); err != nil {
			t.Fatal(err)
		}
	}
	for _, m := range markers {
		if _, err := E.AddErasure(m); err != nil {
			t.Fatal(err)
		}
	}
	res, err := E.ImportBundle(context.Background(), api.BundleImportRequest{File: old}, nil)
	if err != nil || res.Added < 5 {
		t.Fatalf("old bundle into a new device: %+v %v", res, err)
	}
	checkChains(t, E, space, certs)
	E.Close()
	for _, h := range recordHits(t, cfgE, space, needles) {
		t.Errorf("new device after the old bundle: %s", h)
	}
}

// TestEraseRecordRefusedUnlessOwnerOfficer: a partner bureau's officer, a
// relay of the owning bureau and a revoked officer of the owning bureau
// each sign a valid record-erase marker; every receiver refuses each (by
// the API and as a sync mesh object) and keeps the record. An owner
// officer's marker is then taken: the refusals were the author's.
func TestEraseRecordRefusedUnlessOwnerOfficer(t *testing.T) {
	omn, kaz := newTestBureau(t, "OMN"), newTestBureau(t, "KAZ")
	a := openTestAgent(t, newTestDevice(t, omn, "Amina", crypto.RoleOfficer, kaz))
	b := openTestAgent(t, newTestDevice(t, omn, "Boris", crypto.RoleOfficer, kaz))
	c := openTestAgent(t, newTestDevice(t, omn, "Chingiz", crypto.RoleOfficer, kaz))
	p := openTestAgent(t, newTestDevice(t, kaz, "Parviz", crypto.RoleOfficer, omn))
	r := openTestAgent(t, newTestDevice(t, omn, "relay", crypto.RoleRelay, kaz))
	sp, err := a.CreateSpace("case", []string{"KAZ"})
	if err != nil {
		t.Fatal(err)
	}
	id := bundleSpaceID(t, sp.ID)
	for _, to := range []*Agent{b, c, p, r} {
		transfer(t, to, a)
	}
	if _, err := a.ShareKeys(); err != nil {
		t.Fatal(err)
	}
	combinedChange(t, a, id, [2]string{"p1", "secret"}, [2]string{"p2", "other"})
	for _, to := range []*Agent{b, c, p, r} {
		transfer(t, a, to)
	}
	var refs []crypto.SegmentRef
	var nonce [16]byte
	var key *crypto.SpaceKey
	a.withRead(func() error {
		s := a.spaces[id]
		nonce, key = s.meta.Nonce, s.current
		refs, _, _, err = a.recordSegments(s, "p1")
		return err
	})
	if len(refs) != 2 { // its skeleton and its values (docs/format.md)
		t.Fatalf("%d segments of p1", len(refs))
	}
	owner := omn.b.Public().Fingerprint()
	marker := func(by *Agent) []byte {
		e, err := crypto.NewRecordErasure(by.id, id, nonce, owner, key, "p1", refs, nil, time.Now())
		if err != nil {
			t.Fatal(err)
		}
		return e.Marshal()
	}
	rev, err := omn.b.Revoke(c.dev, map[crypto.SpaceID]uint64{id: 100}, 0, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	for _, to := range []*Agent{b, r} {
		if _, err := to.AddRevocation(rev.Marshal()); err != nil {
			t.Fatal(err)
		}
	}
	attacks := []struct {
		name string
		blob []byte
		want error
	}{
		{"partner bureau's officer", marker(p), crypto.ErrRole},
		{"owning bureau's relay", marker(r), crypto.ErrRole},
		{"revoked officer of the owning bureau", marker(c), crypto.ErrRevoked},
	}
	segsErased := func(x *Agent) int {
		n := 0
		x.Envelopes(id, func(env []byte) error {
			if infos, err := crypto.Segments(env); err == nil {
				for _, s := range infos {
					if s.Erased {
						n++
					}
				}
			}
			return nil
		})
		return n
	}
	for _, at := range attacks {
		for _, to := range []*Agent{b, r} {
			if _, err := to.AddErasure(at.blob); !errors.Is(err, at.want) {
				t.Errorf("%s's marker at %s: %v, want %v", at.name, to.cert.Role, err, at.want)
			}
			if _, err := (syncAdapter{to}).IngestMeshObject(fsyncPeer(), at.blob); err == nil {
				t.Errorf("%s's marker taken as a mesh object at %s", at.name, to.cert.Role)
			}
			if n := segsErased(to); n != 0 {
				t.Fatalf("%s's marker cut %d segments at %s", at.name, n, to.cert.Role)
			}
		}
	}
	if r, err := b.GetRecord(api.RecordRef{Space: sp.ID, Record: "p1"}); err != nil || r.Fields["f"].Value != "secret" {
		t.Fatalf("p1 after refused markers: %+v %v", r, err)
	}
	good := marker(a)
	for _, to := range []*Agent{b, r} {
		if added, err := (syncAdapter{to}).IngestMeshObject(fsyncPeer(), good); err != nil || !added {
			t.Fatalf("owner officer's marker at %s: %v %v", to.cert.Role, added, err)
		}
		if n := segsErased(to); n != 2 { // p1's skeleton and values
			t.Fatalf("%d segments cut at %s", n, to.cert.Role)
		}
	}
	if _, err := b.GetRecord(api.RecordRef{Space: sp.ID, Record: "p1"}); !errors.Is(err, ErrNotFound) {
		t.Fatalf("p1 after the erasure: %v", err)
	}
	if r, err := b.GetRecord(api.RecordRef{Space: sp.ID, Record: "p2"}); err != nil || r.Fields["f"].Value != "other" {
		t.Fatalf("p2 after the erasure: %+v %v", r, err)
	}
	// A record with changes in version 1 envelopes cannot be cut: refused.
	if _, err := b.EraseRecord(api.RecordEraseRequest{Space: sp.ID, Record: "nope", Reason: "x"}); !errors.Is(err, ErrNotFound) {
		t.Fatalf("erase of a record never written: %v", err)
	}
}

// TestEraseRecordTravelsByBundle: an air-gapped officer that got the record
// by bundle gets its erasure by bundle too (item 8), keeps the other record
// of the same change, and the old bundle does not bring the record back.
// bundlePair is an owner officer A and a colleague E who meet only by
// bundle (in dir), A's space, and, when shared, E holding the space and its
// key.
func bundlePair(t *testing.T, shared bool) (a, e *Agent, cfgE Config, dir string, sp api.Space, id crypto.SpaceID) {
	t.Helper()
	omn := newTestBureau(t, "OMN")
	a = openTestAgent(t, newTestDevice(t, omn, "Amina", crypto.RoleOfficer))
	cfgE = newTestDevice(t, omn, "Erlan", crypto.RoleOfficer)
	e = openTestAgent(t, cfgE)
	dir = t.TempDir()
	sp, err := a.CreateSpace("case", nil)
	if err != nil {
		t.Fatal(err)
	}
	id = bundleSpaceID(t, sp.ID)
	bundleCarry(t, dir, e, a) // A learns E
	if _, err := a.ShareKeys(); err != nil {
		t.Fatal(err)
	}
	if shared {
		bundleCarry(t, dir, a, e)
	}
	return a, e, cfgE, dir, sp, id
}

func TestEraseRecordTravelsByBundle(t *testing.T) {
	const canary = "CANARYrecbundle16"
	a, e, cfgE, dir, sp, id := bundlePair(t, false)
	combinedChange(t, a, id, [2]string{"p1", canary}, [2]string{"p2", "stays"})
	combinedChange(t, a, id, [2]string{"p2", "stays, edited"}, [2]string{"p1", canary + " again"})
	old := filepath.Join(dir, "old.fsb")
	if _, err := a.ExportBundle(context.Background(), api.BundleExportRequest{Out: old}, nil); err != nil {
		t.Fatal(err)
	}
	if res, err := e.ImportBundle(context.Background(), api.BundleImportRequest{File: old}, nil); err != nil || res.Added == 0 {
		t.Fatalf("first bundle: %+v %v", res, err)
	}
	needles := recordNeedles(t, e, id, "p1", canary)
	if _, err := a.EraseRecord(api.RecordEraseRequest{Space: sp.ID, Record: "p1", Reason: "retention ended"}); err != nil {
		t.Fatal(err)
	}
	if res := bundleCarry(t, dir, a, e); res.Erasures != 1 {
		t.Fatalf("the bundle after the erasure: %+v", res)
	}
	if _, err := e.GetRecord(api.RecordRef{Space: sp.ID, Record: "p1"}); !errors.Is(err, ErrNotFound) {
		t.Fatalf("p1 on E after the bundle: %v", err)
	}
	if _, err := e.ImportBundle(context.Background(), api.BundleImportRequest{File: old}, nil); err != nil {
		t.Fatal(err)
	}
	if _, err := e.GetRecord(api.RecordRef{Space: sp.ID, Record: "p1"}); !errors.Is(err, ErrNotFound) {
		t.Fatalf("the old bundle brought p1 back: %v", err)
	}
	if r, err := e.GetRecord(api.RecordRef{Space: sp.ID, Record: "p2"}); err != nil || r.Fields["f"].Value != "stays, edited" {
		t.Fatalf("p2 on E: %+v %v", r, err)
	}
	e.Close()
	for _, h := range recordHits(t, cfgE, id, needles) {
		t.Errorf("left on E: %s", h)
	}
}

// TestEraseRecordFinishedAtStart: a crash right after the marker and the
// cut envelopes are committed (before any drop) leaves the canary on disk;
// the next start finishes the erasure, and nothing of it is left.
func TestEraseRecordFinishedAtStart(t *testing.T) {
	const canary = "CANARYreccrash16"
	omn := newTestBureau(t, "OMN")
	cfg := newTestDevice(t, omn, "Amina", crypto.RoleOfficer)
	a := openTestAgent(t, cfg)
	sp, err := a.CreateSpace("case", nil)
	if err != nil {
		t.Fatal(err)
	}
	id := bundleSpaceID(t, sp.ID)
	combinedChange(t, a, id, [2]string{"p1", canary}, [2]string{"p2", "stays"})
	combinedChange(t, a, id, [2]string{"p2", "stays, edited"}, [2]string{"p1", canary + " again"})
	needles := recordNeedles(t, a, id, "p1", canary)
	crash := errors.New("crash")
	crashAfterStaging = func() error { return crash }
	_, err = a.EraseRecord(api.RecordEraseRequest{Space: sp.ID, Record: "p1", Reason: "test"})
	crashAfterStaging = nil
	if !errors.Is(err, crash) {
		t.Fatalf("erase with a crash: %v", err)
	}
	a.Close()
	if hits := recordHits(t, cfg, id, needles); len(hits) == 0 {
		t.Fatal("after the crash the canary is already gone: the test proves nothing")
	}
	a = openTestAgent(t, cfg)
	if _, err := a.GetRecord(api.RecordRef{Space: sp.ID, Record: "p1"}); !errors.Is(err, ErrNotFound) {
		t.Fatalf("p1 after the restart: %v", err)
	}
	if r, err := a.GetRecord(api.RecordRef{Space: sp.ID, Record: "p2"}); err != nil || r.Fields["f"].Value != "stays, edited" {
		t.Fatalf("p2 after the restart: %+v %v", r, err)
	}
	a.Close()
	for _, h := range recordHits(t, cfg, id, needles) {
		t.Errorf("after the restart: %s", h)
	}
}

// TestEraseRecordVersion1: a change written as a version 1 envelope (by a
// build before segmented changes) is still verified and applied, and a
// record it touches cannot be erased alone: refused, naming the way out.
func TestEraseRecordVersion1(t *testing.T) {
	omn := newTestBureau(t, "OMN")
	a := openTestAgent(t, newTestDevice(t, omn, "Amina", crypto.RoleOfficer))
	b := openTestAgent(t, newTestDevice(t, omn, "Boris", crypto.RoleOfficer))
	sp, err := a.CreateSpace("case", nil)
	if err != nil {
		t.Fatal(err)
	}
	id := bundleSpaceID(t, sp.ID)
	transfer(t, b, a)
	if _, err := a.ShareKeys(); err != nil {
		t.Fatal(err)
	}
	transfer(t, a, b)
	old := forge(t, a, id, "written by an older build") // record r1, version 1
	if h, _ := crypto.ParseHeader(old); h.Version != 1 {
		t.Fatal("forge no longer writes version 1")
	}
	if added, err := b.Ingest(old); err != nil || !added {
		t.Fatalf("version 1 change: %v %v", added, err)
	}
	if r, err := b.GetRecord(api.RecordRef{Space: sp.ID, Record: "r1"}); err != nil || r.Fields["f"].Value != "written by an older build" {
		t.Fatalf("r1 from a version 1 change: %+v %v", r, err)
	}
	bundlePut(t, b, sp.ID, "r1", "g", "new") // a version 2 change of r1 too
	_, err = b.EraseRecord(api.RecordEraseRequest{Space: sp.ID, Record: "r1", Reason: "test"})
	if !errors.Is(err, ErrForbidden) || !strings.Contains(err.Error(), "version 1") || !strings.Contains(err.Error(), "space erase") {
		t.Fatalf("erase of a record with a version 1 change: %v", err)
	}
}

// TestEraseRecordDropsPartialEnvelope: E holds only the first part of an
// envelope of the record (a resumable transfer cut mid-way, partial.go);
// the erasure reaching E drops that prefix too — it carries the segment's
// sealed bytes — and the envelope, sent whole later, arrives cut.
func TestEraseRecordDropsPartialEnvelope(t *testing.T) {
	const canary = "CANARYrecpartial16"
	a, e, cfgE, dir, sp, id := bundlePair(t, true) // E holds the space and its key
	combinedChange(t, a, id, [2]string{"p1", canary}, [2]string{"p2", "stays"})
	combinedChange(t, a, id, [2]string{"p2", "stays, edited"}, [2]string{"p1", canary + " again"})
	needles := recordNeedles(t, a, id, "p1", canary)
	// E receives the first 3/4 of A's newest envelope, then the round is cut.
	var newest []byte
	if err := a.Envelopes(id, func(env []byte) error { newest = bytes.Clone(env); return nil }); err != nil {
		t.Fatal(err)
	}
	h, err := crypto.ParseHeader(newest)
	if err != nil {
		t.Fatal(err)
	}
	p := fsync.Partial{Space: fsync.SpaceID(id), Author: fsync.PeerID(h.Author), Seq: h.Seq, Total: uint32(len(newest)), Hash: sha256.Sum256(newest)}
	ad := syncAdapter{a: e}
	if ok, err := ad.BeginPartial(p); err != nil || !ok {
		t.Fatalf("begin partial: %v %v", ok, err)
	}
	if err := ad.AppendPartial(p, 0, newest[:len(newest)*3/4]); err != nil {
		t.Fatal(err)
	}
	if ps, _ := ad.Partials(fsync.SpaceID(id)); len(ps) != 1 {
		t.Fatalf("E holds %d partial envelopes, want 1", len(ps))
	}
	if _, err := a.EraseRecord(api.RecordEraseRequest{Space: sp.ID, Record: "p1", Reason: "retention ended"}); err != nil {
		t.Fatal(err)
	}
	if res := bundleCarry(t, dir, a, e); res.Erasures != 1 {
		t.Fatalf("the bundle after the erasure: %+v", res)
	}
	if ps, _ := ad.Partials(fsync.SpaceID(id)); len(ps) != 0 {
		t.Fatalf("after the erasure E still holds %d partial envelopes of the record", len(ps))
	}
	if _, err := e.GetRecord(api.RecordRef{Space: sp.ID, Record: "p1"}); !errors.Is(err, ErrNotFound) {
		t.Fatalf("p1 on E: %v", err)
	}
	if r, err := e.GetRecord(api.RecordRef{Space: sp.ID, Record: "p2"}); err != nil || r.Fields["f"].Value != "stays, edited" {
		t.Fatalf("p2 on E: %+v %v", r, err)
	}
	e.Close()
	for _, h := range recordHits(t, cfgE, id, needles) {
		t.Errorf("left on E: %s", h)
	}
}

// TestEraseRecordCannotReachFutureWrites: a hostile owner officer (or its
// laptop, taken over) signs a record-erase marker listing slots of a
// colleague's log that are not written yet. Before markers were bound to
// the time they were issued (cutUntil), every replica holding the marker
// silently cut the victim's next writes as they arrived: the victim saw
// its record, everyone else lost it. Now a write made after the marker is
// never cut, and a marker dated ahead of the receiver's clock (to cover
// writes to come) is refused.
func TestEraseRecordCannotReachFutureWrites(t *testing.T) {
	omn := newTestBureau(t, "OMN")
	var offset atomic.Int64
	clock := func() time.Time { return time.Now().Add(time.Duration(offset.Load())) }
	cfgV := newTestDevice(t, omn, "Victor", crypto.RoleOfficer)
	cfgV.Now = clock
	cfgO := newTestDevice(t, omn, "Olga", crypto.RoleOfficer)
	cfgO.Now = clock
	a := openTestAgent(t, newTestDevice(t, omn, "Amina", crypto.RoleOfficer))
	h := openTestAgent(t, newTestDevice(t, omn, "Hostile", crypto.RoleOfficer))
	v := openTestAgent(t, cfgV)
	o := openTestAgent(t, cfgO)
	sp, err := a.CreateSpace("case", nil)
	if err != nil {
		t.Fatal(err)
	}
	id := bundleSpaceID(t, sp.ID)
	for _, x := range []*Agent{h, v, o} {
		transfer(t, x, a)
	}
	if _, err := a.ShareKeys(); err != nil {
		t.Fatal(err)
	}
	for _, x := range []*Agent{h, v, o} {
		transfer(t, a, x)
	}
	for _, x := range []*Agent{h, o} {
		transfer(t, v, x)
	}
	advPut(t, v, sp.ID, "v1", "before")
	transfer(t, v, o)
	transfer(t, v, h)
	var next uint64
	var nonce [16]byte
	var key *crypto.SpaceKey
	h.withRead(func() error {
		s := h.spaces[id]
		next, nonce, key = s.heads[v.dev].Seq+1, s.meta.Nonce, s.current
		return nil
	})
	var slots []crypto.SegmentRef
	for seq := next; seq < next+8; seq++ {
		slots = append(slots, crypto.SegmentRef{Author: v.dev, Seq: seq, Index: 0})
	}
	owner := omn.b.Public().Fingerprint()
	marker := func(at time.Time) []byte {
		e, err := crypto.NewRecordErasure(h.id, id, nonce, owner, key, "v2", slots, nil, at)
		if err != nil {
			t.Fatal(err)
		}
		return e.Marshal()
	}
	// Dated a day ahead, to cover the victim's next day of writes: refused.
	if _, err := o.AddRecordErasure(marker(time.Now().Add(24 * time.Hour))); !errors.Is(err, errMarkerAhead) {
		t.Fatalf("a marker dated a day ahead: %v, want refused", err)
	}
	// Dated now: taken (its author may erase in the space)...
	if fresh, err := o.AddRecordErasure(marker(time.Now())); err != nil || !fresh {
		t.Fatalf("the marker dated now: %v %v", fresh, err)
	}
	// ...but the victim's writes made after it are not cut.
	offset.Store(int64(time.Hour))
	advPut(t, v, sp.ID, "v2", "after the marker")
	advPut(t, v, sp.ID, "v3", "after the marker too")
	transfer(t, v, o)
	for _, rec := range []string{"v1", "v2", "v3"} {
		got, err := advValue(o, sp.ID, rec)
		want, _ := advValue(v, sp.ID, rec)
		if err != nil || got != want {
			t.Errorf("%s on the observer: %q %v, the victim holds %q", rec, got, err, want)
		}
	}
	if dv, do := advDigest(t, v, sp.ID), advDigest(t, o, sp.ID); dv.Digest != do.Digest || dv.Envelopes != do.Envelopes {
		t.Fatalf("victim and observer differ: %+v vs %+v", dv, do)
	}
}
