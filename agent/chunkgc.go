package agent

// Chunk collection (docs/design.md §7, "Bounded storage"; docs/storage.md,
// "Chunk collection"): an attachment chunk that no manifest a record still
// holds names any more — the photo was replaced, the field deleted — and
// that no manifest younger than the prune minimum age names either, is
// deleted from the store, so superseded photos stop costing their bytes.
//
// A pass is a mark and sweep per space, run from the compaction pass
// (compact.go). The mark reads, without the write lock, the manifests of
// the space's changes (superseded manifests are never pruned: a record
// erasure lists a file's chunks from them) and of its record states (live
// and conflict siblings): a chunk is a candidate only if some readable
// manifest, applied and older than the minimum age, names it (a chunk no
// readable manifest names — a change waiting for its key, a chunk that
// came before its manifest — is never judged), and no manifest the state
// holds, nor any young or waiting one, does. The sweep deletes candidates
// in batches of chunkGCBatch under the state lock, leaving those that
// envelopes stored since the mark name (read again, up to chunkGCRecheck;
// beyond, the next pass judges again); attachments being written pin
// their chunks (Attach).
//
// A collected chunk leaves a small marker (pfxChunkGone): `--attachments
// all` fetches every chunk a peer holds, and without it a device would
// fetch back from a relay (which keeps everything: it cannot read
// manifests) what it just collected. The marker holds only the ref; a
// later mark that finds the chunk named again by a live or young manifest
// drops it, and an explicit want (`record open`) fetches regardless.

import (
	"bytes"
	"errors"
	"maps"
	"slices"
	"time"

	"fieldsync/agent/api"
	"fieldsync/crdt"
	"fieldsync/crypto"
	fsync "fieldsync/sync"
)

// pfxChunkGone: b space ref(32) -> {1}: a chunk collected here (not fetched
// again by `--attachments all`).
const pfxChunkGone = 'b'

const (
	// chunkGCBatch bounds the chunks deleted under one hold of the lock.
	chunkGCBatch = 256
	// chunkGCBackgroundMax bounds the chunks one background pass deletes
	// per space; the next pass goes on.
	chunkGCBackgroundMax = 8192
)

func chunkGoneKey(space crypto.SpaceID, ref crypto.ChunkRef) []byte {
	k := make([]byte, 0, 1+16+32)
	k = append(k, pfxChunkGone)
	k = append(k, space[:]...)
	return append(k, ref[:]...)
}

// spaceChunkRefs lists the refs under a space's prefix p (chunks or gone
// markers).
func (a *Agent) spaceChunkRefs(p byte, space crypto.SpaceID) ([]crypto.ChunkRef, error) {
	prefix := append([]byte{p}, space[:]...)
	var out []crypto.ChunkRef
	err := a.db.kv.ScanKeys(prefix, func(k []byte) error {
		if len(k) == len(prefix)+32 {
			var r crypto.ChunkRef
			copy(r[:], k[len(prefix):])
			out = append(out, r)
		}
		return nil
	})
	return out, err
}

// compactChunks runs a chunk collection in space id as part of a
// compaction pass and adds what it collected to st.
func (a *Agent) compactChunks(st *api.CompactedSpace, id crypto.SpaceID, minAge time.Duration, limit int) error {
	n, b, err := a.collectChunks(id, minAge, limit)
	st.ChunksCollected += n
	st.ChunkBytesCollected += b
	return err
}

// collectChunks deletes the chunks of space id that no live, conflicting,
// young or waiting manifest names and some old dead one does (at most limit;
// 0: no limit). It returns the chunks deleted and their sealed bytes. A
// relay, or a device without the space's key, collects nothing: it cannot
// read manifests.
func (a *Agent) collectChunks(id crypto.SpaceID, minAge time.Duration, limit int) (int, int64, error) {
	held, err := a.spaceChunkRefs(pfxChunk, id)
	if err != nil || len(held) == 0 {
		gone, _ := a.spaceChunkRefs(pfxChunkGone, id)
		if err != nil || len(gone) == 0 {
			return 0, 0, err
		}
	}
	// Everything stored or applied so far is on disk (Barrier) once the
	// snapshot is taken; the sweep checks nothing moved since.
	var keys crypto.Keyring
	var applied *crdt.Context
	var heads map[crypto.DeviceID]head
	err = a.quiesced(func() error {
		if sp := a.spaces[id]; sp != nil && len(sp.keys) > 0 && !a.cfg.Relay {
			keys, applied, heads = sp.keyring(), sp.ctx.Clone(), maps.Clone(sp.heads)
		}
		return nil
	})
	if err != nil || keys == nil {
		return 0, 0, err
	}
	horizon := pruneHorizon(a.cfg.now(), minAge)
	keep, dead := map[crypto.ChunkRef]bool{}, map[crypto.ChunkRef]bool{}
	unsure := false
	err = a.db.scan(envSpacePrefix(id), func(k, env []byte) error {
		h, err := crypto.ParseHeader(env)
		if err != nil || h.Kind != crypto.KindChange {
			return nil
		}
		oc, err := openChange(env, keys)
		if err != nil || oc.ch == nil {
			if unreadable(h, keys, err) {
				// Waiting for its epoch key, or a newer format: what it
				// names is unknown, so nothing is judged.
				unsure = true
				return errStopScan
			}
			return nil // a no-op on every replica (malformed): names nothing
		}
		if hlcMillis(h.HLC) > horizon || !applied.Contains(crdt.Dot{Replica: crdt.ReplicaID(h.Author), Seq: h.Seq}) {
			nameChangeChunks(oc.ch, keep) // young or waiting
		} else {
			nameChangeChunks(oc.ch, dead)
		}
		return nil
	}, a.countCorrupt)
	if err != nil || unsure {
		return 0, 0, err
	}
	err = a.db.scan(recSpacePrefix(id), func(k, b []byte) error {
		r, err := crdt.UnmarshalRecord(b)
		if err != nil {
			unsure = true // rebuilt when next loaded; judged next pass
			return errStopScan
		}
		for _, f := range r.Registers() {
			for _, s := range f.Siblings {
				if len(s.Value) == 0 && a.valueWithheld(id, keys, s.Dot) {
					// A live value held without its bytes (a stub, heal.go)
					// may be a manifest: what it names is unknown until it
					// heals, so nothing is judged.
					unsure = true
					return errStopScan
				}
				nameChunks(s.Value, keep)
			}
		}
		return nil
	}, func(k []byte) { unsure = true; a.countCorrupt(k) })
	if err != nil || unsure {
		return 0, 0, err
	}
	var cands []crypto.ChunkRef
	for _, r := range held {
		if dead[r] && !keep[r] {
			cands = append(cands, r)
		}
	}
	// Markers of chunks named again go: `--attachments all` fetches them.
	gone, err := a.spaceChunkRefs(pfxChunkGone, id)
	if err != nil {
		return 0, 0, err
	}
	var unmark []kvEntry
	for _, r := range gone {
		if keep[r] {
			unmark = append(unmark, kvEntry{Key: chunkGoneKey(id, r), Del: true})
		}
	}
	if len(unmark) > 0 {
		if err := a.commitChunks(id, unmark); err != nil {
			return 0, 0, err
		}
	}
	if limit > 0 && len(cands) > limit {
		cands = cands[:limit]
	}
	if chunkGCAfterMark != nil {
		chunkGCAfterMark()
	}
	n, size := 0, int64(0)
	for len(cands) > 0 {
		batch := cands[:min(len(cands), chunkGCBatch)]
		cands = cands[len(batch):]
		var done []crypto.ChunkRef
		moved := false
		err := a.quiesced(func() error {
			sp := a.spaces[id]
			if sp == nil {
				moved = true // erased meanwhile
				return nil
			}
			// Envelopes stored since the mark may name candidates again
			// (the same file attached again): those stay. A change that
			// waited and was applied since was kept by the mark already,
			// and no state brings a dead value back.
			named, ok := a.namedSince(sp, heads, keys)
			if !ok {
				moved = true // too much came meanwhile: judged next pass
				return nil
			}
			heads = maps.Clone(sp.heads)
			st := a.attach()
			st.mu.Lock()
			defer st.mu.Unlock()
			var entries []kvEntry
			var bytesOf int64
			for _, r := range batch {
				if st.pins[chunkID{id, r}] > 0 || named[r] {
					continue // being attached again, or named since the mark
				}
				v, err := a.db.kv.Get(chunkKey(id, r))
				if err != nil {
					continue // gone meanwhile (an erasure, a corrupt copy dropped)
				}
				bytesOf += int64(len(v))
				entries = append(entries, kvEntry{Key: chunkKey(id, r), Del: true}, a.db.entry(chunkGoneKey(id, r), []byte{1}))
				done = append(done, r)
			}
			if len(entries) == 0 {
				return nil
			}
			if err := a.db.kv.CommitGroups([][]kvEntry{entries})[0]; err != nil {
				return err
			}
			size += bytesOf
			return nil
		})
		if err != nil {
			return n, size, err
		}
		n += len(done)
		a.dropWants(id, done)
		if moved {
			break
		}
	}
	if n > 0 {
		a.chunksCollected.Add(int64(n))
	}
	return n, size, nil
}

// chunkReclaimWeight is what one collected chunk counts for, in pruned
// envelopes, towards the background rewrite of the store's files
// (reclaimIfDue): a chunk averages 256 KiB in the value log, where only a
// rewrite frees it; 64 chunks (~16 MiB) make a rewrite due, at most hourly.
const chunkReclaimWeight = 64

// chunkGCAfterMark, set by a test only, runs between the mark and the
// sweep.
var chunkGCAfterMark func()

// chunkGCRecheck bounds the envelopes stored since the mark that a sweep
// batch reads again (under the state lock) rather than leaving the space
// to the next pass.
const chunkGCRecheck = 256

// namedSince returns the chunks that manifests in the envelopes of sp
// stored after heads name; ok is false if more than chunkGCRecheck came,
// or one does not open. stateMu held, nothing in flight.
func (a *Agent) namedSince(sp *spaceState, heads map[crypto.DeviceID]head, keys crypto.Keyring) (map[crypto.ChunkRef]bool, bool) {
	named := map[crypto.ChunkRef]bool{}
	n := 0
	for author, h := range sp.heads {
		from := heads[author].Seq
		if h.Seq <= from {
			continue
		}
		if n += int(h.Seq - from); n > chunkGCRecheck {
			return nil, false
		}
		for seq := from + 1; seq <= h.Seq; seq++ {
			env, err := a.db.get(envKey(sp.id, author, seq))
			if err != nil {
				return nil, false
			}
			hd, err := crypto.ParseHeader(env)
			if err != nil || hd.Kind != crypto.KindChange {
				continue
			}
			oc, err := openChange(env, keys)
			if err != nil || oc.ch == nil {
				if unreadable(hd, keys, err) {
					return nil, false
				}
				continue
			}
			nameChangeChunks(oc.ch, named)
		}
	}
	return named, true
}

// nameChunks adds the chunks v names to into, if v is a manifest.
func nameChunks(v []byte, into map[crypto.ChunkRef]bool) {
	if _, refs, ok, err := parseManifest(v); ok && err == nil {
		for _, r := range refs {
			into[r] = true
		}
	}
}

// nameChangeChunks adds the chunks the manifests a change puts (or
// resolves to) name to into.
func nameChangeChunks(ch *crdt.Change, into map[crypto.ChunkRef]bool) {
	for j := range ch.Ops {
		if o := &ch.Ops[j]; o.Kind == crdt.OpPut || o.Kind == crdt.OpResolve {
			nameChunks(o.Value, into)
		}
	}
}

// unreadable reports whether a change that did not open to a change (err,
// or an agent body) may yet name chunks here: its epoch key is not held, or
// it is of a newer format. Any other failure makes it a no-op on every
// replica (causal.go), which names nothing: a hostile member's malformed
// change does not stop collection.
func unreadable(h crypto.Header, keys crypto.Keyring, err error) bool {
	if err == nil {
		return false // an agent body (receipts): names no chunk
	}
	if _, ok := keys.Key(h.Space, h.Epoch); !ok {
		return true
	}
	return errors.Is(err, crdt.ErrUnknownVersion)
}

// chunkCollected reports whether a chunk was collected here and is not
// held again.
func (a *Agent) chunkCollected(space crypto.SpaceID, ref crypto.ChunkRef) bool {
	_, err := a.db.kv.Get(chunkGoneKey(space, ref))
	return err == nil
}

// pinChunk keeps ref from collection while an attachment that names it is
// written (Attach); unpin releases it.
func (a *Agent) pinChunk(space crypto.SpaceID, ref crypto.ChunkRef) {
	st := a.attach()
	st.mu.Lock()
	if st.pins == nil {
		st.pins = map[chunkID]int{}
	}
	st.pins[chunkID{space, ref}]++
	st.mu.Unlock()
}

func (a *Agent) unpinChunks(space crypto.SpaceID, refs []crypto.ChunkRef) {
	st := a.attach()
	st.mu.Lock()
	defer st.mu.Unlock()
	for _, r := range refs {
		k := chunkID{space, r}
		if st.pins[k]--; st.pins[k] <= 0 {
			delete(st.pins, k)
		}
	}
}

// --- fsync.ChunkCollector ---

var _ fsync.ChunkCollector = syncAdapter{}

// CollectedChunks lists the chunks of space collected here and not held
// again: `--attachments all` does not fetch them back from peers.
func (s syncAdapter) CollectedChunks(space fsync.SpaceID) ([]fsync.ChunkRef, error) {
	refs, err := s.a.spaceChunkRefs(pfxChunkGone, crypto.SpaceID(space))
	out := make([]fsync.ChunkRef, len(refs))
	for i, r := range refs {
		out[i] = fsync.ChunkRef(r)
	}
	slices.SortFunc(out, func(x, y fsync.ChunkRef) int { return bytes.Compare(x[:], y[:]) })
	return out, err
}
