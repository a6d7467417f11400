package agent

// Compaction: pruning superseded values (docs/design.md §7, "Bounded
// storage"; docs/storage.md, "Compaction").
//
// A change written in the version 2 segment layout (segments.go) keeps, per
// record, a skeleton (ops, seen dots, dependencies) apart from the values.
// A value no record holds any more — a register sibling some later op saw
// and replaced, a note removed — is dead for good (crdt.Record.HoldsValue),
// and every replica that applies the op that killed it reaches the same
// state. So once every value-carrying op of a record in a change is dead,
// that record's values segment is cut (replaced by its hash, as a record
// erasure cuts): the envelope keeps its ID, signature and chain, and its
// skeleton still kills everything the whole change killed, on a device
// holding older values too. No causal stability is needed for that; a
// minimum age (by the change's HLC) keeps recent superseded values for
// history.

import (
	"bytes"
	"errors"
	"fmt"
	"math"
	"net/http"
	"time"

	"fieldsync/agent/api"
	"fieldsync/crdt"
	"fieldsync/crypto"
	"fieldsync/internal/store"
)

const (
	// defaultPruneMinAge is how old (by HLC) a change must be before its
	// dead values are pruned, unless configured (Config.PruneMinAge).
	defaultPruneMinAge = 24 * time.Hour
	// defaultCompactEvery is how many changes applied here (written or
	// received) start a background pass (Config.CompactEvery).
	defaultCompactEvery = 4096
	// compactBatch bounds the envelopes judged and cut under one hold of
	// the write lock.
	compactBatch = 256
	// compactBackgroundMax bounds the envelopes one background pass cuts
	// (or stores cold) per space; the next pass goes on.
	compactBackgroundMax = 8192
	// healAskEvery: the first background pass and every healAskEvery-th
	// after it also look for stubs of live writes and ask peers for their
	// whole copies (heal.go), as `compact` does; that opens every envelope
	// with a cut segment, so not every pass.
	healAskEvery = 4
)

// compactSentinel is the key FlushMemtables writes and drops to flush the
// memtables; nothing reads it.
var compactSentinel = metaKey("compact-flush")

func init() {
	apiExtensions = append(apiExtensions, func(a *Agent, mux *http.ServeMux) {
		post(a, mux, api.PathCompact, func(req api.CompactRequest) (any, error) { return a.Compact(req) })
	})
}

// pruneHorizon is the newest HLC wall time (ms) a change may have to be
// pruned, minAge before now. A minimum age of 0 prunes everything: a
// change's HLC may be ahead of this device's clock (a peer's clock pushed
// ours, within the drift allowed), and "at once" must not skip it.
func pruneHorizon(now time.Time, minAge time.Duration) int64 {
	if minAge <= 0 {
		return math.MaxInt64
	}
	return now.Add(-minAge).UnixMilli()
}

// pruneMinAge is the configured minimum age, or the default.
func (a *Agent) pruneMinAge() time.Duration {
	if a.cfg.PruneMinAge != 0 {
		return max(a.cfg.PruneMinAge, 0)
	}
	return defaultPruneMinAge
}

// Compact is `fieldsync compact [SPACE]`: prune every dead value old
// enough in the space (or every space), then rewrite the store's files so
// the old versions are gone (FlushMemtables, Flatten) and collect the value log.
func (a *Agent) Compact(req api.CompactRequest) (api.Compacted, error) {
	minAge := a.pruneMinAge()
	if req.MinAgeSeconds != nil {
		if *req.MinAgeSeconds < 0 {
			return api.Compacted{}, fmt.Errorf("%w: min_age_seconds is negative", ErrBadRequest)
		}
		minAge = time.Duration(*req.MinAgeSeconds) * time.Second
	}
	var ids []crypto.SpaceID
	if req.Space != "" {
		sp, err := a.lookupSpace(req.Space)
		if err != nil {
			return api.Compacted{}, err
		}
		ids = []crypto.SpaceID{sp.id}
	} else {
		ids = a.SpaceIDs()
	}
	out := api.Compacted{Spaces: []api.CompactedSpace{}}
	cut := 0
	for _, id := range ids {
		st, err := a.compactSpace(id, minAge, 0, true, !req.NoCold)
		if err == nil {
			err = a.compactChunks(&st, id, minAge, 0) // chunkgc.go
		}
		if err != nil {
			return out, err
		}
		cut += st.Envelopes + st.Frozen + st.ChunksCollected
		out.Spaces = append(out.Spaces, st)
	}
	if cut > 0 {
		if err := a.reclaim(); err != nil {
			return out, err
		}
		out.Reclaimed = true
	}
	return out, nil
}

// reclaim drops the old versions of what compaction overwrote from the
// store's files and collects the value log.
//
// Badger refuses writes while the memtables flush (DropPrefix), and its
// value-log collection reads the memtable's version unlocked
// (DB.MaxVersion): both run under stateMu with nothing in flight, as an
// erasure's do (erase.go). Flatten, the long part, runs beside writes. Not
// withWrite: compaction must run on a disk that is full, to free it.
func (a *Agent) reclaim() error {
	if err := a.quiesced(func() error { return a.db.kv.FlushMemtables(compactSentinel) }); err != nil {
		return fmt.Errorf("reclaim the space of pruned values: %w", err)
	}
	if err := a.db.kv.Flatten(); err != nil {
		return fmt.Errorf("reclaim the space of pruned values: %w", err)
	}
	if err := a.quiesced(func() error { a.collectValueLog(); return nil }); err != nil {
		return err
	}
	a.prunedSince.Store(0)
	a.appliedSince.Store(0)
	a.lastReclaim.Store(a.cfg.now().Unix())
	return nil
}

// pruneCandidate is an envelope with values segments that may be dead,
// or one already cut to store in cold form (cold.go).
type pruneCandidate struct {
	key    []byte // its E key
	segs   []pruneSeg
	freeze bool // cut already, stored whole: freeze even if nothing is cut now
}

// pruneSeg is one values segment and the dots of the values it holds.
type pruneSeg struct {
	index  int
	record crdt.RecordID
	dots   []crdt.Dot
}

// compactSpace prunes the dead values of one space's applied changes older
// than minAge, at most limit envelopes (0: no limit). The envelopes are
// read and opened without the write lock; each batch is judged against the
// newest record states and cut under it. With report set it also counts
// the live values held without their bytes (Withheld), which means opening
// every envelope with a cut values segment; without it (most background
// passes: healAskEvery) an envelope with nothing left to prune, or too young, is skipped from
// its header and segment list, unopened.
//
// With cold set, the envelopes it cuts, and those cut before, are stored
// in cold form (cold.go).
func (a *Agent) compactSpace(id crypto.SpaceID, minAge time.Duration, limit int, report, cold bool) (api.CompactedSpace, error) {
	st := api.CompactedSpace{Space: id.String()}
	var keys crypto.Keyring
	var applied *crdt.Context
	a.withRead(func() error {
		if sp := a.spaces[id]; sp != nil && len(sp.keys) > 0 {
			keys, applied = sp.keyring(), sp.ctx.Clone()
		}
		return nil
	})
	horizon := pruneHorizon(a.cfg.now(), minAge)
	var cands []pruneCandidate
	var withheld []pruneSeg // ops applied without their value
	err := a.db.scanStored(envSpacePrefix(id), func(k, env []byte, stored bool, size int) error {
		st.BytesBefore += int64(size)
		if keys == nil {
			return nil // a relay, or no key yet: it cannot tell dead from live
		}
		h, err := crypto.ParseHeader(env)
		if err != nil || h.Kind != crypto.KindChange || h.Version != crypto.HeaderVersion2 {
			return nil
		}
		if !applied.Contains(crdt.Dot{Replica: crdt.ReplicaID(h.Author), Seq: h.Seq}) {
			return nil // waiting: its values are yet to be applied
		}
		// Cut already (a pass of an older build, a record erasure, a
		// stub received) but stored whole: freeze it (cold.go).
		freeze := cold && !stored && anyCut(env)
		if !report && (hlcMillis(h.HLC) > horizon || !valuesLeft(env)) {
			if freeze {
				cands = append(cands, pruneCandidate{key: bytes.Clone(k), freeze: true})
			}
			return nil
		}
		oc, err := openChange(env, keys)
		if err != nil || oc.ch == nil {
			return nil
		}
		for j, w := range oc.withheld {
			if w {
				withheld = append(withheld, pruneSeg{record: oc.ch.Ops[j].Record, dots: []crdt.Dot{opDotOf(oc.ch, j)}})
			}
		}
		if hlcMillis(h.HLC) > horizon {
			if freeze {
				cands = append(cands, pruneCandidate{key: bytes.Clone(k), freeze: true})
			}
			return nil
		}
		infos, err := crypto.Segments(env)
		if err != nil || len(infos) != len(oc.segRecord) {
			return nil
		}
		c := pruneCandidate{key: bytes.Clone(k), freeze: freeze}
		for i := 1; i < len(infos); i += 2 {
			// A values segment and its live skeleton name the same
			// record; in the version 1 layout neighbours never do.
			rec := oc.segRecord[i]
			if rec == "" || infos[i].Erased || oc.segRecord[i-1] != rec {
				continue
			}
			ps := pruneSeg{index: i, record: rec}
			manifest := false
			for j := range oc.ch.Ops {
				if o := &oc.ch.Ops[j]; o.Record == rec && carriesValue(o.Kind) {
					ps.dots = append(ps.dots, opDotOf(oc.ch, j))
					_, _, isManifest, _ := parseManifest(o.Value)
					manifest = manifest || isManifest
				}
			}
			// An attachment's manifest is kept: it is what names the
			// file's chunks, which a record erasure must find
			// (recordSegments) and which stay held anyway.
			if !manifest {
				c.segs = append(c.segs, ps)
			}
		}
		if len(c.segs) > 0 || c.freeze {
			cands = append(cands, c)
		}
		return nil
	}, a.countCorrupt)
	if err != nil {
		return st, err
	}
	if report {
		st.Withheld = a.countWithheld(id, withheld)
	}
	for len(cands) > 0 && (limit == 0 || max(st.Envelopes, st.Frozen) < limit) {
		n, envs, vals, frozen, err := a.pruneBatch(id, cands[:min(len(cands), compactBatch)], cold)
		if err != nil {
			return st, err
		}
		st.Envelopes += envs
		st.Values += vals
		st.Frozen += frozen
		cands = cands[n:]
	}
	err = a.db.kv.Scan(envSpacePrefix(id), func(k, sealed []byte) error {
		if pt, err := a.db.openRaw(k, sealed); err == nil {
			st.BytesAfter += int64(len(pt)) // as stored: cold or not
		}
		return nil
	})
	return st, err
}

// valuesLeft reports whether a version 2 envelope has a values segment
// (an odd index) not cut yet: read from its segment list, without a key.
func valuesLeft(env []byte) bool {
	infos, err := crypto.Segments(env)
	if err != nil {
		return false
	}
	for i := 1; i < len(infos); i += 2 {
		if !infos[i].Erased {
			return true
		}
	}
	return false
}

// opDotOf is the dot of op j of ch.
func opDotOf(ch *crdt.Change, j int) crdt.Dot {
	d := crdt.Dot{Replica: ch.Author, Seq: ch.Seq, Op: uint32(j)}
	if ch.OpIndex != nil {
		d.Op = ch.OpIndex[j]
	}
	return d
}

// pruneBatch judges candidates from the front of batch against the newest
// record states and cuts the values segments whose values are all dead,
// under the write lock, in one commit of at most store.MaxGroupBytes
// (a Badger transaction's limit). Every envelope it writes with a cut
// segment is stored cold when it can be (cold.go). It returns how many
// candidates it judged (at least one), the envelopes and segments cut, and
// the envelopes stored cold.
func (a *Agent) pruneBatch(id crypto.SpaceID, batch []pruneCandidate, cold bool) (judged, envs, vals, frozen int, err error) {
	defer func() {
		if err == nil && frozen > 0 {
			a.storeFormat.Store(storageFormatCold)
		}
	}()
	err = a.withWrite(func(t *tx) error {
		sp := a.spaces[id]
		if sp == nil {
			judged = len(batch)
			return nil // erased meanwhile
		}
		size := 0
		for _, c := range batch {
			if judged > 0 && size >= store.MaxGroupBytes/2 {
				break
			}
			judged++
			var idx []int
			for _, s := range c.segs {
				r, err := a.loadRecord(sp, s.record)
				if err != nil {
					return err
				}
				dead := true
				for _, d := range s.dots {
					if r != nil && r.HoldsValue(d) {
						dead = false
						break
					}
				}
				if dead {
					idx = append(idx, s.index)
				}
			}
			if len(idx) == 0 && !c.freeze {
				continue
			}
			env, err := a.db.get(c.key)
			if err != nil {
				if errors.Is(err, errKVNotFound) {
					continue // dropped meanwhile (an erasure)
				}
				return err
			}
			cut := env
			if len(idx) > 0 {
				cut = cutSegments(env, idx)
			}
			changed := !bytes.Equal(cut, env)
			if !changed && !c.freeze {
				continue
			}
			val := cut
			if cold && anyCut(cut) {
				if fz := a.db.freeze(cut); fz != nil {
					val = fz
					frozen++
				}
			}
			if !changed && bytes.Equal(val, cut) {
				continue // nothing cut and no cold form: as stored
			}
			t.put(a.db.entry(c.key, val))
			size += len(c.key) + len(val) + 64
			if changed {
				envs++
				vals += len(idx)
			}
		}
		if frozen > 0 && a.storeFormat.Load() < storageFormatCold {
			// In the cold values' commit: an older build must never
			// open a store holding them (keys.go, storageFormatCold).
			t.put(a.formatEntry(storageFormatCold))
		}
		return nil
	})
	return judged, envs, vals, frozen, err
}

// countWithheld counts the ops applied without their value (a values
// segment cut or malformed) whose value is still live: stubs of live
// writes (a hostile or broken peer's), shown as value_withheld.
func (a *Agent) countWithheld(id crypto.SpaceID, ops []pruneSeg) int {
	n := 0
	a.withRead(func() error {
		sp := a.spaces[id]
		if sp == nil {
			return nil
		}
		for _, o := range ops {
			if r, err := a.loadRecord(sp, o.record); err == nil && r != nil && r.HoldsValue(o.dots[0]) {
				n++
				a.wantWhole(id, o.dots[0]) // heal.go
			}
		}
		return nil
	})
	return n
}

// noteApplied counts changes applied here and starts a background
// compaction pass once enough have been since the last one. stateMu held.
func (a *Agent) noteApplied(n int) {
	every := a.cfg.CompactEvery
	if every < 0 || a.cfg.Relay {
		return
	}
	if every == 0 {
		every = defaultCompactEvery
	}
	a.appliedSince.Add(int64(n))
	if a.compactCount.Add(int64(n)) >= int64(every) {
		a.compactCount.Store(0)
		a.queueAfter(&a.after.compactDue)
	}
}

// Background reclaims: once background passes have pruned
// reclaimAfterPruned envelopes (Config.ReclaimAfterPruned), the next pass
// also rewrites the store's files, at most once per reclaimInterval. Values
// of 512 bytes and more live in Badger's value log (docs/storage.md, "Value
// log"), where a cut envelope's old version stays until a compaction drops
// its pointer and the log is collected; Badger's own compactions rarely
// reach those keys, so without this the store grew to 11× the live state on
// W1-S's ten overwrites (`bench storage`), pruned or not.
//
// Overwritten records leave their old values in the value log too, pruned
// or not: so the files are also rewritten after reclaimAfterPasses
// background passes' worth of changes applied (65,536 by default, about
// 64 MiB of old record values at most).
const (
	defaultReclaimAfterPruned = 4096
	reclaimAfterPasses        = 16
	reclaimInterval           = time.Hour
)

// compactBackground is one bounded background pass (afterLoop): every
// space, at most compactBackgroundMax envelopes each, judged in batches
// that hold the write lock briefly; then, when enough was pruned since the
// last time, the store's files are rewritten (reclaim).
func (a *Agent) compactBackground() {
	defer a.reclaimIfDue()
	askHeal := a.backgroundPasses.Add(1)%healAskEvery == 1
	for _, id := range a.SpaceIDs() {
		st, err := a.compactSpace(id, a.pruneMinAge(), compactBackgroundMax, askHeal, true)
		if err == nil {
			err = a.compactChunks(&st, id, a.pruneMinAge(), chunkGCBackgroundMax) // chunkgc.go
		}
		if err != nil {
			if !errors.Is(err, ErrClosed) {
				a.log.Warn("pruning superseded values", "space", id.String(), "err", err)
			}
			return
		}
		// envelopes rewritten (cut or frozen), at least, and collected chunks
		a.prunedSince.Add(int64(max(st.Envelopes, st.Frozen) + chunkReclaimWeight*st.ChunksCollected))
		if st.Envelopes > 0 || st.Frozen > 0 || st.ChunksCollected > 0 {
			a.log.Info("pruned superseded values", "space", id.String(), "envelopes", st.Envelopes, "values", st.Values,
				"frozen", st.Frozen, "bytes_before", st.BytesBefore, "bytes_after", st.BytesAfter,
				"chunks_collected", st.ChunksCollected, "chunk_bytes_collected", st.ChunkBytesCollected)
		}
	}
}

// reclaimIfDue rewrites the store's files after a background pass when
// enough was pruned since the last rewrite and it was not within the hour.
func (a *Agent) reclaimIfDue() {
	need := int64(a.cfg.ReclaimAfterPruned)
	if need <= 0 {
		need = defaultReclaimAfterPruned
	}
	every := int64(a.cfg.CompactEvery)
	if every <= 0 {
		every = defaultCompactEvery
	}
	last := a.lastReclaim.Load()
	due := a.prunedSince.Load() >= need || a.appliedSince.Load() >= reclaimAfterPasses*every
	if !due || (last != 0 && a.cfg.now().Sub(time.Unix(last, 0)) < reclaimInterval) {
		return
	}
	if err := a.reclaim(); err != nil {
		if !errors.Is(err, ErrClosed) {
			a.log.Warn("rewriting the store after pruning", "err", err)
		}
		return
	}
	a.log.Info("store rewritten after pruning", "envelopes_pruned", a.prunedSince.Load())
}
