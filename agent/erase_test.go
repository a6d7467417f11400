package agent

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"fieldsync/agent/api"
	"fieldsync/crypto"
	"fieldsync/internal/datadir"
	"fieldsync/internal/store"
)

// forensicHits reads a stopped device's store as a thief holding its
// passphrase would: the keystore unlocked, Badger opened with its key, every
// version of every key still in the files read — deleted and overwritten
// ones included — and every value unsealed. It reports which needles are
// found (in keys or values) and any key that names the space, besides its
// tombstone. Values are sealed at rest, so a plain scan of the files finds
// nothing either way; this is the scan that can fail.
func forensicHits(t *testing.T, cfg Config, space crypto.SpaceID, needles map[string][]byte) (hits []string, versions int) {
	t.Helper()
	ks, err := datadir.LoadKeystore(cfg.Layout, cfg.Unlock)
	if err != nil {
		t.Fatal(err)
	}
	bk := crypto.DeriveKey(&ks.StorageKey, "fieldsync badger encryption v1")
	vk := crypto.DeriveKey(&ks.StorageKey, "fieldsync value seal v1")
	db, err := store.Open(store.Options{Dir: cfg.Layout.Store(), EncryptionKey: bk[:], ValueThreshold: cfg.BadgerValueThreshold})
	if err != nil {
		t.Fatalf("open %s: %v", cfg.Layout.Store(), err)
	}
	defer db.Close()
	seen := map[string]bool{}
	err = db.Versions(func(k, v []byte, deleted bool) error {
		versions++
		if len(k) >= 17 && k[0] != pfxTombstone && bytes.Equal(k[1:17], space[:]) && !seen["key "+string(k[:1])] {
			seen["key "+string(k[:1])] = true
			hits = append(hits, fmt.Sprintf("a key %q… naming the space (deleted=%v)", k[:1], deleted))
		}
		pt := v
		if len(v) > 0 {
			if p, err := crypto.OpenValue(&vk, k, v); err == nil {
				pt = p
			}
		}
		if crypto.IsCold(pt) {
			// A cold envelope (cold.go) holds plaintexts compressed:
			// search them as they are.
			if c, err := crypto.ColdContents(pt); err == nil {
				pt = append(pt, c...)
			}
		}
		for name, n := range needles {
			if !seen[name] && (bytes.Contains(pt, n) || bytes.Contains(k, n)) {
				seen[name] = true
				hits = append(hits, fmt.Sprintf("%s under key %q… (deleted=%v)", name, k[:1], deleted))
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return hits, versions
}

// spaceNeedles are what must not survive an erasure anywhere: the
// ciphertext of every envelope of the space, and its epoch keys (taken from
// a before the erasure).
func spaceNeedles(t *testing.T, a *Agent, space crypto.SpaceID, canary string) map[string][]byte {
	t.Helper()
	n := map[string][]byte{"canary plaintext": []byte(canary)}
	i := 0
	err := a.Envelopes(space, func(env []byte) error {
		h, err := crypto.ParseHeader(env)
		if err != nil {
			return err
		}
		i++
		n[fmt.Sprintf("envelope %d (kind %d) body", i, h.Kind)] = bytes.Clone(env[104 : len(env)-64])
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	a.withRead(func() error {
		for id, k := range a.spaces[space].keys {
			n["epoch key "+id.String()[:8]] = k.Bytes()
		}
		return nil
	})
	if i < 3 || len(n) < 5 {
		t.Fatalf("only %d envelopes and %d needles: the check proves nothing", i, len(n))
	}
	return n
}

// TestEraseSpaceCanary is issue 16's test: two officers of the owning
// bureau, a partner bureau's officer and the bureau relay, syncing over
// loopback, and a third officer of the owner offline at the erasure. After
// the erasure no byte of the canary's space survives in any store — not the
// plaintext, not any envelope's ciphertext, not an epoch key, not a key
// naming the space, in any version Badger still holds — and a bundle made
// before the erasure brings nothing back.
// erasureMesh is the five devices of the erasure canary tests, in one mesh
// through the relay: A, B and D officers of OMN, P an officer of KAZ, R
// OMN's relay (all, in that order). R and A are running, and A has made a
// space released to KAZ; the others are started by the test.
func erasureMesh(t *testing.T) (omn, kaz *testBureau, all []*Config, R, A *runningAgent, sp api.Space) {
	t.Helper()
	omn, kaz = newTestBureau(t, "OMN"), newTestBureau(t, "KAZ")
	cfgA := newTestDevice(t, omn, "Amina", crypto.RoleOfficer, kaz)
	cfgB := newTestDevice(t, omn, "Boris", crypto.RoleOfficer, kaz)
	cfgD := newTestDevice(t, omn, "Dilnoza", crypto.RoleOfficer, kaz)
	cfgP := newTestDevice(t, kaz, "Parviz", crypto.RoleOfficer, omn)
	cfgR := newTestDevice(t, omn, "relay", crypto.RoleRelay, kaz)
	ks, _ := datadir.LoadKeystore(cfgA.Layout, cfgA.Unlock)
	all = []*Config{&cfgA, &cfgB, &cfgD, &cfgP, &cfgR}
	for _, c := range all {
		c.MeshKey = ks.MeshKey
	}
	R = startStoppable(t, cfgR)
	for _, c := range all[:4] {
		c.Join = []string{R.SyncAddr()}
	}
	A = startStoppable(t, cfgA)
	sp, err := A.CreateSpace("case", []string{"KAZ"})
	if err != nil {
		t.Fatal(err)
	}
	return omn, kaz, all, R, A, sp
}

func TestEraseSpaceCanary(t *testing.T) {
	const canary = "CANARYerase16"
	_, _, all, R, A, sp := erasureMesh(t)
	cfgB, cfgD, cfgP := *all[1], *all[2], *all[3]
	spaceID := bundleSpaceID(t, sp.ID)
	if _, err := A.PutFields(api.RecordPutRequest{Space: sp.ID, Record: "p1", Fields: []api.FieldValue{{Name: "note", Value: "witness " + canary}}}); err != nil {
		t.Fatal(err)
	}
	// What later features keep per space must go too: an attached file
	// (chunks, key space B), delivery receipts the partner writes (key
	// space r), and the search index (in memory).
	if _, err := A.SetReceiptPolicy(api.ReceiptPolicyRequest{Space: sp.ID, Receipts: api.ReceiptsPerChange}); err != nil {
		t.Fatal(err)
	}
	photo := filepath.Join(t.TempDir(), "passport.jpg")
	pix := make([]byte, 300<<10)
	for i := range pix {
		pix[i] = byte(i * 7 % 251)
	}
	copy(pix[1000:], canary)
	if err := os.WriteFile(photo, pix, 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := A.Attach(api.AttachRequest{Space: sp.ID, Record: "p1", Field: "photo", Path: photo}); err != nil {
		t.Fatal(err)
	}
	B, D, P := startStoppable(t, cfgB), startStoppable(t, cfgD), startStoppable(t, cfgP)
	for _, x := range []*runningAgent{B, D, P} {
		waitFor(t, "every officer to read the canary", func() bool {
			r, err := x.GetRecord(api.RecordRef{Space: sp.ID, Record: "p1"})
			return err == nil && r.Fields["note"].Value == "witness "+canary
		})
		waitFor(t, "every officer to hold the attached file", func() bool {
			return x.AttachStatus().Chunks > 0
		})
	}
	waitFor(t, "the partner's receipts to reach the author", func() bool {
		rs, err := A.Receipts(api.ReceiptsRequest{Space: sp.ID})
		return err == nil && len(rs) > 0
	})
	if res, err := A.Find(api.FindRequest{Query: canary}); err != nil || len(res.Hits) == 0 {
		t.Fatalf("the canary is not found before the erasure (%v): the check after proves nothing", err)
	}
	// Every copy in step: the relay holds all of A's log.
	aDigest := bundleDigest(t, A.Agent, sp.ID)
	for _, x := range []*runningAgent{R, B, D, P} {
		waitFor(t, "every replica to hold the same envelopes", func() bool {
			d, err := x.Digest(api.SpaceRef{Space: sp.ID})
			return err == nil && d.Count >= aDigest.Count
		})
	}
	needles := spaceNeedles(t, A.Agent, spaceID, canary)
	// A bundle of everything, made before the erasure.
	old := filepath.Join(t.TempDir(), "before.fsb")
	if _, err := A.ExportBundle(context.Background(), api.BundleExportRequest{Out: old}, nil); err != nil {
		t.Fatal(err)
	}
	D.stop() // offline at the erasure

	er, err := A.EraseSpace(api.SpaceEraseRequest{Space: sp.ID, Reason: "court order 16/2"})
	if err != nil {
		t.Fatal(err)
	}
	if !er.Purged || er.Space != sp.ID {
		t.Fatalf("erase: %+v", er)
	}
	if _, err := A.GetRecord(api.RecordRef{Space: sp.ID, Record: "p1"}); !errors.Is(err, ErrNotFound) {
		t.Fatalf("record after erasure: %v", err)
	}
	if res, err := A.Find(api.FindRequest{Query: canary}); err != nil || len(res.Hits) != 0 {
		t.Fatalf("search after erasure: %+v, %v", res.Hits, err)
	}
	erasedHere := func(x *runningAgent) func() bool {
		return func() bool {
			l, err := x.Erased()
			return err == nil && len(l) == 1 && l[0].Space == sp.ID && l[0].Purged
		}
	}
	for _, x := range []*runningAgent{R, B, P} {
		waitFor(t, "the erasure to reach every replica", erasedHere(x))
	}
	// D comes back months later (as far as it knows): erased on its first sync.
	D = startStoppable(t, cfgD)
	waitFor(t, "the device offline at the erasure to erase on its return", erasedHere(D))
	if _, err := D.GetRecord(api.RecordRef{Space: sp.ID, Record: "p1"}); err == nil {
		t.Fatal("the returning device still reads the canary")
	}

	// Every byte of every store.
	for i, x := range []*runningAgent{A, B, D, P, R} {
		x.stop()
		cfg := *all[i]
		hits, versions := forensicHits(t, cfg, spaceID, needles)
		for _, h := range hits {
			t.Errorf("%s: %s", filepath.Base(cfg.Layout.Dir), h)
		}
		if versions < 3 {
			t.Fatalf("%s: only %d versions read: is the store there?", cfg.Layout.Dir, versions)
		}
		raw := [][]byte{}
		for _, n := range needles {
			raw = append(raw, n)
		}
		scanForCanary(t, cfg.Layout.Dir, raw...)
	}

	// The old bundle cannot bring the space back.
	B2 := openTestAgent(t, cfgB)
	res, err := B2.ImportBundle(context.Background(), api.BundleImportRequest{File: old}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if res.Added != 0 || res.Skipped == 0 {
		t.Fatalf("old bundle after erasure: %+v", res)
	}
	for _, s := range res.Skips {
		if s.Reason != RejectErased {
			t.Errorf("skip %+v: want reason %q", s, RejectErased)
		}
	}
	if _, err := B2.GetRecord(api.RecordRef{Space: sp.ID, Record: "p1"}); err == nil {
		t.Fatal("the old bundle brought the canary back")
	}
	if n := len(B2.SpaceIDs()); n != 0 {
		t.Fatalf("%d spaces after importing the old bundle", n)
	}
	B2.Close()
	hits, _ := forensicHits(t, cfgB, spaceID, needles)
	for _, h := range hits {
		t.Errorf("after the old bundle: %s", h)
	}
}

// TestErasePurgeNeedsDrop shows that the forensic scan can fail: deleting a
// space's keys the ordinary way leaves every byte in Badger's files (the
// versions below the deletion markers); the erasure's drop leaves none.
func TestErasePurgeNeedsDrop(t *testing.T) {
	const canary = "CANARYdrop16"
	omn := newTestBureau(t, "OMN")
	cfg := newTestDevice(t, omn, "Amina", crypto.RoleOfficer)
	a := openTestAgent(t, cfg)
	sp, err := a.CreateSpace("case", nil)
	if err != nil {
		t.Fatal(err)
	}
	id := bundleSpaceID(t, sp.ID)
	bundlePut(t, a, sp.ID, "p1", "note", canary)
	bundlePut(t, a, sp.ID, "p2", "note", "second")
	needles := spaceNeedles(t, a, id, canary)
	// Delete every key of the space as an ordinary write would.
	var dels []kvEntry
	for _, p := range spacePrefixes {
		a.db.kv.ScanKeys(append([]byte{p}, id[:]...), func(k []byte) error {
			dels = append(dels, kvEntry{Key: k, Del: true})
			return nil
		})
	}
	if len(dels) < 8 {
		t.Fatalf("only %d keys in the space", len(dels))
	}
	if err := a.db.kv.CommitGroups([][]kvEntry{dels})[0]; err != nil {
		t.Fatal(err)
	}
	a.Close()
	hits, _ := forensicHits(t, cfg, id, needles)
	if len(hits) < len(needles) {
		t.Fatalf("after ordinary deletes the scan finds only %v: it cannot tell a purge from a delete", hits)
	}
	t.Logf("after ordinary deletes: %d findings, e.g. %s", len(hits), hits[0])

	// Now the erasure's drop, on the same store.
	a = openTestAgent(t, cfg)
	if err := a.withWrite(func(tx *tx) error { a.com.Barrier(); _, err := a.dropSpace(id); return err }); err != nil {
		t.Fatal(err)
	}
	a.Close()
	if hits, _ := forensicHits(t, cfg, id, needles); len(hits) > 0 {
		t.Fatalf("after the drop: %v", hits)
	}
}

// TestEraseRefusedUnlessOwnerOfficer: a partner bureau's officer, a relay
// of the owning bureau, a revoked officer of the owning bureau and a device
// nobody knows each sign a valid marker of the space; every receiver (an
// officer and the relay, through the sync path) refuses each, and keeps
// the space. The sender side refuses the first two as well. Then a marker
// of an officer of the owning bureau is taken: the refusals were the
// author's, not the path's.
func TestEraseRefusedUnlessOwnerOfficer(t *testing.T) {
	omn, kaz := newTestBureau(t, "OMN"), newTestBureau(t, "KAZ")
	a := openTestAgent(t, newTestDevice(t, omn, "Amina", crypto.RoleOfficer, kaz))
	b := openTestAgent(t, newTestDevice(t, omn, "Boris", crypto.RoleOfficer, kaz))
	c := openTestAgent(t, newTestDevice(t, omn, "Chingiz", crypto.RoleOfficer, kaz))
	p := openTestAgent(t, newTestDevice(t, kaz, "Parviz", crypto.RoleOfficer, omn))
	r := openTestAgent(t, newTestDevice(t, omn, "relay", crypto.RoleRelay, kaz))
	x := openTestAgent(t, newTestDevice(t, newTestBureau(t, "XXX"), "Stranger", crypto.RoleOfficer))
	sp, err := a.CreateSpace("case", []string{"KAZ"})
	if err != nil {
		t.Fatal(err)
	}
	id := bundleSpaceID(t, sp.ID)
	bundlePut(t, a, sp.ID, "p1", "note", "witness")
	for _, to := range []*Agent{b, c, p, r} {
		transfer(t, a, to)
		transfer(t, to, a)
	}
	for _, to := range []*Agent{b, r} {
		transfer(t, c, to)
		transfer(t, p, to)
	}
	transfer(t, r, b) // the relay's certificate
	before := bundleDigest(t, b, sp.ID)
	var nonce [16]byte
	a.withRead(func() error { nonce = a.spaces[id].meta.Nonce; return nil })
	owner := omn.b.Public().Fingerprint()
	marker := func(by *Agent) []byte {
		e, err := crypto.NewErasure(by.id, id, nonce, owner, time.Now())
		if err != nil {
			t.Fatal(err)
		}
		return e.Marshal()
	}
	// The sender side.
	for _, by := range []*Agent{p, r} {
		if _, err := by.EraseSpace(api.SpaceEraseRequest{Space: sp.ID, Reason: "hostile"}); !errors.Is(err, ErrForbidden) {
			t.Fatalf("%s erased the space: %v", by.cert.Bureau.Name, err)
		}
	}
	// C is revoked by its bureau (its writes so far stay valid).
	rev, err := omn.b.Revoke(c.dev, map[crypto.SpaceID]uint64{id: 100}, 0, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	for _, to := range []*Agent{a, b, r} {
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
		{"unknown device", marker(x), crypto.ErrUntrusted},
	}
	for _, at := range attacks {
		for _, to := range []*Agent{b, r} {
			if _, err := to.AddErasure(at.blob); !errors.Is(err, at.want) {
				t.Errorf("%s's marker at %s: %v, want %v", at.name, to.cert.Role, err, at.want)
			}
			// The sync path: a mesh object from a peer.
			if _, err := (syncAdapter{to}).IngestMeshObject(fsyncPeer(), at.blob); err == nil {
				t.Errorf("%s's marker taken as a mesh object at %s", at.name, to.cert.Role)
			}
			if to.erasedSpace(id) != nil || len(to.SpaceIDs()) != 1 {
				t.Fatalf("%s's marker erased the space at %s", at.name, to.cert.Role)
			}
		}
	}
	if d := bundleDigest(t, b, sp.ID); d.Envelopes != before.Envelopes || d.Count < 3 {
		t.Fatalf("the space changed after refused markers: %+v, before %+v", d, before)
	}
	// A marker of an owning bureau's officer is taken by both.
	good := marker(b)
	for _, to := range []*Agent{a, r} {
		if added, err := (syncAdapter{to}).IngestMeshObject(fsyncPeer(), good); err != nil || !added {
			t.Fatalf("owner officer's marker at %s: %v %v", to.cert.Role, added, err)
		}
		if to.erasedSpace(id) == nil || len(to.SpaceIDs()) != 0 {
			t.Fatalf("not erased at %s", to.cert.Role)
		}
	}
	// An envelope of the space, even one held before, is refused from now on.
	var env []byte
	b.Envelopes(id, func(e []byte) error {
		if env == nil {
			env = bytes.Clone(e)
		}
		return nil
	})
	if _, err := a.Ingest(env); !isReject(err, RejectErased) {
		t.Fatalf("envelope of the erased space: %v", err)
	}
}

// TestEraseTravelsByBundle: an air-gapped officer that got the space by
// bundle gets its erasure by bundle too (the marker is carried like a
// revocation), and then refuses the old bundle it got the space from.
func TestEraseTravelsByBundle(t *testing.T) {
	const canary = "CANARYbundle16"
	omn := newTestBureau(t, "OMN")
	a := openTestAgent(t, newTestDevice(t, omn, "Amina", crypto.RoleOfficer))
	cfgE := newTestDevice(t, omn, "Erlan", crypto.RoleOfficer)
	e := openTestAgent(t, cfgE)
	dir := t.TempDir()
	sp, err := a.CreateSpace("case", nil)
	if err != nil {
		t.Fatal(err)
	}
	id := bundleSpaceID(t, sp.ID)
	bundlePut(t, a, sp.ID, "p1", "note", canary)
	bundleCarry(t, dir, e, a) // A learns E
	if _, err := a.ShareKeys(); err != nil {
		t.Fatal(err)
	}
	old := filepath.Join(dir, "old.fsb")
	if _, err := a.ExportBundle(context.Background(), api.BundleExportRequest{Out: old}, nil); err != nil {
		t.Fatal(err)
	}
	if res, err := e.ImportBundle(context.Background(), api.BundleImportRequest{File: old}, nil); err != nil || res.Added == 0 {
		t.Fatalf("first bundle: %+v %v", res, err)
	}
	if r, err := e.GetRecord(api.RecordRef{Space: sp.ID, Record: "p1"}); err != nil || r.Fields["note"].Value != canary {
		t.Fatalf("E cannot read the canary: %v", err)
	}
	needles := spaceNeedles(t, e, id, canary)
	if _, err := a.EraseSpace(api.SpaceEraseRequest{Space: sp.ID, Reason: "retention ended"}); err != nil {
		t.Fatal(err)
	}
	res := bundleCarry(t, dir, a, e)
	if res.Erasures != 1 {
		t.Fatalf("the bundle after the erasure: %+v", res)
	}
	if e.erasedSpace(id) == nil || len(e.SpaceIDs()) != 0 {
		t.Fatal("E did not erase the space")
	}
	res, err = e.ImportBundle(context.Background(), api.BundleImportRequest{File: old}, nil)
	if err != nil || res.Added != 0 || res.Skipped == 0 || len(res.Skips) == 0 || res.Skips[0].Reason != RejectErased {
		t.Fatalf("old bundle after the erasure: %+v %v", res, err)
	}
	e.Close()
	if hits, _ := forensicHits(t, cfgE, id, needles); len(hits) > 0 {
		t.Fatalf("left on E: %v", hits)
	}
}

// TestEraseLargeValuesLeaveValueLogAtRestart: values over Badger's value
// threshold live in its value log, which a drop does not touch and which
// Badger never rewrites while it is the file being written. The first
// start after an erasure collects it: no value-log file that held the
// erased space's values survives, and another space's large values are
// kept (moved to a new file).
func TestEraseLargeValuesLeaveValueLogAtRestart(t *testing.T) {
	omn := newTestBureau(t, "OMN")
	cfg := newTestDevice(t, omn, "Amina", crypto.RoleOfficer)
	cfg.BadgerValueThreshold = 1 << 10 // every record and envelope in the value log
	a := openTestAgent(t, cfg)
	big := strings.Repeat("CANARYvlog16 ", 400)
	keep, before := eraseOneOfTwoSpaces(t, a, big)
	a.Close()
	a = openTestAgent(t, cfg)
	after := vlogFiles(t, cfg.Layout.Store())
	for f := range before {
		if after[f] {
			t.Errorf("value-log file %s, written before the erasure, survives the restart (files now %v)", f, after)
		}
	}
	r, err := a.GetRecord(api.RecordRef{Space: keep.ID, Record: "k7"})
	if err != nil || r.Fields["note"].Value != "kept "+big {
		t.Fatalf("the other space lost its large values: %v", err)
	}
	if _, err := a.db.get(metaKey(metaPurge)); !errors.Is(err, errKVNotFound) {
		t.Fatalf("purge still marked due after the start's pass: %v", err)
	}
}

// TestEraseLeavesNoValueLogFileBeforeRestart: with the default threshold
// most records and envelopes live in the value log, and the file being
// written is one Badger never rewrites. The erasure begins a new file
// before its collection, so no value-log file that held the erased
// space's values survives the erasure itself — no restart needed — and
// another space's values are kept.
func TestEraseLeavesNoValueLogFileBeforeRestart(t *testing.T) {
	omn := newTestBureau(t, "OMN")
	cfg := newTestDevice(t, omn, "Amina", crypto.RoleOfficer)
	a := openTestAgent(t, cfg)
	note := strings.Repeat("CANARYvlog0 ", 60) // over the value threshold once sealed
	keep, before := eraseOneOfTwoSpaces(t, a, note)
	after := vlogFiles(t, cfg.Layout.Store())
	for f := range before {
		if after[f] {
			t.Errorf("value-log file %s, written before the erasure, survives it (files now %v)", f, after)
		}
	}
	r, err := a.GetRecord(api.RecordRef{Space: keep.ID, Record: "k7"})
	if err != nil || r.Fields["note"].Value != "kept "+note {
		t.Fatalf("the other space lost its values: %v", err)
	}
}

// eraseOneOfTwoSpaces writes note into eight records of each of two new
// spaces on a, erases the first and returns the other, with the value-log
// files that existed before the erasure (those that may hold the erased
// space's values: the erasure's own pass writes new ones, holding only
// kept values).
func eraseOneOfTwoSpaces(t *testing.T, a *Agent, note string) (keep api.Space, before map[string]bool) {
	t.Helper()
	sp, err := a.CreateSpace("case", nil)
	if err != nil {
		t.Fatal(err)
	}
	keep, err = a.CreateSpace("keep", nil)
	if err != nil {
		t.Fatal(err)
	}
	for i := range 8 {
		bundlePut(t, a, sp.ID, fmt.Sprint("p", i), "note", note)
		bundlePut(t, a, keep.ID, fmt.Sprint("k", i), "note", "kept "+note)
	}
	before = vlogFiles(t, a.cfg.Layout.Store())
	if len(before) == 0 {
		t.Fatal("no value-log file: the test proves nothing")
	}
	if _, err := a.EraseSpace(api.SpaceEraseRequest{Space: sp.ID, Reason: "test"}); err != nil {
		t.Fatal(err)
	}
	return keep, before
}

func vlogFiles(t *testing.T, dir string) map[string]bool {
	t.Helper()
	es, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	m := map[string]bool{}
	for _, e := range es {
		if strings.HasSuffix(e.Name(), ".vlog") {
			m[e.Name()] = true
		}
	}
	return m
}

// TestEraseFinishedAfterCrash: a crash between storing the tombstone and
// dropping the space's keys (simulated: the tombstone written alone) leaves
// keys the next start must not load, and drops: the space is gone, its
// envelopes refused, and no byte of it is left.
func TestEraseFinishedAfterCrash(t *testing.T) {
	const canary = "CANARYcrash16"
	omn := newTestBureau(t, "OMN")
	cfg := newTestDevice(t, omn, "Amina", crypto.RoleOfficer)
	a := openTestAgent(t, cfg)
	sp, err := a.CreateSpace("case", nil)
	if err != nil {
		t.Fatal(err)
	}
	id := bundleSpaceID(t, sp.ID)
	bundlePut(t, a, sp.ID, "p1", "note", canary)
	needles := spaceNeedles(t, a, id, canary)
	var env []byte
	a.Envelopes(id, func(e []byte) error { env = bytes.Clone(e); return nil })
	var nonce [16]byte
	a.withRead(func() error { nonce = a.spaces[id].meta.Nonce; return nil })
	e, err := crypto.NewErasure(a.id, id, nonce, omn.b.Public().Fingerprint(), time.Now())
	if err != nil {
		t.Fatal(err)
	}
	b, _ := json.Marshal(tombstone{Marker: e.Marshal()})
	if err := a.db.kv.CommitGroups([][]kvEntry{{a.db.entry(tombstoneKey(id), b)}})[0]; err != nil {
		t.Fatal(err)
	}
	a.Close()
	a = openTestAgent(t, cfg)
	if len(a.SpaceIDs()) != 0 || a.erasedSpace(id) == nil {
		t.Fatalf("after the restart: spaces %v, tombstone %v", a.SpaceIDs(), a.erasedSpace(id))
	}
	if _, err := a.Ingest(env); !isReject(err, RejectErased) {
		t.Fatalf("an envelope of the space after the restart: %v", err)
	}
	a.Close()
	if hits, _ := forensicHits(t, cfg, id, needles); len(hits) > 0 {
		t.Fatalf("left after the restart: %v", hits)
	}
}
