package agent

import (
	"bytes"
	"context"
	"errors"
	"strings"
	"testing"

	"fieldsync/agent/api"
	"fieldsync/crdt"
	"fieldsync/crypto"
)

// storedForms counts a space's envelopes by how they are stored: cold, and
// whole though some segment is cut (what compaction should have frozen).
func storedForms(t *testing.T, a *Agent, space crypto.SpaceID) (cold, cutWhole int) {
	t.Helper()
	err := a.db.kv.Scan(envSpacePrefix(space), func(k, sealed []byte) error {
		pt, err := a.db.openRaw(k, sealed)
		if err != nil {
			return err
		}
		if crypto.IsCold(pt) {
			cold++
		} else if anyCut(pt) {
			cutWhole++
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return cold, cutWhole
}

// overwrites writes record rec's field f n times.
func overwrites(t *testing.T, a *Agent, sp api.Space, rec string, n int) {
	t.Helper()
	for i := range n {
		put(t, a, sp, rec, "CANARYcoldfield", strings.Repeat("v", i+1))
	}
}

// The envelopes compaction cut are stored cold and read back as the exact
// bytes they were (same ID, same cut, signature and chain valid); a device
// syncing from the cold store over real sockets receives envelopes that
// verify and reaches the same state; a restart and `repair` read the cold
// store to the same state; and nothing of a skeleton is on disk in clear.
func TestColdCompactServesSync(t *testing.T) {
	_, cfgA, cfgB := omnOfficers(t)
	a := startSyncAgent(t, cfgA)
	sp, err := a.CreateSpace("case", nil)
	if err != nil {
		t.Fatal(err)
	}
	space := mustSpaceID(t, sp.ID)
	for _, rec := range []string{"p1", "p2", "p3"} {
		overwrites(t, a, sp, rec, 4)
	}
	before := map[string][]byte{}
	a.Envelopes(space, func(env []byte) error {
		h, _ := crypto.ParseHeader(env)
		before[string(envKey(space, h.Author, h.Seq))] = env
		return nil
	})
	dBefore, _ := a.Digest(api.SpaceRef{Space: sp.ID})

	c := compactNow(t, a, sp.ID)
	st := c.Spaces[0]
	if st.Envelopes != 9 || st.Frozen != 9 || st.BytesAfter >= st.BytesBefore {
		t.Fatalf("compaction: %+v (want 9 envelopes cut and frozen: 3 records × 3 superseded writes)", st)
	}
	if cold, cutWhole := storedForms(t, a, space); cold != 9 || cutWhole != 0 {
		t.Fatalf("stored: %d cold, %d cut but whole", cold, cutWhole)
	}
	// Read back: each is its old self with its values segments cut, byte
	// for byte.
	n := 0
	a.Envelopes(space, func(env []byte) error {
		h, _ := crypto.ParseHeader(env)
		old := before[string(envKey(space, h.Author, h.Seq))]
		if crypto.Hash(env) != crypto.Hash(old) {
			t.Errorf("seq %d: another ID after freezing", h.Seq)
		}
		if anyCut(env) {
			n++
			if want := cutEvery(t, old, valuesOnly); !bytes.Equal(env, want) {
				t.Errorf("seq %d: thawed bytes differ from the cut envelope", h.Seq)
			}
		}
		return nil
	})
	if n != 9 {
		t.Fatalf("%d cut envelopes read back, want 9", n)
	}
	certs := map[crypto.DeviceID]*crypto.Certificate{a.dev: a.cert}
	checkChains(t, a, space, certs)
	if d, _ := a.Digest(api.SpaceRef{Space: sp.ID}); d.Digest != dBefore.Digest || d.Envelopes != dBefore.Envelopes {
		t.Fatalf("digest after freezing %+v, before %+v", d, dBefore)
	}
	if again := compactNow(t, a, sp.ID); again.Spaces[0].Envelopes != 0 || again.Spaces[0].Frozen != 0 {
		t.Fatalf("second pass: %+v", again.Spaces[0])
	}

	// A new device syncs from the cold store.
	cfgB.Join = []string{a.SyncAddr()}
	b := startSyncAgent(t, cfgB)
	waitFor(t, "b to reach a's state", func() bool {
		da, _ := a.Digest(api.SpaceRef{Space: sp.ID})
		db, _ := b.Digest(api.SpaceRef{Space: sp.ID})
		return db.Digest == da.Digest && db.Envelopes == da.Envelopes
	})
	certs[b.dev] = b.cert
	checkChains(t, b, space, certs)
	got := 0
	b.Envelopes(space, func(env []byte) error {
		h, _ := crypto.ParseHeader(env)
		if h.Author != a.dev {
			return nil
		}
		mine, err := a.db.get(envKey(space, h.Author, h.Seq))
		if err != nil || !bytes.Equal(mine, env) {
			t.Errorf("seq %d: b holds other bytes than a serves (%v)", h.Seq, err)
		}
		got++
		return nil
	})
	held := 0
	a.Envelopes(space, func([]byte) error { held++; return nil })
	if got != held || got < len(before) {
		t.Fatalf("b holds %d of a's %d envelopes", got, held)
	}
	r, err := b.GetRecord(api.RecordRef{Space: sp.ID, Record: "p2"})
	if err != nil || r.Fields["CANARYcoldfield"].Value != "vvvv" {
		t.Fatalf("p2 on b: %+v %v", r, err)
	}

	// Restart and repair read the cold store.
	dEnd, _ := a.Digest(api.SpaceRef{Space: sp.ID})
	b.Close()
	a.Close()
	var out bytes.Buffer
	if err := Repair(context.Background(), cfgA, &out); err != nil {
		t.Fatalf("repair: %v\n%s", err, out.String())
	}
	a = openTestAgent(t, cfgA)
	if d, _ := a.Digest(api.SpaceRef{Space: sp.ID}); d != dEnd || d.Digest != dBefore.Digest {
		t.Fatalf("digest after restart and repair %+v, want %+v", d, dEnd)
	}
	if st := a.Status(); st.CorruptValues != 0 || len(st.Missing) != 0 {
		t.Fatalf("status after restart: corrupt %d, missing %v", st.CorruptValues, st.Missing)
	}
	a.Close()
	// The stolen laptop: the skeleton's field name is in the cold values
	// (the control, read with the storage key), and nowhere in the files.
	hits, _ := forensicHits(t, cfgA, space, map[string][]byte{"field name": []byte("CANARYcoldfield")})
	if !strings.Contains(strings.Join(hits, "\n"), "field name under key \"E\"") {
		t.Fatalf("control: the skeleton's field name is not found in the cold envelopes (%v): the scan proves nothing", hits)
	}
	scanForCanary(t, cfgA.Layout.Dir, []byte("CANARYcoldfield"))
}

// coldCombined writes one change putting field of each record.
func coldCombined(t *testing.T, a *Agent, space crypto.SpaceID, field string, recs ...[2]string) {
	t.Helper()
	a.stateMu.Lock()
	sp := a.spaces[space]
	a.stateMu.Unlock()
	var builds []opBuilder
	for _, r := range recs {
		builds = append(builds, putBuild(crdt.RecordID(r[0]), field, r[1]))
	}
	if _, _, errs, err := a.writeOpsMulti(sp, builds, nil); err != nil || errors.Join(errs...) != nil {
		t.Fatal(err, errs)
	}
}

// A record erased after its envelopes were frozen leaves nothing of its
// skeleton (its field name) in any version of any value, cold ones read
// decompressed; the other record of the same changes stays readable.
func TestColdRecordErasure(t *testing.T) {
	const canary = "CANARYcoldfield16"
	omn := newTestBureau(t, "OMN")
	cfg := newTestDevice(t, omn, "Amina", crypto.RoleOfficer)
	a := openTestAgent(t, cfg)
	sp, err := a.CreateSpace("case", nil)
	if err != nil {
		t.Fatal(err)
	}
	id := bundleSpaceID(t, sp.ID)
	coldCombined(t, a, id, canary, [2]string{"p1", "one"})
	coldCombined(t, a, id, "f", [2]string{"p2", "stays"})
	combinedChange(t, a, id, [2]string{"p2", "stays, edited"}, [2]string{"p1", "two"})
	combinedChange(t, a, id, [2]string{"p1", "three"}, [2]string{"p2", "stays, edited again"})
	if c := compactNow(t, a, sp.ID); c.Spaces[0].Frozen != 2 {
		t.Fatalf("compaction: %+v", c.Spaces[0])
	}
	a.Close()
	needles := map[string][]byte{"field name": []byte(canary)}
	if hits := recordHits(t, cfg, id, needles); len(hits) == 0 {
		t.Fatal("control: the record ID is not found before the erasure: the scan proves nothing")
	}
	a = openTestAgent(t, cfg)
	if _, err := a.EraseRecord(api.RecordEraseRequest{Space: sp.ID, Record: "p1", Reason: "test"}); err != nil {
		t.Fatal(err)
	}
	if r, err := a.GetRecord(api.RecordRef{Space: sp.ID, Record: "p2"}); err != nil || r.Fields["f"].Value != "stays, edited again" {
		t.Fatalf("p2: %+v %v", r, err)
	}
	// Compaction freezes the cut envelopes again.
	compactNow(t, a, sp.ID)
	if cold, cutWhole := storedForms(t, a, id); cold == 0 || cutWhole != 0 {
		t.Fatalf("after the erasure and a pass: %d cold, %d cut but whole", cold, cutWhole)
	}
	if r, err := a.GetRecord(api.RecordRef{Space: sp.ID, Record: "p2"}); err != nil || r.Fields["f"].Value != "stays, edited again" {
		t.Fatalf("p2 after refreezing: %+v %v", r, err)
	}
	a.Close()
	for _, h := range recordHits(t, cfg, id, needles) {
		t.Errorf("left after erasing a frozen record: %s", h)
	}
}

// A damaged cold value (a flipped byte, cut short, an unknown version) is
// an error naming the envelope and what to do, counted as corrupt by
// scans, never a panic and never other bytes.
func TestColdDamagedValue(t *testing.T) {
	omn := newTestBureau(t, "OMN")
	a := openTestAgent(t, newTestDevice(t, omn, "Amina", crypto.RoleOfficer))
	sp, err := a.CreateSpace("case", nil)
	if err != nil {
		t.Fatal(err)
	}
	space := mustSpaceID(t, sp.ID)
	overwrites(t, a, sp, "p1", 2)
	compactNow(t, a, sp.ID)
	var key, cold []byte
	a.db.kv.Scan(envSpacePrefix(space), func(k, sealed []byte) error {
		if pt, _ := a.db.openRaw(k, sealed); crypto.IsCold(pt) {
			key, cold = bytes.Clone(k), pt
		}
		return nil
	})
	if cold == nil {
		t.Fatal("nothing frozen")
	}
	good, err := a.db.get(key)
	if err != nil {
		t.Fatal(err)
	}
	flipped := bytes.Clone(cold)
	flipped[len(flipped)-3] ^= 0x40
	version := bytes.Clone(cold)
	version[0] = 0xC2
	for name, bad := range map[string][]byte{"flipped": flipped, "truncated": cold[:len(cold)/2], "version": version, "header only": cold[:1]} {
		if err := a.db.kv.CommitGroups([][]kvEntry{{a.db.entry(key, bad)}})[0]; err != nil {
			t.Fatal(err)
		}
		env, err := a.db.get(key)
		if err == nil {
			t.Fatalf("%s: read %d bytes from a damaged cold value", name, len(env))
		}
		msg := err.Error()
		if !errors.Is(err, errCorrupt) || !strings.Contains(msg, "cold envelope") || !strings.Contains(msg, "author "+a.dev.String()+" seq ") || !strings.Contains(msg, "repair") {
			t.Fatalf("%s: error %q does not name the envelope and the way out", name, msg)
		}
		if name == "version" && !errors.Is(err, crypto.ErrUnknownVersion) {
			t.Fatalf("version: %v", err)
		}
		corrupt := a.Status().CorruptValues
		n := 0
		if err := a.Envelopes(space, func([]byte) error { n++; return nil }); err != nil {
			t.Fatalf("%s: scan: %v", name, err)
		}
		if a.Status().CorruptValues != corrupt+1 {
			t.Fatalf("%s: the scan did not count the damaged value", name)
		}
	}
	if err := a.db.kv.CommitGroups([][]kvEntry{{a.db.entry(key, cold)}})[0]; err != nil {
		t.Fatal(err)
	}
	if env, err := a.db.get(key); err != nil || !bytes.Equal(env, good) {
		t.Fatalf("restored cold value: %v", err)
	}
}

// The background pass freezes what it cuts; a pass also freezes stubs
// received already cut (here from a compacted peer), even those too young
// to prune: nothing is cut, only stored cold.
func TestColdBackgroundAndReceivedStubs(t *testing.T) {
	omn, a, _, sp, _ := threeWrites(t) // r.f = v1, v2, v3 on a
	space := mustSpaceID(t, sp.ID)
	if c := compactNow(t, a, sp.ID); c.Spaces[0].Frozen != 2 {
		t.Fatalf("a: %+v", c.Spaces[0])
	}
	c := openTestAgent(t, newTestDevice(t, omn, "Chen", crypto.RoleOfficer))
	transfer(t, c, a)
	if _, err := a.ShareKeys(); err != nil {
		t.Fatal(err)
	}
	transfer(t, a, c)
	if cold, cutWhole := storedForms(t, c, space); cold != 0 || cutWhole != 2 {
		t.Fatalf("c as received: %d cold, %d cut but whole", cold, cutWhole)
	}
	dc, _ := c.Digest(api.SpaceRef{Space: sp.ID})
	st, err := c.Compact(api.CompactRequest{Space: sp.ID}) // default minimum age: 24 h
	if err != nil || st.Spaces[0].Envelopes != 0 || st.Spaces[0].Frozen != 2 {
		t.Fatalf("c: %+v %v", st, err)
	}
	if cold, cutWhole := storedForms(t, c, space); cold != 2 || cutWhole != 0 {
		t.Fatalf("c after a pass: %d cold, %d cut but whole", cold, cutWhole)
	}
	if d, _ := c.Digest(api.SpaceRef{Space: sp.ID}); d != dc {
		t.Fatalf("c's digest %+v, was %+v", d, dc)
	}

	cfg := newTestDevice(t, omn, "Dana", crypto.RoleOfficer)
	cfg.CompactEvery, cfg.PruneMinAge = 4, -1
	d := openTestAgent(t, cfg)
	dsp, err := d.CreateSpace("case", nil)
	if err != nil {
		t.Fatal(err)
	}
	for i := range 4 {
		put(t, d, dsp, "r", "f", strings.Repeat("v", i+1))
	}
	d.stopAfterWork() // runs the background pass queued, then stops
	if cold, cutWhole := storedForms(t, d, mustSpaceID(t, dsp.ID)); cold != 3 || cutWhole != 0 {
		t.Fatalf("background pass: %d cold, %d cut but whole", cold, cutWhole)
	}
}

// A backup of a cold store holds the envelopes themselves (thawed), and
// the restored store reads them, rebuilds to the same state and freezes
// them again at its first pass.
func TestColdBackupRestore(t *testing.T) {
	tb := newTestBureau(t, "OMN")
	a := openTestAgent(t, newTestDevice(t, tb, "Amina", crypto.RoleOfficer))
	sp, err := a.CreateSpace("case", nil)
	if err != nil {
		t.Fatal(err)
	}
	space := mustSpaceID(t, sp.ID)
	overwrites(t, a, sp, "p1", 3)
	compactNow(t, a, sp.ID)
	if cold, _ := storedForms(t, a, space); cold != 2 {
		t.Fatalf("%d cold before the backup", cold)
	}
	da, _ := a.Digest(api.SpaceRef{Space: sp.ID})
	data := backupBytes(t, a)
	dir := t.TempDir()
	if _, err := restoreInto(t, tb, data, dir); err != nil {
		t.Fatal(err)
	}
	cfg := newTestDevice(t, tb, "unused", crypto.RoleOfficer)
	cfg.Layout = Layout{Dir: dir}
	b := openTestAgent(t, cfg)
	if cold, cutWhole := storedForms(t, b, space); cold != 0 || cutWhole != 2 {
		t.Fatalf("restored: %d cold, %d cut and whole (the backup should hold envelopes)", cold, cutWhole)
	}
	db, _ := b.Digest(api.SpaceRef{Space: sp.ID})
	if db.Digest != da.Digest || db.Envelopes != da.Envelopes {
		t.Fatalf("restored digest %+v, want %+v", db, da)
	}
	if c := compactNow(t, b, sp.ID); c.Spaces[0].Frozen != 2 {
		t.Fatalf("restored store's pass: %+v", c.Spaces[0])
	}
	if d, _ := b.Digest(api.SpaceRef{Space: sp.ID}); d.Digest != da.Digest || d.Envelopes != da.Envelopes {
		t.Fatalf("after refreezing %+v, want %+v", d, da)
	}
}

// storeFormat reads a's format record.
func storeFormat(t *testing.T, a *Agent) int {
	t.Helper()
	b, err := a.db.get(metaKey("format"))
	if err != nil {
		t.Fatal(err)
	}
	var f formatRecord
	if err := jsonUnmarshal(b, &f); err != nil {
		t.Fatal(err)
	}
	return f.Format
}

// A store stays of format 1 until its first cold value, and the commit
// that writes one raises it to 2: a build of format 1, which would count
// cold envelopes corrupt (and `repair` would drop them), refuses the
// store instead. This build opens both; a format it does not know is
// refused with the way out; a backup and the store restored from it are
// of format 1 (they hold envelopes thawed).
func TestColdRaisesStoreFormat(t *testing.T) {
	tb := newTestBureau(t, "OMN")
	cfg := newTestDevice(t, tb, "Amina", crypto.RoleOfficer)
	cfg.CompactEvery = -1
	a, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	sp, err := a.CreateSpace("case", nil)
	if err != nil {
		t.Fatal(err)
	}
	space := mustSpaceID(t, sp.ID)
	overwrites(t, a, sp, "p1", 3)
	zero := int64(0)
	if _, err := a.Compact(api.CompactRequest{Space: sp.ID, MinAgeSeconds: &zero, NoCold: true}); err != nil {
		t.Fatal(err)
	}
	if f := storeFormat(t, a); f != storageFormatWhole {
		t.Fatalf("format %d with no cold value", f)
	}
	compactNow(t, a, sp.ID)
	if cold, _ := storedForms(t, a, space); cold == 0 {
		t.Fatal("nothing frozen: the test proves nothing")
	}
	if f := storeFormat(t, a); f != storageFormatCold {
		t.Fatalf("format %d after freezing, want %d", f, storageFormatCold)
	}
	data := backupBytes(t, a)
	da, _ := a.Digest(api.SpaceRef{Space: sp.ID})
	a.Close()

	a, err = New(cfg)
	if err != nil {
		t.Fatalf("reopening a format 2 store: %v", err)
	}
	if d, _ := a.Digest(api.SpaceRef{Space: sp.ID}); d.Digest != da.Digest {
		t.Fatalf("reopened digest %+v, want %+v", d, da)
	}
	// A store of a newer format than this build's.
	f, _ := jsonMarshal(formatRecord{Format: storageFormat + 1, Device: a.dev.String()})
	if errs := a.db.kv.CommitGroups([][]kvEntry{{a.db.entry(metaKey("format"), f)}}); errs[0] != nil {
		t.Fatal(errs[0])
	}
	a.Close()
	_, err = New(cfg)
	if !errors.Is(err, ErrUnknownFormat) || !strings.Contains(err.Error(), "upgrade fieldsync") {
		t.Fatalf("opening a format %d store: %v", storageFormat+1, err)
	}

	dir := t.TempDir()
	if _, err := restoreInto(t, tb, data, dir); err != nil {
		t.Fatal(err)
	}
	rcfg := newTestDevice(t, tb, "unused", crypto.RoleOfficer)
	rcfg.Layout = Layout{Dir: dir}
	b := openTestAgent(t, rcfg)
	if f := storeFormat(t, b); f != storageFormatWhole {
		t.Fatalf("restored store of format %d", f)
	}
}
