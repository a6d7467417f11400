package agent

import (
	"bytes"
	"errors"
	"fmt"
	"time"

	"fieldsync/agent/api"
	"fieldsync/crdt"
	"fieldsync/crypto"
)

// Rejection reasons, counted in status (docs/design.md §3.5) and never stored as valid.
const (
	RejectMalformed = "malformed"
	RejectUnknown   = "unknown_device"
	RejectSignature = "signature"
	RejectExpired   = "expired"
	RejectNotYet    = "not_yet_valid"
	RejectRevoked   = "revoked"
	// RejectUnopenableShare counts key shares addressed to this device
	// that do not open: kept (their author's log goes on), but unused.
	RejectUnopenableShare = "unopenable_share"
	RejectUntrusted       = "untrusted"
	RejectRole            = "role"
	RejectGap             = "gap"
	RejectChain           = "chain"
	RejectFork            = "fork"
	RejectFrozen          = "frozen"
	RejectMismatch        = "mismatch"
	RejectUndecoded       = "undecodable"
	RejectNotEntitle      = "not_entitled"
	// RejectErasureCap counts erase markers refused because their author's
	// markers reached the cap (recerase.go, erase.go).
	RejectErasureCap = "erasure_cap"
)

// RejectError is an envelope refused by Ingest; Reason is one of the Reject
// constants.
type RejectError struct {
	Reason string
	Err    error
}

func (e *RejectError) Error() string {
	return fmt.Sprintf("envelope rejected (%s): %v", e.Reason, e.Err)
}
func (e *RejectError) Unwrap() error { return e.Err }

func (a *Agent) reject(reason string, err error) error {
	a.countReject(reason)
	return &RejectError{Reason: reason, Err: err}
}

func rejectReason(err error) string {
	switch {
	case errors.Is(err, crypto.ErrExpired):
		return RejectExpired
	case errors.Is(err, crypto.ErrNotYetValid):
		return RejectNotYet
	case errors.Is(err, crypto.ErrRevoked):
		return RejectRevoked
	case errors.Is(err, crypto.ErrUntrusted):
		return RejectUntrusted
	case errors.Is(err, crypto.ErrRole):
		return RejectRole
	case errors.Is(err, crypto.ErrSignature):
		return RejectSignature
	case errors.Is(err, errErasureCap):
		return RejectErasureCap
	}
	return RejectMalformed
}

// Ingest verifies one envelope received from a peer or a bundle and, if it
// is the next of its author's log, stores it and (when this device holds the
// key) applies it, in one fsynced batch. Storing is idempotent: an envelope
// already held returns added=false. A refused envelope returns a
// *RejectError and is counted by reason; nothing of it is stored (but the
// second envelope of a fork is kept as evidence).
func (a *Agent) Ingest(env []byte) (added bool, err error) {
	return a.ingest(env, true)
}

// ingestWindow bounds how many received envelopes may wait for their fsync
// while sync goes on ingesting (ingest with durable=false).
const ingestWindow = 256

// ingest is Ingest; with durable false it returns once the envelope is
// handed to the group committer rather than on disk, waiting only when more
// than ingestWindow are in flight. A sync stream ingests one envelope after
// another: waiting for each fsync would cost one fsync per envelope, while
// this lets the committer write hundreds with one. A crash loses at most the
// window, which peers send again (our heads on disk never claim it).
func (a *Agent) ingest(env []byte, durable bool) (added bool, err error) {
	h, cert, err := a.verifyEnvelope(env)
	if err != nil {
		return false, err
	}
	added, err = a.ingestVerified(env, h, cert, durable)
	if errors.Is(err, errOrphanHeld) {
		return false, nil // not stored (yet): held until its space's routing record comes
	}
	return added, err
}

// verifyEnvelope is the part of ingest that needs no lock and dominates its
// cost (an Ed25519 verification): decode, find the author's certificate,
// check the signature and the author's standing at the envelope's time.
func (a *Agent) verifyEnvelope(env []byte) (crypto.Header, *crypto.Certificate, error) {
	if len(env) > crypto.MaxEnvelopeSize {
		return crypto.Header{}, nil, a.reject(RejectMalformed, fmt.Errorf("envelope of %d bytes", len(env)))
	}
	h, err := crypto.ParseHeader(env)
	if err != nil {
		return h, nil, a.reject(RejectMalformed, err)
	}
	if e := a.erasedSpace(h.Space); e != nil {
		return h, nil, a.rejectErased(h.Space, e)
	}
	cert, rev := a.trustNow().certs[h.Author], a.trustNow().revs[h.Author]
	if cert == nil {
		return h, nil, a.reject(RejectUnknown, fmt.Errorf("no certificate for device %s", h.Author))
	}
	if _, _, err := crypto.Verify(env, cert.Device); err != nil {
		return h, nil, a.reject(RejectSignature, err)
	}
	// The change is judged against the certificate at the change's own
	// time (docs/design.md §5) — but an HLC before the certificate's start only
	// says the author's clock runs behind (field laptops can be hours or
	// years off, §3.4): a device controls its HLC anyway, so refusing those
	// would only silence honest devices. Expiry still applies at the HLC,
	// and revocation by seq.
	at := time.UnixMilli(crdt.UnpackTimestamp(h.HLC).Wall)
	if at.Before(cert.NotBefore) {
		at = cert.NotBefore
	}
	if err := crypto.CheckAuthor(h, cert, rev, a.trustFor(h.Space, cert), at); err != nil {
		return h, nil, a.reject(rejectReason(err), err)
	}
	return h, cert, nil
}

// ingestVerified stores and applies an envelope that verifyEnvelope passed.
func (a *Agent) ingestVerified(env []byte, h crypto.Header, cert *crypto.Certificate, durable bool) (added bool, err error) {
	// Segments of erased records never reach the store (recerase.go).
	env = a.eraseOnIngest(h, env)
	if f := a.frozenAt(h.Space, h.Author); f != 0 && h.Seq >= f {
		return false, a.reject(RejectFrozen, fmt.Errorf("device %s is frozen in space %s from seq %d (forked)", h.Author, h.Space, f))
	}
	var created, unlocked, restore bool
	err = a.withWrite(func(t *tx) error {
		if e := a.erasedSpace(h.Space); e != nil {
			return a.rejectErased(h.Space, e) // erased since it was verified
		}
		sp := a.spaces[h.Space]
		if h.Kind != crypto.KindRouting {
			// Only a space's routing record may open it here; the rest
			// waits for it, bounded and in memory (orphans.go). And only
			// officer devices of bureaus the space was released to may
			// write in it (issue 12, item 2): judged against every routing
			// record held, so every replica decides alike once it holds
			// them.
			if sp == nil || len(sp.meta.Routings) == 0 {
				return a.holdOrphan(h, env, cert)
			}
		} else if sp == nil && h.Seq != 1 {
			// A space opens with its creator's first envelope; another
			// device's routing record follows envelopes of its own log
			// that wait for the space to open.
			return a.holdOrphan(h, env, cert)
		}
		if h.Kind != crypto.KindRouting && !everReleased(sp, cert) {
			return a.reject(RejectNotEntitle, fmt.Errorf("device %s of bureau %s writes in space %s, which was never released to its bureau", h.Author, cert.Bureau.Name, h.Space))
		}
		created = sp == nil
		if sp == nil {
			sp = &spaceState{id: h.Space, meta: spaceMeta{ID: h.Space.String()}, ctx: crdt.NewContext(), heads: map[crypto.DeviceID]head{}, keys: map[crypto.KeyID]*crypto.SpaceKey{}}
		}
		next, again, err := a.chainNext(sp, h, env)
		if !next {
			restore = again
			if err == nil && !again && !created {
				// Held already: a whole copy may heal a stub (heal.go).
				_, err = a.healHeld(t, sp, h, env)
			}
			return err
		}
		t.changed()
		entries, _, err := a.applyEnvelope(sp, h, env, cert)
		if err != nil {
			var re *RejectError
			if errors.As(err, &re) {
				a.countReject(re.Reason)
			}
			return err
		}
		a.spaces[h.Space] = sp
		nh := head{Seq: h.Seq, Hash: crypto.Hash(env)}
		a.advanceHead(sp, h.Author, nh)
		if sp.resolvesWait(h.Author, h.Seq) {
			sp.unlocked = true
		}
		ctxBytes, _ := sp.ctx.MarshalBinary()
		t.put(entries...)
		t.put(
			a.db.entry(envKey(h.Space, h.Author, h.Seq), env),
			a.db.entry(headKey(h.Space, h.Author), nh.marshal()),
			a.db.entry(ctxKey(h.Space), ctxBytes),
			a.db.entry(spaceKey(h.Space), sp.meta.marshal()),
			a.hlcEntry())
		unlocked = sp.unlocked
		sp.unlocked = false
		// A received envelope is handed to the committer without waiting
		// for its fsync (ingestWindow), unless it unlocks waiting ones,
		// which are applied on top of it.
		t.window = !durable && !unlocked
		added = true
		return nil
	})
	if restore {
		return a.restoreEnvelope(h, env)
	}
	if err != nil || !added {
		return false, err
	}
	a.clearGap(h.Space, h.Author, h.Seq)
	if unlocked {
		if err := a.drainPending(h.Space); err != nil {
			return true, err
		}
		a.wrapDue.Store(true) // wrapped on at the end of the batch (wrapIfDue)
	}
	if created {
		// The routing record that opens the space: what waited for it
		// comes in now.
		if err := a.replayOrphans(h.Space); err != nil {
			return true, err
		}
	}
	return true, nil
}

// chainNext places a verified envelope in its author's log in the space:
// next is true when it is the next one (seq = head + 1, chained to the
// head). Otherwise it is held already (nothing to do), a copy we lost
// (again: put it back, restoreEnvelope), a gap, a broken chain, or a fork
// (frozen with the two as evidence): each a rejection. stateMu held.
func (a *Agent) chainNext(sp *spaceState, h crypto.Header, env []byte) (next, again bool, err error) {
	hd := sp.heads[h.Author]
	switch {
	case h.Seq <= hd.Seq:
		stored, err := a.db.get(envKey(h.Space, h.Author, h.Seq))
		if err == nil && crypto.Hash(stored) == crypto.Hash(env) {
			return false, false, nil // held already
		}
		if err != nil && !errors.Is(err, errKVNotFound) && !errors.Is(err, errCorrupt) {
			return false, false, err
		}
		if err != nil { // our copy is gone or corrupt: put it back
			return false, true, nil
		}
		if _, err := a.freeze(stored, env); err != nil {
			return false, false, err
		}
		return false, false, a.reject(RejectFork, fmt.Errorf("device %s signed two envelopes for seq %d in space %s", h.Author, h.Seq, h.Space))
	case h.Seq > hd.Seq+1:
		a.noteGap(h.Space, h.Author, hd.Seq+1, h.Seq-1)
		return false, false, a.reject(RejectGap, fmt.Errorf("device %s seq %d arrived before seqs %d..%d", h.Author, h.Seq, hd.Seq+1, h.Seq-1))
	case h.Prev != hd.Hash:
		// Signed by the author yet not chained to the envelope it signed
		// before: a fork, provable with the two.
		if stored, err := a.db.get(envKey(h.Space, h.Author, hd.Seq)); err == nil && hd.Seq > 0 {
			if _, err := a.freeze(stored, env); err != nil {
				return false, false, err
			}
			return false, false, a.reject(RejectFork, fmt.Errorf("device %s seq %d does not chain to its seq %d", h.Author, h.Seq, hd.Seq))
		}
		return false, false, a.reject(RejectChain, fmt.Errorf("device %s seq %d does not chain to seq %d", h.Author, h.Seq, hd.Seq))
	}
	return true, false, nil
}

// restoreEnvelope puts back an envelope that the store acknowledged but lost
// (found missing or corrupt); it was verified by the caller.
func (a *Agent) restoreEnvelope(h crypto.Header, env []byte) (bool, error) {
	err := a.withWrite(func(t *tx) error {
		// It must be the envelope we acknowledged: the next one we hold
		// chains to it.
		if next, err := a.db.get(envKey(h.Space, h.Author, h.Seq+1)); err == nil {
			if nh, err := crypto.ParseHeader(next); err == nil && nh.Prev != crypto.Hash(env) {
				if _, err := a.freeze(env, next); err != nil {
					return err
				}
				return a.reject(RejectFork, fmt.Errorf("device %s: seq %d does not chain to the seq %d we hold", h.Author, h.Seq+1, h.Seq))
			}
		}
		t.put(a.db.entry(envKey(h.Space, h.Author, h.Seq), env))
		return nil
	})
	if err != nil {
		return false, err
	}
	a.restored(h.Space, h.Author, h.Seq)
	return true, nil
}

// restored moves a missing range on once its first seq is back.
func (a *Agent) restored(space crypto.SpaceID, author crypto.DeviceID, seq uint64) {
	a.statMu.Lock()
	defer a.statMu.Unlock()
	for i := 0; i < len(a.missing); i++ {
		g := &a.missing[i]
		if g.Space != space.String() || g.Author != author.String() || seq < g.From || seq > g.To {
			continue
		}
		switch {
		case g.From == g.To:
			a.missing = append(a.missing[:i], a.missing[i+1:]...)
		case seq == g.From:
			g.From++
		case seq == g.To:
			g.To--
		default: // a hole in the middle: split
			rest := api.Gap{Space: g.Space, Author: g.Author, From: seq + 1, To: g.To}
			g.To = seq - 1
			a.missing = append(a.missing, rest)
		}
		return
	}
}

// missingFrom is the first seq of an author's log in a space that the store
// acknowledged and lost (0: none). Heads report the log as held only below
// it, so peers send the lost envelopes again.
func (a *Agent) missingFrom(space crypto.SpaceID, author crypto.DeviceID) uint64 {
	a.statMu.Lock()
	defer a.statMu.Unlock()
	first := uint64(0)
	for _, g := range a.missing {
		if g.Space == space.String() && g.Author == author.String() && (first == 0 || g.From < first) {
			first = g.From
		}
	}
	return first
}

// openOrWait decrypts a sealed envelope (verified when it was received). If
// this device holds no key for its epoch, body is nil: an officer keeps a
// pending marker (returned in wait) and applies it when the key arrives; a
// relay never will, and keeps nothing more. stateMu held.
func (a *Agent) openOrWait(sp *spaceState, h crypto.Header, env []byte) (body []byte, wait []kvEntry, err error) {
	if _, ok := sp.keys[h.Epoch]; !ok {
		if a.cfg.Relay {
			return nil, nil, nil
		}
		return nil, []kvEntry{a.db.entry(pendingKey(sp.id, h.Author, h.Seq), keyWaitMarker(h.Epoch))}, nil
	}
	_, body, err = crypto.OpenVerified(env, sp)
	if err != nil {
		return nil, nil, &RejectError{Reason: RejectUndecoded, Err: err}
	}
	return body, nil, nil
}

// applyEnvelope applies a verified envelope that is next in its author's log
// to the in-memory state of sp and returns the store entries of its effects
// (not the envelope and head themselves). stateMu held.
//
// It reports waiting=true when the envelope is kept but cannot be applied
// yet (a pending marker among the entries says why). An error is a
// refusal every replica makes alike (it depends on the envelope and the
// author's certificate only); an envelope whose effect only replicas that
// can open it could judge is applied as a no-op instead (causal.go).
func (a *Agent) applyEnvelope(sp *spaceState, h crypto.Header, env []byte, cert *crypto.Certificate) (entries []kvEntry, waiting bool, err error) {
	entries, waiting, err = a.applyEnvelopeKind(sp, h, env, cert)
	if err == nil && !waiting && h.Kind == crypto.KindChange && len(sp.waits) > 0 {
		if sp.resolvesWait(h.Author, h.Seq) {
			sp.unlocked = true
		}
	}
	return entries, waiting, err
}

func (a *Agent) applyEnvelopeKind(sp *spaceState, h crypto.Header, env []byte, cert *crypto.Certificate) ([]kvEntry, bool, error) {
	var entries []kvEntry
	dot := crdt.Dot{Replica: crdt.ReplicaID(h.Author), Seq: h.Seq}
	switch h.Kind {
	case crypto.KindChange:
		return a.applyChange(sp, h, env)
	case crypto.KindProfile:
		sp.ctx.Add(dot)
		body, wait, err := a.openOrWait(sp, h, env)
		if err != nil {
			// Only replicas with the key can tell: a no-op everywhere.
			a.noopEnvelope(sp, h, RejectUndecoded, err)
			return nil, false, nil
		}
		if body == nil {
			return wait, wait != nil, nil
		}
		p, err := crypto.ParseProfile(body)
		if errors.Is(err, crypto.ErrUnknownVersion) {
			return []kvEntry{a.db.entry(pendingKey(sp.id, h.Author, h.Seq), []byte{waitUpgrade})}, true, nil
		}
		if err != nil || !p.Matches(cert) {
			a.noopEnvelope(sp, h, RejectMismatch, errors.New("profile does not match the certificate's name commitment"))
			return nil, false, nil
		}
		a.setOfficer(sp.id, h.Author, p.Officer)
		return append(entries, a.db.entry(profileKey(sp.id, h.Author), []byte(p.Officer))), false, nil
	case crypto.KindRouting:
		sp.ctx.Add(dot)
		_, body, _ := crypto.Verify(env, cert.Device)
		r, err := crypto.ParseRouting(body)
		if errors.Is(err, crypto.ErrUnknownVersion) && len(sp.meta.Routings) > 0 {
			// A newer format (Verify let it through): kept, its author's
			// log goes on, applied after an upgrade.
			return []kvEntry{a.db.entry(pendingKey(sp.id, h.Author, h.Seq), []byte{waitUpgrade})}, true, nil
		}
		if err != nil {
			return nil, false, &RejectError{Reason: RejectUndecoded, Err: err}
		}
		// Only a device of the bureau the space ID was made for may write
		// its routing records (crypto.SpaceIDFor): no other bureau can
		// claim the space, whichever record a replica sees first.
		if err := crypto.CheckRouting(h, r, cert); err != nil {
			return nil, false, &RejectError{Reason: RejectMismatch, Err: err}
		}
		if a.applyRouting(sp, h, r, cert.Bureau.Name) && !a.cfg.Relay && sp.current != nil {
			// A bureau may have been released: wrap our keys to its known
			// officers once this write is through (ShareKeys takes stateMu).
			a.queueShareKeys()
		}
		for _, k := range sp.keys {
			if name, err := crypto.OpenName(k, sp.id, r.SealedName); err == nil {
				sp.meta.Name = name
			}
		}
		if sp.meta.Name == "" && !a.cfg.Relay {
			entries = append(entries, a.db.entry(pendingKey(sp.id, h.Author, h.Seq), nil))
		}
		return entries, false, nil
	case crypto.KindKeyShare:
		sp.ctx.Add(dot)
		_, body, _ := crypto.Verify(env, cert.Device)
		share, err := crypto.ParseKeyShare(body)
		if errors.Is(err, crypto.ErrUnknownVersion) {
			return []kvEntry{a.db.entry(pendingKey(sp.id, h.Author, h.Seq), []byte{waitUpgrade})}, true, nil
		}
		if err != nil {
			return nil, false, &RejectError{Reason: RejectUndecoded, Err: err}
		}
		sk := shareKey{recipient: share.Recipient, epoch: share.Epoch}
		sp.markShared(sk)
		entries = append(entries, a.db.entry(sharedKey(sp.id, sk), nil))
		entries = append(entries, a.noteHolder(sp, h.Author, share.Epoch)...)
		sp.noteShare(share, cert.Bureau.Fingerprint()) // what the epoch replaces, whoever it is for
		if share.Recipient != a.dev || a.cfg.Relay {
			return entries, false, nil // stored and forwarded, not ours to open
		}
		if !entitled(sp, cert) {
			// Kept (its author's log goes on), but a key is taken only
			// from an officer of a bureau the space is released to now.
			a.countReject(RejectUnentitledShare)
			a.log.Warn("a key share from a device not entitled to the space; kept, key not adopted",
				"space", sp.id.String(), "author", h.Author.String(), "seq", h.Seq)
			return entries, false, nil
		}
		key, err := crypto.UnwrapKey(body, sp.id, a.id)
		if err != nil {
			// Validly signed by its author, so every other replica keeps
			// it: keep it too (refusing it would stop its author's log
			// here for good), but it brings us no key.
			a.countReject(RejectUnopenableShare) // counted, though kept
			a.log.Warn("a key share addressed to this device does not open; kept, unused (ask its author to wrap the key again)",
				"space", sp.id.String(), "author", h.Author.String(), "seq", h.Seq)
			return entries, false, nil
		}
		if _, ok := sp.keys[key.ID()]; ok {
			return entries, false, nil
		}
		sp.adoptEpoch(key, 0) // ordered by the shares' lists (noteShare above)
		entries = append(entries, a.db.entry(epochKey(sp.id, key.ID()), epochValue(key, 0)))
		sp.unlocked = true // Ingest drains what waited for this key, after this commit
		return entries, false, nil
	}
	// No other kind reaches here: crypto.ParseHeader refuses a kind this
	// version does not know (a new kind is a wire change, docs/design.md §5).
	sp.ctx.Add(dot)
	return nil, false, nil
}

// pendingBatch bounds how many waiting envelopes one commit applies, so a
// key share that unlocks thousands of changes never makes one write larger
// than a store transaction.
const pendingBatch = 256

// drainPending applies the envelopes of a space kept for want of a key or
// of a dependency, now that something they waited for has arrived, in
// bounded batches, each one durable commit. It stops when none it can
// apply are left.
func (a *Agent) drainPending(space crypto.SpaceID) error {
	return a.drain(space, false)
}

// drain is drainPending; with upgrade set it also tries envelopes of a
// body version an earlier build did not know (at start).
func (a *Agent) drain(space crypto.SpaceID, upgrade bool) error {
	for {
		n, err := a.applyPendingBatch(space, upgrade)
		if err != nil || n == 0 {
			return err
		}
	}
}

// applyPendingBatch applies up to pendingBatch waiting envelopes whose
// marker says they may go on, and returns how many it applied. An envelope
// that still waits (for something else now) gets its marker rewritten.
func (a *Agent) applyPendingBatch(space crypto.SpaceID, upgrade bool) (int, error) {
	applied := 0
	err := a.withWrite(func(t *tx) error {
		sp := a.spaces[space]
		if sp == nil {
			return nil
		}
		keys, err := a.readyMarkers(sp, upgrade)
		if err != nil {
			return err
		}
		t.changed()
		size := 0
		for _, k := range keys {
			if applied >= pendingBatch || size > maxGroupBytes {
				break
			}
			more, done := a.applyWaiting(sp, k)
			t.put(more...)
			size += entriesSize(more)
			if done {
				applied++
			}
		}
		sp.unlocked = false // what it unlocked is in this batch or the next
		if len(t.entries) == 0 {
			applied = 0
			return nil
		}
		ctxBytes, _ := sp.ctx.MarshalBinary()
		t.put(a.db.entry(ctxKey(space), ctxBytes), a.db.entry(spaceKey(space), sp.meta.marshal()), a.hlcEntry())
		return nil
	})
	if err != nil {
		return 0, err
	}
	return applied, nil
}

// readyMarkers lists the keys of the space's waiting markers that say their
// envelope may go on now, up to four batches' worth. stateMu held.
func (a *Agent) readyMarkers(sp *spaceState, upgrade bool) ([][]byte, error) {
	prefix := append([]byte{pfxPending}, sp.id[:]...)
	var keys [][]byte
	err := a.db.scan(prefix, func(k, v []byte) error {
		if a.markerReady(sp, v, upgrade) {
			keys = append(keys, bytes.Clone(k))
			if len(keys) >= 4*pendingBatch {
				// Enough for this batch (a key share that unlocks
				// thousands would otherwise make each batch scan them
				// all). The batch that finds fewer scanned every marker,
				// so every wait is noted by the last one.
				return errStopScan
			}
		}
		return nil
	}, a.countCorrupt)
	return keys, err
}

// applyWaiting applies the envelope a waiting marker names, and returns the
// store entries (the marker's deletion among them, or its rewrite if the
// envelope waits on for something else) and whether the marker is settled.
// An envelope not held now, or of an author whose certificate is unknown,
// is left waiting. stateMu held.
func (a *Agent) applyWaiting(sp *spaceState, k []byte) ([]kvEntry, bool) {
	del := []kvEntry{{Key: k, Del: true}}
	if len(k) != 1+16+16+8 {
		return del, false
	}
	var author crypto.DeviceID
	copy(author[:], k[17:33])
	env, err := a.db.get(envKey(sp.id, author, beUint64(k[33:])))
	if err != nil {
		return nil, false // reported by the open-time check; fetched again by sync
	}
	h, err := crypto.ParseHeader(env)
	if err != nil {
		return del, false
	}
	if h.Kind == crypto.KindRouting && sp.meta.Name != "" {
		return del, false
	}
	cert := a.trustNow().certs[author]
	if cert == nil {
		return nil, false
	}
	more, waiting, err := a.applyEnvelope(sp, h, env, cert)
	if err != nil {
		a.log.Warn("a stored envelope could not be applied", "err", err)
		return del, true
	}
	if waiting {
		return more, false // its marker is rewritten among more
	}
	return append(more, del...), true
}

func (a *Agent) noteGap(space crypto.SpaceID, author crypto.DeviceID, from, to uint64) {
	a.statMu.Lock()
	defer a.statMu.Unlock()
	k := gapKey{space, author}
	g, ok := a.gaps[k]
	if !ok || to > g.To {
		a.gaps[k] = api.Gap{Space: space.String(), Author: author.String(), From: from, To: max(to, g.To)}
	}
}

func (a *Agent) clearGap(space crypto.SpaceID, author crypto.DeviceID, seq uint64) {
	a.statMu.Lock()
	defer a.statMu.Unlock()
	k := gapKey{space, author}
	if g, ok := a.gaps[k]; ok {
		if seq >= g.To {
			delete(a.gaps, k)
		} else if seq >= g.From {
			g.From = seq + 1
			a.gaps[k] = g
		}
	}
}

// Envelopes calls fn with every envelope held in the space, in (author,
// seq) order (bundles, tests, sync).
func (a *Agent) Envelopes(space crypto.SpaceID, fn func(env []byte) error) error {
	return a.db.scan(envSpacePrefix(space), func(k, v []byte) error { return fn(v) }, a.countCorrupt)
}

// SpaceIDs lists the spaces this agent holds.
func (a *Agent) SpaceIDs() []crypto.SpaceID {
	a.stateMu.Lock()
	defer a.stateMu.Unlock()
	var out []crypto.SpaceID
	for _, s := range a.sortedSpaces() {
		out = append(out, s.id)
	}
	return out
}
