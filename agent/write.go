package agent

import (
	"crypto/rand"
	"errors"
	"fmt"
	"slices"
	"time"

	"fieldsync/crdt"
	"fieldsync/crypto"
	"fieldsync/internal/platform"
)

// ErrDiskFull means the store's disk has less free space than the agent
// keeps in reserve; nothing was written.
var ErrDiskFull = errors.New("disk full")

// checkDiskSpace refuses writes while the store's file system has less than
// MinFreeBytes free. It asks the kernel at most once a second while there
// is ample room (diskSlack beyond the reserve), and on every write once
// there is not: a second of fast writes must not overshoot the reserve.
// Safe without stateMu (diskMu): chunks and partial envelopes are stored
// outside it.
func (a *Agent) checkDiskSpace() error {
	if a.cfg.MinFreeBytes <= 0 {
		return nil
	}
	a.diskMu.Lock()
	defer a.diskMu.Unlock()
	now := time.Now()
	if a.diskOK && now.Sub(a.diskChecked) < time.Second {
		return nil
	}
	free, err := platform.FreeBytes(a.cfg.Layout.Store())
	if err != nil {
		return nil // cannot tell: let the write try
	}
	a.diskChecked, a.diskOK = now, free >= a.cfg.MinFreeBytes+diskSlack
	if free < a.cfg.MinFreeBytes {
		return fmt.Errorf("%w: %d MiB free where the store is (%s); the agent keeps %d MiB in reserve and accepts no writes until space is freed — nothing was lost",
			ErrDiskFull, free>>20, a.cfg.Layout.Store(), a.cfg.MinFreeBytes>>20)
	}
	return nil
}

// diskSlack is the room beyond the reserve above which the free-space
// answer is reused for a second: more than a second of writes can take.
const diskSlack = 512 << 20

// ErrClosed is returned by writes after Close.
var ErrClosed = errors.New("agent is shutting down")

// takeInflight hands the caller the results of the received envelopes
// handed to the committer without waiting (commitInWindow); the caller
// must receive each. stateMu held.
func (a *Agent) takeInflight() []<-chan error {
	w := a.inflight
	a.inflight = nil
	return w
}

// reloadIfFailed reloads the state from the store if a commit failed since
// it was last loaded, so that the in-memory heads are again what is on disk.
func (a *Agent) reloadIfFailed() error {
	a.stateMu.Lock()
	defer a.stateMu.Unlock()
	if a.closed {
		return nil
	}
	return a.reloadIfStale()
}

// loadRecord returns the newest state of a record: from the cache (which
// holds uncommitted writes too) or the store. A record that is absent yields
// (nil, nil). A corrupt record is rebuilt from its envelopes. stateMu held.
func (a *Agent) loadRecord(sp *spaceState, id crdt.RecordID) (*crdt.Record, error) {
	key := recKey(sp.id, string(id))
	if r, ok := a.cache.get(string(key)); ok {
		return r, nil
	}
	b, err := a.db.get(key)
	switch {
	case errors.Is(err, errKVNotFound):
		return nil, nil
	case errors.Is(err, errCorrupt):
		a.countCorrupt(key)
		return a.rebuildRecord(sp, id)
	case err != nil:
		return nil, err
	}
	r, err := crdt.UnmarshalRecord(b)
	if err != nil {
		a.countCorrupt(key)
		return a.rebuildRecord(sp, id)
	}
	return r, nil
}

// appendEnvelope seals and signs the next envelope of this device's log in
// the space and returns the store entries for it (envelope and head). The
// in-memory head moves on at once; a failed commit reloads it. stateMu held.
func (a *Agent) appendEnvelope(sp *spaceState, kind crypto.Kind, body []byte, key *crypto.SpaceKey, hlc crdt.Timestamp) ([]kvEntry, error) {
	return a.appendSealed(sp, kind, hlc, func(h crypto.Header) ([]byte, error) {
		return crypto.Seal(h, body, key, a.id, rand.Reader)
	})
}

// appendSealed is appendEnvelope with the sealing given: seal gets the
// header (seq and prev filled in). Changes are sealed in segments
// (segments.go). stateMu held.
func (a *Agent) appendSealed(sp *spaceState, kind crypto.Kind, hlc crdt.Timestamp, seal func(crypto.Header) ([]byte, error)) ([]kvEntry, error) {
	h := a.nextHeader(sp, kind, hlc)
	env, err := seal(h)
	if err != nil {
		return nil, fmt.Errorf("seal envelope: %w", err)
	}
	return []kvEntry{
		a.db.entry(envKey(sp.id, a.dev, h.Seq), env),
		a.chainEnvelope(sp, h, crypto.Hash(env)),
	}, nil
}

// nextHeader is the header of this device's next envelope in the space.
// stateMu held.
func (a *Agent) nextHeader(sp *spaceState, kind crypto.Kind, hlc crdt.Timestamp) crypto.Header {
	h0 := sp.heads[a.dev]
	return crypto.Header{
		Kind:   kind,
		Space:  sp.id,
		Author: a.dev,
		Seq:    h0.Seq + 1,
		HLC:    hlc.Pack(),
		Prev:   h0.Hash,
	}
}

// chainEnvelope makes the envelope of header h and ID id this device's
// head in the space and returns the head's store entry. The in-memory head
// moves on at once; a failed commit reloads it. stateMu held.
func (a *Agent) chainEnvelope(sp *spaceState, h crypto.Header, id [32]byte) kvEntry {
	nh := head{Seq: h.Seq, Hash: id}
	a.advanceHead(sp, a.dev, nh)
	a.ownStoredSeq(sp) // drops what is stored
	f := &ownFlight{seq: h.Seq, writeID: a.writeID + 1}
	sp.ownFlight = append(sp.ownFlight, f)
	a.flightFix = append(a.flightFix, f)
	if h.Kind != crypto.KindChange {
		// Seqs of envelopes without CRDT ops still count as seen, so the
		// context's vector stays gap-free.
		sp.ctx.Add(crdt.Dot{Replica: crdt.ReplicaID(a.dev), Seq: h.Seq})
	}
	return a.db.entry(headKey(sp.id, a.dev), nh.marshal())
}

// ownFlight is one of this device's envelopes chained by the write numbered
// writeID, not yet known to be on disk.
type ownFlight struct {
	seq     uint64
	writeID uint64
}

// placeOwnFlight gives the envelopes the write transaction chained the
// write number it was just given (a.writeID). stateMu held.
func (a *Agent) placeOwnFlight() {
	for _, f := range a.flightFix {
		f.writeID = a.writeID
	}
	clear(a.flightFix)
	a.flightFix = a.flightFix[:0]
}

// ownStoredSeq is the seq up to which this device's own log in the space is
// on disk, signatures included: the head, less the envelopes whose write
// has not yet reached the disk (they are chained and maybe not yet signed;
// docs/design.md §7, "Signing outside the write lock"). Writes reach the
// disk in the order they were chained, so the first one not known to be
// stored bounds it. stateMu held.
func (a *Agent) ownStoredSeq(sp *spaceState) uint64 {
	done := a.com.Committed()
	n := 0
	for n < len(sp.ownFlight) && sp.ownFlight[n].writeID <= done {
		n++
	}
	if n > 0 {
		clear(sp.ownFlight[:n])
		sp.ownFlight = sp.ownFlight[n:]
	}
	if len(sp.ownFlight) == 0 {
		return sp.heads[a.dev].Seq
	}
	return sp.ownFlight[0].seq - 1
}

// prepareChange seals ch as this device's next envelope in the space (a
// version 2, segmented envelope) and chains it — its ID is final before
// its signature (docs/crypto.md §2) — but leaves the signature to the
// returned function, which runs outside stateMu, in parallel with the next
// write's build (docs/design.md §7, "Signing outside the write lock"). It
// returns the head's entry; sign returns the envelope's. stateMu held.
func (a *Agent) prepareChange(sp *spaceState, ch *crdt.Change, key *crypto.SpaceKey) (kvEntry, func() (kvEntry, error), error) {
	segs, err := changeSegments(ch)
	if err != nil {
		return kvEntry{}, nil, err
	}
	h := a.nextHeader(sp, crypto.KindChange, ch.HLC)
	p, err := crypto.PrepareSegments(h, segs, key, a.id, rand.Reader)
	if err != nil {
		return kvEntry{}, nil, fmt.Errorf("seal envelope: %w", err)
	}
	headEntry := a.chainEnvelope(sp, h, p.ID())
	db, space, dev, hook := a.db, sp.id, a.dev, a.signHook
	sign := func() (kvEntry, error) {
		if hook != nil { // tests: a signature that fails or waits
			if err := hook(h.Seq); err != nil {
				return kvEntry{}, err
			}
		}
		return db.entry(envKey(space, dev, h.Seq), p.Sign()), nil
	}
	return headEntry, sign, nil
}

// ensureProfile writes this device's profile (the officer's name, sealed
// under the epoch key) the first time it writes in a space. stateMu held.
func (a *Agent) ensureProfile(sp *spaceState) ([]kvEntry, error) {
	if _, ok := sp.heads[a.dev]; ok && sp.profiled {
		return nil, nil
	}
	if sp.current == nil {
		return nil, fmt.Errorf("no key for space %s: this device cannot write in it yet", sp.id)
	}
	p := crypto.Profile{Officer: a.ks.Officer, NameSalt: a.ks.NameSalt}
	entries, err := a.appendEnvelope(sp, crypto.KindProfile, p.Marshal(), sp.current, a.clock.Now(a.physMillis()))
	if err != nil {
		return nil, err
	}
	sp.profiled = true
	entries = append(entries, a.db.entry(profileKey(sp.id, a.dev), []byte(a.ks.Officer)))
	return entries, nil
}

func (a *Agent) physMillis() int64 { return a.cfg.now().UnixMilli() }

// writeOps is the local write path (docs/design.md §4): build the ops against the
// newest state, encode the change, seal and sign it, apply it, and store the
// envelope, the new record states, the context and the head in one atomic,
// fsynced batch. It returns once the change is durable.
func (a *Agent) writeOps(sp *spaceState, build func(load func(crdt.RecordID) (*crdt.Record, error)) ([]crdt.Op, error)) (*crdt.Change, map[crdt.RecordID]*crdt.Record, error) {
	ch, outs, errs, err := a.writeOpsMulti(sp, []opBuilder{build}, nil)
	if err != nil {
		return nil, nil, err
	}
	if errs[0] != nil {
		return nil, nil, errs[0]
	}
	return ch, outs[0], nil
}

// opBuilder builds one request's ops against the newest state.
type opBuilder func(load func(crdt.RecordID) (*crdt.Record, error)) ([]crdt.Op, error)

// writeOpsMulti is writeOps for several requests at once (combine.go): the
// ops of every request whose build succeeds go into one change — one
// signature, one envelope, one fsync. errs[i] is request i's own refusal
// (it is left out); err fails them all. outs[i] are the records request i
// touched. The builds must touch distinct records. handed, if set, runs once
// the change is with the committer, before it is durable (withWrite).
func (a *Agent) writeOpsMulti(sp *spaceState, builds []opBuilder, handed func()) (*crdt.Change, []map[crdt.RecordID]*crdt.Record, []error, error) {
	var ch *crdt.Change
	outs := make([]map[crdt.RecordID]*crdt.Record, len(builds))
	errs := make([]error, len(builds))
	drain, submitted := false, false // submitted: the batch went to the committer
	err := a.withWrite(func(t *tx) error {
		t.handed = handed
		// withWrite may have reloaded: look the space up again.
		if sp = a.spaces[sp.id]; sp == nil {
			return errNoSpace
		}
		if a.cfg.Relay || sp.current == nil {
			return fmt.Errorf("%w: this device holds no key for space %s", ErrForbidden, sp.id)
		}
		load := func(id crdt.RecordID) (*crdt.Record, error) { return a.loadRecord(sp, id) }
		var ops []crdt.Op
		owner := map[crdt.RecordID]int{} // record -> request
		for i, build := range builds {
			o, err := build(load)
			if err == nil && len(o) == 0 {
				err = fmt.Errorf("%w: nothing to write", ErrBadRequest)
			}
			if err != nil {
				errs[i] = err
				continue
			}
			for _, op := range o {
				owner[op.Record] = i
			}
			ops = append(ops, o...)
		}
		if len(ops) == 0 {
			if len(builds) == 1 {
				return errs[0]
			}
			return nil
		}
		// The dependencies name other authors' envelopes only: the rotation
		// and profile below do not change them.
		deps, err := a.depsFor(sp, ops)
		if err != nil {
			return err
		}
		// Judge the size before anything changes: a refused write must not
		// cost a reload of the whole state. The final encoding differs only
		// in its seq and clock (a few bytes), checked again below.
		if err := a.checkChangeSize(&crdt.Change{Author: crdt.ReplicaID(a.dev), Seq: sp.heads[a.dev].Seq + 3, HLC: a.clock.Last, Ops: ops, Deps: deps}); err != nil {
			return err
		}
		t.changed()
		if a.needsRotation(sp) {
			// A device that held the current epoch key was revoked or its
			// bureau withdrawn: this write opens a new epoch (docs/design.md §5).
			rot, err := a.rotateEpoch(sp)
			if err != nil {
				return err
			}
			shares, _, err := a.shareEntries(sp, a.knownCerts())
			if err != nil {
				return err
			}
			t.put(rot...)
			t.put(shares...)
		}
		prof, err := a.ensureProfile(sp)
		if err != nil {
			return err
		}
		t.put(prof...)
		// One segment per record (segments.go): each record's ops together.
		ops = groupOpsByRecord(ops)
		ch = &crdt.Change{Author: crdt.ReplicaID(a.dev), Seq: sp.heads[a.dev].Seq + 1, HLC: a.clock.Now(a.physMillis()), Ops: ops, Deps: deps}
		body, err := ch.MarshalBinary()
		if err != nil {
			return fmt.Errorf("%w: %v", ErrBadRequest, err)
		}
		if int64(len(body)) > a.cfg.MaxChangeBytes { // a few bytes over the check above
			return fmt.Errorf("%w: change of %d bytes exceeds the limit of %d", errTooLarge, len(body), a.cfg.MaxChangeBytes)
		}
		touched, err := crdt.ApplyChange(sp.ctx, load, ch)
		if err != nil {
			return fmt.Errorf("apply own change: %w", err)
		}
		headEntry, sign, err := a.prepareChange(sp, ch, sp.current)
		if err != nil {
			return err
		}
		t.sign = sign
		// A received change may wait for this very write (a hostile one
		// named it before it was made): judge it once this write is stored.
		drain = sp.resolvesWait(a.dev, ch.Seq)
		t.put(headEntry)
		a.noteApplied(1) // compact.go
		recEntries, err := a.recordEntries(sp, touched)
		if err != nil {
			return err
		}
		t.put(recEntries...)
		ctxBytes, err := sp.ctx.MarshalBinary()
		if err != nil {
			return err
		}
		t.put(a.db.entry(ctxKey(sp.id), ctxBytes), a.hlcEntry())
		// The cache keeps touched records and later writes mutate them in
		// place: the callers get copies made under the lock.
		for id, r := range touched {
			i, ok := owner[id]
			if !ok {
				continue
			}
			if outs[i] == nil {
				outs[i] = make(map[crdt.RecordID]*crdt.Record, 1)
			}
			outs[i][id] = r.Clone()
		}
		submitted = true
		return nil
	})
	if err != nil {
		if submitted {
			return nil, nil, nil, fmt.Errorf("write not stored: %w", err)
		}
		return nil, nil, nil, err
	}
	if ch == nil { // every request was refused on its own
		return nil, outs, errs, nil
	}
	if drain {
		if err := a.drainPending(sp.id); err != nil && !errors.Is(err, ErrClosed) {
			a.log.Warn("applying waiting envelopes", "err", err)
		}
	}
	a.notify()
	return ch, outs, errs, nil
}

// checkChangeSize refuses a change whose encoding exceeds MaxChangeBytes.
func (a *Agent) checkChangeSize(ch *crdt.Change) error {
	body, err := ch.MarshalBinary()
	if err != nil {
		return fmt.Errorf("%w: %v", ErrBadRequest, err)
	}
	if int64(len(body)) > a.cfg.MaxChangeBytes {
		return fmt.Errorf("%w: change of %d bytes exceeds the limit of %d", errTooLarge, len(body), a.cfg.MaxChangeBytes)
	}
	return nil
}

// recordEntries encodes and seals touched records, and caches them. stateMu held.
func (a *Agent) recordEntries(sp *spaceState, touched map[crdt.RecordID]*crdt.Record) ([]kvEntry, error) {
	ids := make([]crdt.RecordID, 0, len(touched))
	for id := range touched {
		ids = append(ids, id)
	}
	slices.Sort(ids)
	entries := make([]kvEntry, 0, len(ids))
	for _, id := range ids {
		b, err := touched[id].MarshalBinary()
		if err != nil {
			return nil, fmt.Errorf("encode record: %w", err)
		}
		key := recKey(sp.id, string(id))
		entries = append(entries, a.db.entry(key, b))
		a.cache.put(string(key), touched[id], a.writeID+1, a.com.Committed())
	}
	a.findTouched(sp, touched)
	return entries, nil
}

func (a *Agent) hlcEntry() kvEntry {
	return a.db.entry(metaKey("hlc"), be64(a.clock.Last.Pack()))
}

func be64(v uint64) []byte {
	b := make([]byte, 8)
	for i := 7; i >= 0; i-- {
		b[i] = byte(v)
		v >>= 8
	}
	return b
}
