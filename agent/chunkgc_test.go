package agent

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"fieldsync/agent/api"
	"fieldsync/crdt"
	"fieldsync/crypto"
	fsync "fieldsync/sync"
)

// manifestRefs returns the chunk refs of the manifest field holds now (its
// winning value).
func manifestRefs(t *testing.T, a *Agent, sp api.Space, rec, field string) []crypto.ChunkRef {
	t.Helper()
	var refs []crypto.ChunkRef
	err := a.withRead(func() error {
		r, err := a.loadRecord(a.spaces[mustSpaceID(t, sp.ID)], crdt.RecordID(rec))
		if err != nil || r == nil {
			return fmt.Errorf("record %s: %v", rec, err)
		}
		fv, ok := r.Register(field)
		if !ok {
			return fmt.Errorf("no field %s", field)
		}
		_, refs, ok, err = parseManifest(fv.Siblings[0].Value)
		if !ok || err != nil {
			return fmt.Errorf("field %s holds no manifest (%v)", field, err)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return refs
}

// attachFile writes a random file of n bytes (seed) and attaches it to
// rec.field; it returns the chunk refs of its manifest.
func attachFile(t *testing.T, a *Agent, sp api.Space, rec, field string, n int, seed uint64) []crypto.ChunkRef {
	t.Helper()
	p := filepath.Join(t.TempDir(), fmt.Sprintf("photo-%d.jpg", seed))
	writeRandomFile(t, p, n, seed)
	if _, err := a.Attach(api.AttachRequest{Space: sp.ID, Record: rec, Field: field, Path: p}); err != nil {
		t.Fatal(err)
	}
	return manifestRefs(t, a, sp, rec, field)
}

// heldChunks lists the chunk keys of the space in the store, sorted.
func heldChunks(t *testing.T, a *Agent, sp api.Space) []crypto.ChunkRef {
	t.Helper()
	refs, err := a.spaceChunkRefs(pfxChunk, mustSpaceID(t, sp.ID))
	if err != nil {
		t.Fatal(err)
	}
	return sortedRefs(refs)
}

func sortedRefs(refs []crypto.ChunkRef) []crypto.ChunkRef {
	out := slices.Clone(refs)
	slices.SortFunc(out, func(x, y crypto.ChunkRef) int { return strings.Compare(string(x[:]), string(y[:])) })
	return slices.Compact(out)
}

func union(sets ...[]crypto.ChunkRef) []crypto.ChunkRef {
	var out []crypto.ChunkRef
	for _, s := range sets {
		out = append(out, s...)
	}
	return sortedRefs(out)
}

// chunkVersions counts the versions Badger's files hold under the space's
// chunk keys, deleted ones not counted.
func chunkVersions(t *testing.T, a *Agent, space crypto.SpaceID) int {
	t.Helper()
	n := 0
	err := a.db.kv.VersionsUnder(append([]byte{pfxChunk}, space[:]...), func(k, v []byte, deleted bool) error {
		if !deleted && len(v) > 0 {
			n++
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return n
}

// A photo replaced twice, then compacted: only the live photo's chunks,
// a chunk the dead photos share with a live attachment, and a conflict
// sibling's photo stay; the minimum age is honoured first; the store's
// files shrink by about the old photos' bytes.
func TestChunkGCCollectsSupersededPhotos(t *testing.T) {
	a, b, cfgA, sp, space := twoOfficersNoPasses(t)

	old1 := attachFile(t, a, sp, "p1", "photo", 1<<20, 11)
	old2 := attachFile(t, a, sp, "p1", "photo", 1<<20, 12)
	live := attachFile(t, a, sp, "p1", "photo", 1<<20, 13)
	// The same file as old1 on another record: old1's chunks stay for it.
	shared := attachFile(t, a, sp, "p2", "scan", 1<<20, 11)
	if !slices.Equal(sortedRefs(shared), sortedRefs(old1)) {
		t.Fatal("the same file stored under other refs")
	}
	// A conflict: a attaches, b writes concurrently (later), both stay.
	sibling := attachFile(t, a, sp, "c", "photo", 512<<10, 14)
	put(t, b, sp, "c", "photo", "text from b, concurrent")
	transfer(t, b, a)
	rc, err := a.GetRecord(api.RecordRef{Space: sp.ID, Record: "c"})
	if err != nil || !rc.Fields["photo"].Conflict {
		t.Fatalf("no conflict on c.photo: %+v %v", rc.Fields["photo"], err)
	}
	// A photo replaced by a value, whose chunks go too.
	gone := attachFile(t, a, sp, "p3", "photo", 1<<20, 15)
	put(t, a, sp, "p3", "photo", "no photo any more")

	before := heldChunks(t, a, sp)
	if want := union(old1, old2, live, sibling, gone); !slices.Equal(before, want) {
		t.Fatalf("held before: %d chunks, want %d", len(before), len(want))
	}
	a.Close()
	a = openTestAgent(t, cfgA) // flushes the memtables: the files hold every chunk
	duBefore, _ := diskUsage(cfgA.Layout.Store())

	// The minimum age: everything is younger than an hour.
	hour := int64(3600)
	c, err := a.Compact(api.CompactRequest{Space: sp.ID, MinAgeSeconds: &hour})
	if err != nil || c.Spaces[0].ChunksCollected != 0 || !slices.Equal(heldChunks(t, a, sp), before) {
		t.Fatalf("collected chunks younger than the minimum age: %+v %v", c, err)
	}

	c = compactNow(t, a, sp.ID)
	after := heldChunks(t, a, sp)
	want := union(shared, live, sibling)
	if !slices.Equal(after, want) {
		t.Fatalf("held after: %d chunks, want %d (live, shared, conflict sibling)", len(after), len(want))
	}
	collected := len(union(old2, gone))
	if st := c.Spaces[0]; st.ChunksCollected != collected || st.ChunkBytesCollected < int64(collected)*64<<10 || !c.Reclaimed {
		t.Fatalf("compact reported %+v; want %d chunks collected", c, collected)
	}
	// Badger's files no longer hold the collected chunks' bytes.
	if n := chunkVersions(t, a, space); n != len(want) {
		t.Fatalf("Badger's files hold %d chunk versions, want %d", n, len(want))
	}
	a.Close()
	a = openTestAgent(t, cfgA)
	duAfter, _ := diskUsage(cfgA.Layout.Store())
	t.Logf("store %d bytes before, %d after collecting %d chunks (%d bytes sealed)", duBefore, duAfter, collected, c.Spaces[0].ChunkBytesCollected)
	if duBefore-duAfter < c.Spaces[0].ChunkBytesCollected*8/10 {
		t.Fatalf("store shrank by %d bytes, collected %d", duBefore-duAfter, c.Spaces[0].ChunkBytesCollected)
	}
	// Every live attachment still opens, and a second pass finds nothing.
	for _, f := range [][2]string{{"p1", "photo"}, {"p2", "scan"}} {
		if _, err := a.Open(context.Background(), api.OpenRequest{Space: sp.ID, Record: f[0], Field: f[1], Out: filepath.Join(t.TempDir(), "out")}); err != nil {
			t.Fatalf("open %s.%s: %v", f[0], f[1], err)
		}
	}
	if c := compactNow(t, a, sp.ID); c.Spaces[0].ChunksCollected != 0 {
		t.Fatalf("second pass collected %+v", c)
	}
	// The record erasure still finds the dead photos' chunks (manifests
	// are kept), so its marker drops them on relays.
	var listed []crypto.ChunkRef
	a.withRead(func() error {
		_, listed, _, err = a.recordSegments(a.spaces[space], "p3")
		return err
	})
	if !slices.Equal(sortedRefs(listed), sortedRefs(gone)) {
		t.Fatalf("erasure of p3 lists %d chunks, want %d", len(listed), len(gone))
	}
}

// A chunk being attached is not collected between the check that finds it
// held and the manifest's write (Attach pins it); a chunk named again by a
// new attachment loses its collected marker at the next pass.
func TestChunkGCPinsAndUnmarks(t *testing.T) {
	omn := newTestBureau(t, "OMN")
	cfg := newTestDevice(t, omn, "Amina", crypto.RoleOfficer)
	cfg.CompactEvery = -1
	a := openTestAgent(t, cfg)
	sp, err := a.CreateSpace("case", nil)
	if err != nil {
		t.Fatal(err)
	}
	space := mustSpaceID(t, sp.ID)
	old := attachFile(t, a, sp, "p", "photo", 512<<10, 21)
	put(t, a, sp, "p", "photo", "replaced")
	for _, r := range old {
		a.pinChunk(space, r)
	}
	if c := compactNow(t, a, sp.ID); c.Spaces[0].ChunksCollected != 0 {
		t.Fatalf("collected pinned chunks: %+v", c)
	}
	a.unpinChunks(space, old)
	if c := compactNow(t, a, sp.ID); c.Spaces[0].ChunksCollected != len(sortedRefs(old)) {
		t.Fatalf("collected %+v, want %d", c, len(sortedRefs(old)))
	}
	gone, _ := syncAdapter{a: a}.CollectedChunks(fsync.SpaceID(space))
	if len(gone) != len(sortedRefs(old)) {
		t.Fatalf("%d collected markers, want %d", len(gone), len(sortedRefs(old)))
	}
	// The same file again: stored again, and the markers go at the next pass.
	again := attachFile(t, a, sp, "q", "photo", 512<<10, 21)
	if !slices.Equal(sortedRefs(again), sortedRefs(old)) || !slices.Equal(heldChunks(t, a, sp), sortedRefs(old)) {
		t.Fatal("the file attached again is not held under its refs")
	}
	if c := compactNow(t, a, sp.ID); c.Spaces[0].ChunksCollected != 0 {
		t.Fatalf("collected a live attachment's chunks: %+v", c)
	}
	if gone, _ := (syncAdapter{a: a}).CollectedChunks(fsync.SpaceID(space)); len(gone) != 0 {
		t.Fatalf("%d collected markers left for chunks named again", len(gone))
	}
}

// Over real sync: a device that collected a superseded photo does not fetch
// it back from a peer that keeps it (`--attachments all`), and a peer
// asking it for a collected chunk gets none, in a round that ends cleanly.
func TestChunkGCNotFetchedBack(t *testing.T) {
	_, cfgA, cfgB := omnOfficers(t)
	cfgA.CompactEvery, cfgB.CompactEvery = -1, -1
	a := startSyncAgent(t, cfgA)
	sp, err := a.CreateSpace("case", nil)
	if err != nil {
		t.Fatal(err)
	}
	space := mustSpaceID(t, sp.ID)
	old := attachFile(t, a, sp, "p", "photo", 1<<20, 31)
	live := attachFile(t, a, sp, "p", "photo", 1<<20, 32)
	cfgB.Join = []string{a.SyncAddr()}
	b := startSyncAgent(t, cfgB)
	all := union(old, live)
	waitFor(t, "b to hold both photos' chunks", func() bool { return slices.Equal(heldChunks(t, b, sp), all) })

	c := compactNow(t, a, sp.ID)
	if c.Spaces[0].ChunksCollected != len(sortedRefs(old)) || !slices.Equal(heldChunks(t, a, sp), sortedRefs(live)) {
		t.Fatalf("a collected %+v", c)
	}
	added := a.engine().Stats().Chunks.Added
	for range 2 {
		if _, err := a.engine().SyncWith(context.Background(), fsync.PeerID(b.DeviceID())); err != nil {
			t.Fatal(err)
		}
	}
	if got := a.engine().Stats().Chunks.Added; got != added || !slices.Equal(heldChunks(t, a, sp), sortedRefs(live)) {
		t.Fatalf("a fetched back %d collected chunks from b", got-added)
	}
	// b asks a for them (an on-demand want): the round ends, nothing comes.
	var del []kvEntry
	for _, r := range old {
		del = append(del, kvEntry{Key: chunkKey(space, r), Del: true})
	}
	if err := b.commitChunks(space, del); err != nil {
		t.Fatal(err)
	}
	b.wantChunks(space, old)
	got := b.engine().Stats().Chunks.Added
	if _, err := b.engine().SyncWith(context.Background(), fsync.PeerID(a.DeviceID())); err != nil {
		t.Fatal(err)
	}
	if b.engine().Stats().Chunks.Added != got {
		t.Fatal("a sent a chunk it collected")
	}
}

// An on-demand open of an attachment replaced meanwhile (its chunks
// collected by the peers that have the replacement) says so, promptly,
// instead of waiting for chunks no peer will send.
func TestChunkGCOpenReplacedMeanwhile(t *testing.T) {
	omn := newTestBureau(t, "OMN")
	a := openTestAgent(t, newTestDevice(t, omn, "Amina", crypto.RoleOfficer))
	cfgB := newTestDevice(t, omn, "Boris", crypto.RoleOfficer)
	cfgB.Attachments = AttachOnDemand
	b := openTestAgent(t, cfgB)
	sp, err := a.CreateSpace("case", nil)
	if err != nil {
		t.Fatal(err)
	}
	transfer(t, b, a)
	if _, err := a.ShareKeys(); err != nil {
		t.Fatal(err)
	}
	attachFile(t, a, sp, "p", "photo", 256<<10, 41)
	transfer(t, a, b)
	done := make(chan error, 1)
	go func() {
		_, err := b.Open(context.Background(), api.OpenRequest{Space: sp.ID, Record: "p", Field: "photo", Out: filepath.Join(t.TempDir(), "out"), WaitMS: 30_000})
		done <- err
	}()
	waitFor(t, "b's open to ask for the chunks", func() bool {
		st := b.attach()
		st.mu.Lock()
		defer st.mu.Unlock()
		return len(st.wants[mustSpaceID(t, sp.ID)]) > 0
	})
	put(t, a, sp, "p", "photo", "replaced")
	transfer(t, a, b)
	err = <-done
	if !errors.Is(err, ErrNotHeld) || !strings.Contains(err.Error(), "replaced meanwhile") {
		t.Fatalf("open of a replaced attachment: %v", err)
	}
	if n := b.AttachStatus().Wanted; n != 0 {
		t.Fatalf("%d chunks still wanted", n)
	}
}

// BenchmarkChunkGCReplacedPhoto measures the store's bytes on disk for a
// 5 MiB attachment replaced 10 times, before and after `compact`, and
// against a store holding only the last photo. It prints a table and one
// JSON line:
//
//	go test ./agent -run '^$' -bench BenchmarkChunkGCReplacedPhoto -benchtime 1x
func BenchmarkChunkGCReplacedPhoto(b *testing.B) {
	const size, versions = 5 << 20, 11 // the first photo and 10 replacements
	type result struct {
		PhotoBytes      int   `json:"photo_bytes"`
		Versions        int   `json:"versions"`
		StoreBefore     int64 `json:"store_bytes_before"`
		StoreAfter      int64 `json:"store_bytes_after"`
		StoreOne        int64 `json:"store_bytes_one_photo"`
		ChunksCollected int   `json:"chunks_collected"`
		BytesCollected  int64 `json:"chunk_bytes_collected"`
		CompactMS       int64 `json:"compact_ms"`
	}
	attach := func(a *Agent, sp api.Space, seed uint64) {
		p := filepath.Join(b.TempDir(), "photo.jpg")
		writeRandomFile(b, p, size, seed)
		if _, err := a.Attach(api.AttachRequest{Space: sp.ID, Record: "p", Field: "photo", Path: p}); err != nil {
			b.Fatal(err)
		}
	}
	var res result
	for range b.N {
		omn := newTestBureau(b, "OMN")
		cfg := newTestDevice(b, omn, "Amina", crypto.RoleOfficer)
		cfg.CompactEvery = -1
		a := openTestAgent(b, cfg)
		sp, err := a.CreateSpace("case", nil)
		if err != nil {
			b.Fatal(err)
		}
		for i := range versions {
			attach(a, sp, uint64(100+i))
		}
		a.Close()
		a = openTestAgent(b, cfg)
		res.StoreBefore, _ = diskUsage(cfg.Layout.Store())
		zero := int64(0)
		b.ResetTimer()
		c, err := a.Compact(api.CompactRequest{Space: sp.ID, MinAgeSeconds: &zero})
		b.StopTimer()
		if err != nil {
			b.Fatal(err)
		}
		res.CompactMS = b.Elapsed().Milliseconds()
		res.ChunksCollected, res.BytesCollected = c.Spaces[0].ChunksCollected, c.Spaces[0].ChunkBytesCollected
		a.Close()
		a = openTestAgent(b, cfg)
		res.StoreAfter, _ = diskUsage(cfg.Layout.Store())
		a.Close()

		cfg1 := newTestDevice(b, omn, "Boris", crypto.RoleOfficer)
		one := openTestAgent(b, cfg1)
		sp1, err := one.CreateSpace("case", nil)
		if err != nil {
			b.Fatal(err)
		}
		attach(one, sp1, uint64(100+versions-1))
		one.Close()
		one = openTestAgent(b, cfg1)
		res.StoreOne, _ = diskUsage(cfg1.Layout.Store())
		one.Close()
	}
	res.PhotoBytes, res.Versions = size, versions
	b.ReportMetric(float64(res.StoreBefore), "bytes-before")
	b.ReportMetric(float64(res.StoreAfter), "bytes-after")
	fmt.Printf("\n%-28s %12s\n", "5 MiB photo, 11 versions", "store bytes")
	fmt.Printf("%-28s %12d\n", "before compact", res.StoreBefore)
	fmt.Printf("%-28s %12d\n", "after compact", res.StoreAfter)
	fmt.Printf("%-28s %12d\n", "only the last photo", res.StoreOne)
	fmt.Printf("chunks collected %d (%d bytes), compact %d ms\n", res.ChunksCollected, res.BytesCollected, res.CompactMS)
	j, _ := json.Marshal(res)
	fmt.Println(string(j))
}

// The background compaction pass collects chunks too.
func TestChunkGCBackground(t *testing.T) {
	omn := newTestBureau(t, "OMN")
	cfg := newTestDevice(t, omn, "Amina", crypto.RoleOfficer)
	cfg.CompactEvery, cfg.PruneMinAge = 2, -1
	cfg.ReclaimAfterPruned = 100 // two chunks collected make a rewrite due
	a := openTestAgent(t, cfg)
	sp, err := a.CreateSpace("case", nil)
	if err != nil {
		t.Fatal(err)
	}
	attachFile(t, a, sp, "p", "photo", 512<<10, 51)
	live := attachFile(t, a, sp, "p", "photo", 512<<10, 52)
	a.stopAfterWork() // runs what was queued, then stops
	if got := heldChunks(t, a, sp); !slices.Equal(got, sortedRefs(live)) {
		t.Fatalf("after the background pass: %d chunks held, want %d", len(got), len(sortedRefs(live)))
	}
	if n := chunkVersions(t, a, mustSpaceID(t, sp.ID)); n != len(sortedRefs(live)) {
		t.Fatalf("Badger's files hold %d chunk versions after the background pass, want %d (not rewritten)", n, len(sortedRefs(live)))
	}
	if n := a.AttachStatus().Collected; n != 2 {
		t.Fatalf("status counts %d chunks collected, want 2", n)
	}
	if m, err := a.MetricsText(); err != nil || !strings.Contains(m, "\nfieldsync_attachment_chunks_collected_total 2\n") {
		t.Fatalf("metrics (%v) lack fieldsync_attachment_chunks_collected_total 2", err)
	}
}

// A relay cannot read manifests: it keeps every chunk it holds, those of
// superseded attachments too.
func TestChunkGCRelayKeepsAll(t *testing.T) {
	omn := newTestBureau(t, "OMN")
	a := openTestAgent(t, newTestDevice(t, omn, "Amina", crypto.RoleOfficer))
	r := openTestAgent(t, newTestDevice(t, omn, "Relay", crypto.RoleRelay))
	sp, err := a.CreateSpace("case", nil)
	if err != nil {
		t.Fatal(err)
	}
	space := mustSpaceID(t, sp.ID)
	old := attachFile(t, a, sp, "p", "photo", 512<<10, 61)
	live := attachFile(t, a, sp, "p", "photo", 512<<10, 62)
	transfer(t, a, r)
	for _, ref := range union(old, live) {
		data, err := a.getChunk(space, ref)
		if err != nil {
			t.Fatal(err)
		}
		if ok, err := (syncAdapter{a: r}).PutChunk(fsync.PeerID(a.dev), fsync.SpaceID(space), fsync.ChunkRef(ref), data); err != nil || !ok {
			t.Fatalf("relay stores chunk: %v %v", ok, err)
		}
	}
	if c := compactNow(t, r, sp.ID); c.Spaces[0].ChunksCollected != 0 || !slices.Equal(heldChunks(t, r, sp), union(old, live)) {
		t.Fatalf("relay compact: %+v, %d chunks held", c, len(heldChunks(t, r, sp)))
	}
	if c := compactNow(t, a, sp.ID); c.Spaces[0].ChunksCollected != len(sortedRefs(old)) {
		t.Fatalf("officer compact: %+v (the test proves nothing)", c)
	}
}

// A manifest that arrives between the mark and the sweep (another officer
// attached the same file again: same epoch key, same refs) keeps the
// chunks the mark found dead.
func TestChunkGCManifestDuringSweep(t *testing.T) {
	omn := newTestBureau(t, "OMN")
	cfgA := newTestDevice(t, omn, "Amina", crypto.RoleOfficer)
	cfgA.CompactEvery = -1
	a := openTestAgent(t, cfgA)
	b := openTestAgent(t, newTestDevice(t, omn, "Boris", crypto.RoleOfficer))
	sp, err := a.CreateSpace("case", nil)
	if err != nil {
		t.Fatal(err)
	}
	transfer(t, b, a)
	if _, err := a.ShareKeys(); err != nil {
		t.Fatal(err)
	}
	old := attachFile(t, a, sp, "p", "photo", 512<<10, 71)
	put(t, a, sp, "p", "photo", "replaced")
	transfer(t, a, b)
	if again := attachFile(t, b, sp, "q", "photo", 512<<10, 71); !slices.Equal(sortedRefs(again), sortedRefs(old)) {
		t.Fatal("b sealed the same file under other refs: the test proves nothing")
	}
	chunkGCAfterMark = func() { transfer(t, b, a) }
	t.Cleanup(func() { chunkGCAfterMark = nil })
	if c := compactNow(t, a, sp.ID); c.Spaces[0].ChunksCollected != 0 || !slices.Equal(heldChunks(t, a, sp), sortedRefs(old)) {
		t.Fatalf("collected chunks a manifest that came meanwhile names: %+v", c)
	}
	chunkGCAfterMark = nil
	if c := compactNow(t, a, sp.ID); c.Spaces[0].ChunksCollected != 0 {
		t.Fatalf("collected a live attachment's chunks: %+v", c)
	}
}

// A hostile member's change that does not decode is a no-op everywhere and
// names nothing: collection goes on. A change of a newer format (waiting
// for an upgrade) may name chunks this build cannot read: collection in
// the space waits.
func TestChunkGCUndecodableChange(t *testing.T) {
	omn := newTestBureau(t, "OMN")
	cfg := newTestDevice(t, omn, "Member", crypto.RoleOfficer)
	cfg.CompactEvery = -1
	member := openTestAgent(t, cfg)
	evil := openTestAgent(t, newTestDevice(t, omn, "Evil", crypto.RoleOfficer))
	sp, err := member.CreateSpace("case", nil)
	if err != nil {
		t.Fatal(err)
	}
	id := mustSpaceID(t, sp.ID)
	advSettle(t, member, evil)
	key := advKey(t, evil, id)
	forge := func(body func(uint64, crdt.Timestamp) []byte) {
		t.Helper()
		env := insForgeChange(t, evil, id, key, body)
		evil.Ingest(env) // its own log goes on
		if _, err := member.Ingest(env); err != nil {
			t.Fatal(err)
		}
	}
	forge(func(uint64, crdt.Timestamp) []byte { return append([]byte{2}, "not a change at all"...) })
	old := attachFile(t, member, sp, "p", "photo", 512<<10, 81)
	put(t, member, sp, "p", "photo", "replaced")
	if c := compactNow(t, member, sp.ID); c.Spaces[0].ChunksCollected != len(sortedRefs(old)) {
		t.Fatalf("an undecodable change stopped collection: %+v", c)
	}
	forge(func(seq uint64, hlc crdt.Timestamp) []byte {
		b := insChange(evil.dev, []crdt.Op{{Kind: crdt.OpPut, Record: "p9", Field: "v", Value: []byte("x")}}, nil)(seq, hlc)
		b[0] = 99
		return b
	})
	attachFile(t, member, sp, "p", "photo", 512<<10, 82)
	put(t, member, sp, "p", "photo", "replaced again")
	if c := compactNow(t, member, sp.ID); c.Spaces[0].ChunksCollected != 0 {
		t.Fatalf("collected beside a change this build cannot read: %+v", c)
	}
}

// twoOfficersNoPasses is two OMN officers (not syncing, no background
// compaction) holding a space a created and its key; cfgA reopens a.
func twoOfficersNoPasses(t *testing.T) (a, b *Agent, cfgA Config, sp api.Space, space crypto.SpaceID) {
	t.Helper()
	_, cfgA, cfgB := omnOfficers(t)
	cfgA.CompactEvery, cfgB.CompactEvery = -1, -1
	a, b = openTestAgent(t, cfgA), openTestAgent(t, cfgB)
	sp, err := a.CreateSpace("case", nil)
	if err != nil {
		t.Fatal(err)
	}
	transfer(t, b, a)
	if _, err := a.ShareKeys(); err != nil {
		t.Fatal(err)
	}
	transfer(t, a, b)
	return a, b, cfgA, sp, mustSpaceID(t, sp.ID)
}

// A live manifest held as a stub (a peer sent its envelope with the value
// cut: heal.go) names chunks this device cannot see until it heals; a dead
// manifest naming the same chunks must not get them collected meanwhile.
func TestChunkGCWaitsForWithheldManifest(t *testing.T) {
	a, b, _, sp, space := twoOfficersNoPasses(t)
	// b's own copy of the file, superseded: b holds its chunks, and a dead
	// manifest names them.
	refs := sortedRefs(attachFile(t, b, sp, "r", "photo", 512<<10, 71))
	put(t, b, sp, "r", "photo", "gone")
	// a attaches the same file (same key, same refs); b gets that live
	// manifest only as a stub.
	if again := attachFile(t, a, sp, "q", "photo", 512<<10, 71); !slices.Equal(sortedRefs(again), refs) {
		t.Fatal("a sealed the same file under other refs: the test proves nothing")
	}
	transferLastAsStub(t, a, b, space)
	if r, err := b.GetRecord(api.RecordRef{Space: sp.ID, Record: "q"}); err != nil || !r.Fields["photo"].Siblings[0].Withheld {
		t.Fatalf("b does not hold q's manifest withheld (%+v, %v): the test proves nothing", r, err)
	}
	if c := compactNow(t, b, sp.ID); c.Spaces[0].ChunksCollected != 0 || !slices.Equal(heldChunks(t, b, sp), refs) {
		t.Fatalf("collected chunks a withheld live manifest may name: %+v", c.Spaces[0])
	}
}
