package agent

// Healing stubs of live writes (docs/design.md §7, "Bounded storage",
// "Hostile stubs"): a peer or relay may send a change with the values
// segment of a live write cut; it applies value-less and shows
// value_withheld. When a whole copy of the same envelope (same ID, so the
// same segment hashes) arrives later, the held copy's cut values segments
// whose values the record's state still holds are put back from it, and
// the values are given back to the records (crdt.Record.FillValue): the
// state is then the one a replica that got the whole copy first holds.
//
// Never healed: a values segment whose skeleton is cut too (a record
// erasure cuts both, and an erased record must never come back; a
// record-erase marker's segments are cut from the arriving copy on ingest
// anyway), a values segment whose every value is dead (pruned: it stays
// pruned), and a held copy holding a segment the arriving one lacks (ours
// is kept). Relays keep what they hold: they cannot tell live from dead.

import (
	"bytes"
	"slices"
	"sync"

	"fieldsync/crdt"
	"fieldsync/crypto"
	fsync "fieldsync/sync"
)

// healHeld heals the held copy of a verified change envelope that arrived
// again, from env, as above. It reports whether it healed anything; the
// envelope and the records it filled are written with t. stateMu held.
func (a *Agent) healHeld(t *tx, sp *spaceState, h crypto.Header, env []byte) (bool, error) {
	if a.cfg.Relay || h.Kind != crypto.KindChange || h.Version != crypto.HeaderVersion2 || len(sp.keys) == 0 {
		return false, nil
	}
	key := envKey(h.Space, h.Author, h.Seq)
	stored, err := a.db.get(key)
	if err != nil {
		return false, nil // lost or corrupt: restoreEnvelope's business
	}
	si, err1 := crypto.Segments(stored)
	ni, err2 := crypto.Segments(env)
	if err1 != nil || err2 != nil || len(si) != len(ni) || crypto.Hash(stored) != crypto.Hash(env) {
		return false, nil
	}
	var cand []int
	for i := range ni {
		if ni[i].Erased && !si[i].Erased {
			return false, nil // the arriving copy lacks what ours holds: ours stays
		}
		if i%2 == 1 && si[i].Erased && !ni[i].Erased && !si[i-1].Erased {
			cand = append(cand, i)
		}
	}
	if len(cand) == 0 {
		return false, nil
	}
	// Defensive: segments a record-erase marker names never come back,
	// even if the arriving copy was not cut on ingest.
	erased := a.erasedSegments(h.Space, h.Author, h.Seq, h.HLC)
	oc, err := openChange(env, sp)
	if err != nil || oc.ch == nil || len(oc.segRecord) != len(ni) {
		return false, nil
	}
	applied := sp.ctx.Contains(crdt.Dot{Replica: crdt.ReplicaID(h.Author), Seq: h.Seq})
	touched := map[crdt.RecordID]*crdt.Record{}
	var healed []int
	for _, i := range cand {
		rec := oc.segRecord[i]
		if rec == "" || oc.segRecord[i-1] != rec || slices.Contains(erased, i) || slices.Contains(erased, i-1) {
			continue
		}
		if !applied {
			// Waiting: its values are applied with it, from the healed copy.
			healed = append(healed, i)
			continue
		}
		r := touched[rec]
		if r == nil {
			held, err := a.loadRecord(sp, rec)
			if err != nil {
				return false, err
			}
			if held == nil {
				continue
			}
			r = held.Clone() // the cache's copy changes only once written
		}
		live, filled := false, false
		for j := range oc.ch.Ops {
			o := &oc.ch.Ops[j]
			if o.Record != rec || !carriesValue(o.Kind) {
				continue
			}
			if d := opDotOf(oc.ch, j); r.HoldsValue(d) {
				live = true
				filled = r.FillValue(d, o.Value) || filled
			}
		}
		if !live {
			continue // every value dead: pruned, stays pruned
		}
		healed = append(healed, i)
		if filled {
			touched[rec] = r
		}
	}
	if len(healed) == 0 {
		return false, nil
	}
	var keepCut []int
	for i := range si {
		if si[i].Erased && !slices.Contains(healed, i) {
			keepCut = append(keepCut, i)
		}
	}
	out := cutSegments(env, keepCut)
	if crypto.Hash(out) != crypto.Hash(stored) || bytes.Equal(out, stored) {
		return false, nil
	}
	t.changed() // the cache holds the filled records: a failed commit reloads
	entries, err := a.recordEntries(sp, touched)
	if err != nil {
		return false, err
	}
	t.put(entries...)
	t.put(a.db.entry(key, out))
	a.healedValues.Add(int64(len(healed)))
	a.wholeArrived(envRef{h.Space, h.Author, h.Seq})
	return true, nil
}

// Asking peers for whole copies. A stub's values cannot be judged live when
// it is applied: a pruned envelope received while catching up leaves a
// value-less sibling that the next envelopes kill, so asking then would
// have a joining device ask for everything again. The wants come from
// `compact` and from every healAskEvery-th background pass, which count
// the live values held without their bytes once the state has settled
// (countWithheld). For each, the heads this device
// tells peers (syncAdapter.Heads) are lowered below the stub's envelope
// for its author, so a peer sends that author's log again from there; the
// whole copy heals on arrival (healHeld). Bounded: at most maxStubWants
// wants, each told to peers for stubAskRounds summaries, then dropped
// (a peer holding only the stub sends the stub again, which changes
// nothing); in memory only.
const (
	maxStubWants  = 256
	stubAskRounds = 4
)

// stubWants are the envelopes asked for whole: rounds left, by envelope.
type stubWants struct {
	mu   sync.Mutex
	left map[envRef]int
}

// wantWhole asks peers for the whole copy of the envelope of the op with
// dot d, whose value a record holds without its bytes.
func (a *Agent) wantWhole(space crypto.SpaceID, d crdt.Dot) {
	if a.cfg.Relay {
		return
	}
	k := envRef{space, crypto.DeviceID(d.Replica), d.Seq}
	w := &a.stubs
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.left == nil {
		w.left = map[envRef]int{}
	}
	if _, ok := w.left[k]; !ok && len(w.left) >= maxStubWants {
		return
	}
	w.left[k] = stubAskRounds
}

// askWhole lowers v, the heads of space about to be told to a peer, below
// the envelopes asked for whole, and counts a round against each.
func (a *Agent) askWhole(space crypto.SpaceID, v fsync.Vector) {
	w := &a.stubs
	w.mu.Lock()
	defer w.mu.Unlock()
	for k, n := range w.left {
		if k.space != space {
			continue
		}
		if n <= 0 {
			delete(w.left, k)
			continue
		}
		w.left[k] = n - 1
		if seq, ok := v[fsync.PeerID(k.author)]; ok && k.seq-1 < seq {
			v[fsync.PeerID(k.author)] = k.seq - 1
		}
	}
}

// wholeArrived drops the want of an envelope healed.
func (a *Agent) wholeArrived(k envRef) {
	w := &a.stubs
	w.mu.Lock()
	delete(w.left, k)
	w.mu.Unlock()
}
