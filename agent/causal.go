package agent

// Causal dependencies of received changes, waiting envelopes, and the
// deterministic no-op for envelopes every replica must judge alike
// (docs/crdt.md, "Causal dependencies"; issue 12 items 4 and 5).

import (
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"slices"

	"fieldsync/crdt"
	"fieldsync/crypto"
)

// Reasons under which a received envelope is kept and applied as a no-op
// on every replica (counted in status' rejected map as evidence): its
// author signed and chained it, so every replica keeps it and its log goes
// on, but it changes nothing.
const (
	// RejectCausality: a change whose seen dots lie outside its signed
	// causal context, or whose context names an envelope other than the
	// one held.
	RejectCausality = "causality"
	// RejectUnentitledShare: a key share by a device not entitled to the
	// space now; kept, its key never adopted.
	RejectUnentitledShare = "unentitled_share"
)

// Pending markers (keys.go pendingKey) say why an envelope stored and
// chained is not applied yet. Their value is one of these bytes and a
// payload; an empty value (written before markers had reasons) means "no
// key", epoch unknown.
const (
	waitKey     = 'k' // + epoch key ID (16): the epoch key is not held
	waitHeld    = 'h' // + replica (16) + seq (8): a dependency not yet held
	waitApplied = 'a' // + replica (16) + seq (8): a seen change not yet applied
	waitUpgrade = 'u' // a body version this build does not know
)

func keyWaitMarker(epoch crypto.KeyID) []byte { return append([]byte{waitKey}, epoch[:]...) }

func dotWaitMarker(kind byte, d crdt.Dot) []byte {
	b := append([]byte{kind}, d.Replica[:]...)
	return binary.BigEndian.AppendUint64(b, d.Seq)
}

// depsFor is the causal context a local change carries: for each other
// replica its ops name, the newest envelope of it this device holds.
// stateMu held.
func (a *Agent) depsFor(sp *spaceState, ops []crdt.Op) ([]crdt.Dep, error) {
	var reps []crdt.ReplicaID
	for i := range ops {
		for _, d := range ops[i].Seen {
			if d.Replica != crdt.ReplicaID(a.dev) {
				reps = append(reps, d.Replica)
			}
		}
	}
	if len(reps) == 0 {
		return nil, nil
	}
	slices.SortFunc(reps, crdt.ReplicaID.Compare)
	reps = slices.Compact(reps)
	deps := make([]crdt.Dep, 0, len(reps))
	for _, r := range reps {
		hd, ok := sp.heads[crypto.DeviceID(r)]
		if !ok || hd.Seq == 0 {
			return nil, fmt.Errorf("a seen dot of %s, whose log this device does not hold", r)
		}
		deps = append(deps, crdt.Dep{Replica: r, Seq: hd.Seq, Hash: hd.Hash})
	}
	return deps, nil
}

// validUpTo is the last seq of author's log in the space that can still be
// valid: below its revocation's cut-off and below a fork. Dependencies and
// seen dots beyond it name envelopes every replica removes or refuses, so
// they are satisfied as far as they can be (a write that saw a revoked
// write still stands).
func (a *Agent) validUpTo(space crypto.SpaceID, author crypto.DeviceID) uint64 {
	lim := uint64(math.MaxUint64)
	tt := a.trustNow()
	if r := tt.revs[author]; r != nil {
		lim = r.Cutoff(space)
	}
	if f, ok := tt.frozen[gapKey{space, author}]; ok && f > 0 {
		lim = min(lim, f-1)
	}
	return lim
}

type causalVerdict int

const (
	causalReady causalVerdict = iota
	causalWait
	causalBad
)

// checkCausal judges a received change against what the space holds: bad if
// its seen dots are not within its dependencies or a dependency names an
// envelope other than the one held; wait (with the dot and marker kind to
// wait for) while a dependency is not held or a seen change not applied;
// else ready. Every replica that ends up holding the same envelopes reaches
// the same verdict. stateMu held.
func (a *Agent) checkCausal(sp *spaceState, ch *crdt.Change) (causalVerdict, byte, crdt.Dot, error) {
	v, d, err := a.staticVerdict(sp, ch, a.heldLive(sp))
	switch v {
	case causalBad:
		return v, 0, d, err
	case causalWait:
		return v, waitHeld, d, nil
	}
	if d, ok := a.firstUnapplied(sp, sp.ctx, ch); ok {
		return causalWait, waitApplied, d, nil
	}
	return causalReady, 0, crdt.Dot{}, nil
}

// heldLive looks up the ID of the envelope at (author, seq) among those the
// space holds now (the head's from memory). stateMu held.
func (a *Agent) heldLive(sp *spaceState) func(crypto.DeviceID, uint64) ([32]byte, bool) {
	return func(dev crypto.DeviceID, seq uint64) ([32]byte, bool) {
		hd := sp.heads[dev]
		switch {
		case hd.Seq < seq:
			return [32]byte{}, false
		case hd.Seq == seq:
			return hd.Hash, true
		}
		k := depKey{dev, seq}
		if u, ok := sp.unflushed[k]; ok {
			return u.id, true
		}
		if h, ok := sp.depIDs[k]; ok {
			return h, true
		}
		env, err := a.db.get(envKey(sp.id, dev, seq))
		if err != nil {
			// Acknowledged but lost or corrupt here: wait until peers
			// send it again.
			return [32]byte{}, false
		}
		h := crypto.Hash(env)
		// Many changes name the same envelope (every write made between
		// two syncs names the same head of each other author): remember
		// a few. An envelope held never changes until a cut, which
		// reloads the space state and so this cache.
		if len(sp.depIDs) >= 256 || sp.depIDs == nil {
			sp.depIDs = make(map[depKey][32]byte, 16)
		}
		sp.depIDs[k] = h
		return h, true
	}
}

type depKey struct {
	author crypto.DeviceID
	seq    uint64
}

// unflushedID is the ID of an envelope that was its author's head until a
// later one of the same log was stored, and the write that stored the later
// one: until that write is on disk, the earlier envelope may not be there
// yet either.
type unflushedID struct {
	id      [32]byte
	writeID uint64
}

// advanceHead makes nh the head of author's log in sp, and remembers the ID
// of the envelope it follows until that one is surely on disk. heldLive
// looks envelopes below the head up on disk, where the transaction being
// built (a sync batch's run) or a commit still in flight (the ingest
// window) may not have put them yet: a change depending on one of them
// would be kept waiting for an envelope this device holds and has applied,
// and nothing would drain it until that author wrote again. stateMu held,
// inside the write transaction that stores nh's envelope.
func (a *Agent) advanceHead(sp *spaceState, author crypto.DeviceID, nh head) {
	if old := sp.heads[author]; old.Seq > 0 && old.Seq < nh.Seq {
		if sp.unflushed == nil {
			sp.unflushed = map[depKey]unflushedID{}
		}
		if len(sp.unflushed) >= max(1024, sp.unflushedPruneAt) {
			// A margin: a corrupt record rebuilt inside this transaction
			// takes write IDs of its own (rebuild.go), so this one's may end
			// up a few above writeID+1.
			done := a.com.Committed()
			for k, u := range sp.unflushed {
				if u.writeID+64 <= done {
					delete(sp.unflushed, k)
				}
			}
			// What is still in flight stays; the next sweep waits until the
			// map has doubled, so that a bulk ingest with thousands in
			// flight does not sweep them all at every envelope.
			sp.unflushedPruneAt = 2 * len(sp.unflushed)
		}
		// This transaction is handed to the committer as write writeID+1
		// (commitWrite, commitInWindow), after every earlier one.
		sp.unflushed[depKey{author, old.Seq}] = unflushedID{id: old.Hash, writeID: a.writeID + 1}
	}
	sp.heads[author] = nh
}

// staticVerdict is the part of checkCausal that depends on the envelopes
// held only: bad (the seen dots are not within the dependencies, or a
// dependency names an envelope other than the one held), wait (with the
// dependency not held yet), or ready.
func (a *Agent) staticVerdict(sp *spaceState, ch *crdt.Change, held func(crypto.DeviceID, uint64) ([32]byte, bool)) (causalVerdict, crdt.Dot, error) {
	if err := ch.CheckDeps(); err != nil {
		return causalBad, crdt.Dot{}, err
	}
	for _, d := range ch.Deps {
		dev := crypto.DeviceID(d.Replica)
		if d.Seq > a.validUpTo(sp.id, dev) {
			continue
		}
		h, ok := held(dev, d.Seq)
		if !ok {
			return causalWait, crdt.Dot{Replica: d.Replica, Seq: d.Seq}, nil
		}
		if h != d.Hash {
			return causalBad, crdt.Dot{}, fmt.Errorf("its dependency %s:%d names an envelope this device does not hold", dev, d.Seq)
		}
	}
	return causalReady, crdt.Dot{}, nil
}

// firstUnapplied returns a seen dot of ch whose change ctx has not applied
// (ignoring dots beyond their author's valid log, which nothing applies).
func (a *Agent) firstUnapplied(sp *spaceState, ctx *crdt.Context, ch *crdt.Change) (crdt.Dot, bool) {
	for i := range ch.Ops {
		for _, s := range ch.Ops[i].Seen {
			if !ctx.Contains(s) && s.Seq <= a.validUpTo(sp.id, crypto.DeviceID(s.Replica)) {
				return crdt.Dot{Replica: s.Replica, Seq: s.Seq}, true
			}
		}
	}
	return crdt.Dot{}, false
}

// withoutVoidDots returns ch without the seen dots that name envelopes
// past their author's valid log (a revocation's cut-off, a fork): every
// replica removes those, so seeing them has no effect — and left in, they
// would be kept as partial dots, as many as a hostile change names.
func (a *Agent) withoutVoidDots(sp *spaceState, ch *crdt.Change) *crdt.Change {
	var out *crdt.Change
	for i := range ch.Ops {
		seen := ch.Ops[i].Seen
		keep := seen[:0:0]
		void := false
		for j, s := range seen {
			if s.Seq > a.validUpTo(sp.id, crypto.DeviceID(s.Replica)) {
				if !void {
					keep = append(keep, seen[:j]...)
					void = true
				}
				continue
			}
			if void {
				keep = append(keep, s)
			}
		}
		if !void {
			continue
		}
		if out == nil {
			c := *ch
			c.Ops = slices.Clone(ch.Ops)
			out = &c
		}
		out.Ops[i].Seen = keep
	}
	if out == nil {
		return ch
	}
	// Resolve and note-remove must name something: one that named only
	// void dots keeps one of them (removing it has no effect).
	named := map[crdt.ReplicaID]bool{}
	for i := range out.Ops {
		if len(out.Ops[i].Seen) == 0 && len(ch.Ops[i].Seen) > 0 && (out.Ops[i].Kind == crdt.OpResolve || out.Ops[i].Kind == crdt.OpNoteRemove) {
			out.Ops[i].Seen = ch.Ops[i].Seen[:1]
		}
		for _, d := range out.Ops[i].Seen {
			named[d.Replica] = true
		}
	}
	// Dependencies go with the replicas still named.
	out.Deps = slices.DeleteFunc(slices.Clone(ch.Deps), func(d crdt.Dep) bool { return !named[d.Replica] })
	return out
}

// seenApplied reports whether every change ch saw is applied in ctx.
func (a *Agent) seenApplied(sp *spaceState, ctx *crdt.Context, ch *crdt.Change) bool {
	_, missing := a.firstUnapplied(sp, ctx, ch)
	return !missing
}

// noteWait records that an envelope waits for replica's seq: storing or
// applying it triggers a drain of the space's waiting envelopes.
func (s *spaceState) noteWait(d crdt.Dot) {
	if s.waits == nil {
		s.waits = map[crypto.DeviceID]uint64{}
	}
	dev := crypto.DeviceID(d.Replica)
	if w, ok := s.waits[dev]; !ok || d.Seq < w {
		s.waits[dev] = d.Seq
	}
}

// resolvesWait reports (and forgets) whether author's seq may let a waiting
// envelope go on; the drain registers what still waits again.
func (s *spaceState) resolvesWait(author crypto.DeviceID, seq uint64) bool {
	if w, ok := s.waits[author]; ok && seq >= w {
		delete(s.waits, author)
		return true
	}
	return false
}

// markerReady reports, from a pending marker alone, whether its envelope
// may be applied now (true also when the marker does not say). It notes
// dependency waits so that their arrival triggers a drain. stateMu held.
func (a *Agent) markerReady(sp *spaceState, v []byte, upgrade bool) bool {
	if len(v) == 0 {
		return true
	}
	switch v[0] {
	case waitKey:
		if len(v) != 1+16 {
			return true
		}
		var id crypto.KeyID
		copy(id[:], v[1:])
		_, ok := sp.keys[id]
		return ok
	case waitHeld, waitApplied:
		if len(v) != 1+16+8 {
			return true
		}
		var d crdt.Dot
		copy(d.Replica[:], v[1:17])
		d.Seq = binary.BigEndian.Uint64(v[17:])
		dev := crypto.DeviceID(d.Replica)
		ready := sp.heads[dev].Seq >= d.Seq || d.Seq > a.validUpTo(sp.id, dev)
		if v[0] == waitApplied {
			ready = sp.ctx.Contains(d) || d.Seq > a.validUpTo(sp.id, dev)
		}
		if !ready {
			sp.noteWait(d)
		}
		return ready
	case waitUpgrade:
		return upgrade
	}
	return true
}

// noopEnvelope keeps an envelope that every replica must judge alike as
// applied with no effect: its seq counts as seen (the context stays
// gap-free), the reason is counted as evidence, and its author's log goes
// on. stateMu held.
func (a *Agent) noopEnvelope(sp *spaceState, h crypto.Header, reason string, err error) {
	sp.ctx.Add(crdt.Dot{Replica: crdt.ReplicaID(h.Author), Seq: h.Seq})
	a.countReject(reason)
	a.log.Warn("a signed envelope changes nothing: kept, applied as a no-op on every replica",
		"space", sp.id.String(), "author", h.Author.String(), "seq", h.Seq, "reason", reason, "err", err)
}

// applyChange applies a verified change envelope, next in its author's
// log: open it, decode it, judge its dependencies, apply it. It returns the
// store entries of its effects, and waiting=true (with a pending marker
// among the entries) when it cannot be applied yet. Every outcome but
// waiting is final and the same on every replica that holds the key: an
// envelope that does not open, does not decode, does not match its header
// or names dots outside its causal context is a no-op (item 5 of issue 12).
// stateMu held.
func (a *Agent) applyChange(sp *spaceState, h crypto.Header, env []byte) (entries []kvEntry, waiting bool, err error) {
	entries = a.noteHolder(sp, h.Author, h.Epoch)
	marker := func(v []byte) ([]kvEntry, bool, error) {
		return append(entries, a.db.entry(pendingKey(sp.id, h.Author, h.Seq), v)), true, nil
	}
	if _, ok := sp.keys[h.Epoch]; !ok {
		if a.cfg.Relay {
			return entries, false, nil
		}
		return marker(keyWaitMarker(h.Epoch))
	}
	oc, err := openChange(env, sp) // either envelope version (segments.go)
	var ch *crdt.Change
	if err == nil {
		if oc.agent != nil { // a receipt or a receipt policy (receipts.go)
			return a.applyAgentBody(sp, h, oc.agent, entries)
		}
		ch = oc.ch
	}
	var eo errOpen
	switch {
	case errors.As(err, &eo):
		a.noopEnvelope(sp, h, RejectUndecoded, err)
		return entries, false, nil
	case errors.Is(err, crdt.ErrUnknownVersion):
		// A newer format: kept, applied after an upgrade (docs/design.md §5).
		return marker([]byte{waitUpgrade})
	case err != nil:
		a.noopEnvelope(sp, h, RejectUndecoded, err)
		return entries, false, nil
	case ch.Author != crdt.ReplicaID(h.Author) || ch.Seq != h.Seq || ch.HLC.Pack() != h.HLC:
		a.noopEnvelope(sp, h, RejectMismatch, errors.New("change body does not match its signed header"))
		return entries, false, nil
	}
	switch v, kind, dot, why := a.checkCausal(sp, ch); v {
	case causalBad:
		a.noopEnvelope(sp, h, RejectCausality, why)
		return entries, false, nil
	case causalWait:
		sp.noteWait(dot)
		return marker(dotWaitMarker(kind, dot))
	}
	ch = a.withoutVoidDots(sp, ch)
	if drift, skewed := a.clock.Observe(ch.HLC, a.physMillis()); skewed {
		a.statMu.Lock()
		a.skewed[h.Author] = drift
		a.statMu.Unlock()
	} else if h.Author != a.dev && ch.HLC.Compare(a.othersHLC) > 0 {
		a.othersHLC = ch.HLC // autoerase.go
		entries = append(entries, a.db.entry(metaKey("hlc-others"), be64(ch.HLC.Pack())))
	}
	touched, err := crdt.ApplyChange(sp.ctx, func(id crdt.RecordID) (*crdt.Record, error) { return a.loadRecord(sp, id) }, ch)
	if err != nil {
		if errors.Is(err, crdt.ErrInvalidChange) || errors.Is(err, crdt.ErrMalformed) {
			a.noopEnvelope(sp, h, RejectUndecoded, err)
			return entries, false, nil
		}
		return nil, false, err
	}
	rec, err := a.recordEntries(sp, touched)
	if err != nil {
		return nil, false, err
	}
	a.noteApplied(1) // compact.go
	return append(append(entries, rec...), a.noteReceiptDue(sp, h, env)...), false, nil
}
