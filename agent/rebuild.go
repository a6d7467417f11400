package agent

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"

	"fieldsync/crdt"
	"fieldsync/crypto"
)

// rebuildRecord recomputes one record from the space's change envelopes
// (docs/design.md §7: a corrupt record is rebuilt, never returned as data), stores
// it again, and returns it (nil if no change names it). Envelopes that are
// themselves corrupt are reported; the record may then lack their ops until
// peers send them again. stateMu held.
func (a *Agent) rebuildRecord(sp *spaceState, id crdt.RecordID) (*crdt.Record, error) {
	ctx := crdt.NewContext()
	var rec *crdt.Record
	err := a.replayChanges(sp, func(ch *crdt.Change) error {
		// Exactly the changes the live state applied: those in the
		// space's context that are not no-ops (a change that waits is
		// not in it yet). Their order does not matter (a join).
		if !sp.ctx.Contains(ch.Dot()) || !a.staticReady(sp, ch, a.heldEnvelope(sp, nil)) {
			return nil
		}
		touches := false
		for _, r := range ch.Records() {
			if r == id {
				touches = true
				break
			}
		}
		if !touches {
			return nil
		}
		touched, err := crdt.ApplyChange(ctx, func(r crdt.RecordID) (*crdt.Record, error) {
			if r == id {
				return rec, nil
			}
			return nil, nil
		}, a.withoutVoidDots(sp, ch))
		if err != nil {
			return err
		}
		if r := touched[id]; r != nil {
			rec = r
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	a.log.Warn("rebuilt a corrupt record from its envelopes", "space", sp.id.String())
	if rec != nil && !a.closed {
		b, err := rec.MarshalBinary()
		if err == nil {
			// Store it again without waiting: a later write of the same
			// record would go through the cache, which now holds it.
			key := recKey(sp.id, string(id))
			a.writeID++
			a.cache.put(string(key), rec, a.writeID, a.com.Committed())
			a.com.Submit([]kvEntry{a.db.entry(key, b)}, a.gen, a.writeID) // its result is not waited for
		}
	}
	return rec, nil
}

// replayChanges calls fn with every change of the space this device can
// open and decode, in (author, seq) order.
func (a *Agent) replayChanges(sp *spaceState, fn func(*crdt.Change) error) error {
	return a.replayChangesSkipping(sp, func(crypto.Header) bool { return false }, fn, nil)
}

// replayChangesSkipping is replayChanges without the envelopes skip names;
// noop, if set, is called with the header of each change that opens to
// something the apply path keeps as a no-op (does not open under its key,
// does not decode, does not match its header).
func (a *Agent) replayChangesSkipping(sp *spaceState, skip func(crypto.Header) bool, fn func(*crdt.Change) error, noop func(crypto.Header)) error {
	if noop == nil {
		noop = func(crypto.Header) {}
	}
	return a.db.scan(envSpacePrefix(sp.id), func(k, env []byte) error {
		h, err := crypto.ParseHeader(env)
		if err != nil || h.Kind != crypto.KindChange || skip(h) {
			return nil
		}
		if _, ok := sp.keys[h.Epoch]; !ok {
			return nil
		}
		cert := a.trustNow().certs[h.Author]
		if cert == nil {
			return nil
		}
		if _, _, err := crypto.Verify(env, cert.Device); err != nil {
			a.countCorrupt(k)
			return nil
		}
		oc, err := openChange(env, sp) // either envelope version (segments.go)
		var ch *crdt.Change
		var eo errOpen
		switch {
		case err == nil && oc.agent != nil:
			if knownAgentBody(oc.agent) { // a receipt or policy: seen, no ops (receipts.go)
				noop(h)
			}
			return nil // waits for an upgrade
		case err == nil:
			ch = oc.ch
		}
		switch {
		case errors.As(err, &eo):
			noop(h)
			return nil
		case errors.Is(err, crdt.ErrUnknownVersion):
			return nil // waits for an upgrade
		case err != nil || ch.Author != crdt.ReplicaID(h.Author) || ch.Seq != h.Seq || ch.HLC.Pack() != h.HLC:
			noop(h)
			return nil
		}
		return fn(ch)
	}, a.countCorrupt)
}

// heldEnvelope looks up the ID of an envelope held in the space, without
// those skip names (being cut).
func (a *Agent) heldEnvelope(sp *spaceState, skip func(crypto.Header) bool) func(crypto.DeviceID, uint64) ([32]byte, bool) {
	return func(dev crypto.DeviceID, seq uint64) ([32]byte, bool) {
		if skip != nil && skip(crypto.Header{Space: sp.id, Author: dev, Seq: seq}) {
			return [32]byte{}, false
		}
		env, err := a.db.get(envKey(sp.id, dev, seq))
		if err != nil {
			return [32]byte{}, false
		}
		return crypto.Hash(env), true
	}
}

// Repair rebuilds every space's materialized state (records and causal
// context) from the envelopes, with the agent stopped (docs/design.md §7). The result
// is byte-identical to the state the write and apply paths produced, since
// the merge is deterministic.
func Repair(ctx context.Context, cfg Config, out io.Writer) error {
	a, err := newAgent(cfg) // repair may open a quarantined store
	if err != nil {
		return err
	}
	defer a.Close()
	if err := a.repair(ctx, out); err != nil {
		return err
	}
	if err := os.Remove(cfg.Layout.QuarantineMarker()); err == nil {
		fmt.Fprintln(out, "quarantine cleared: the agent may start again")
	}
	return nil
}

func (a *Agent) repair(ctx context.Context, out io.Writer) error {
	return a.withWrite(func(*tx) error { return a.repairLocked(ctx, out) })
}

// repairLocked is repair inside its write transaction: it rebuilds and
// writes the store directly. stateMu held.
func (a *Agent) repairLocked(ctx context.Context, out io.Writer) error {
	for _, sp := range a.sortedSpaces() {
		if err := ctx.Err(); err != nil {
			return err
		}
		records, changes, err := a.rebuildSpace(sp, nil)
		if err != nil {
			return fmt.Errorf("repair space %s: %w", sp.id, err)
		}
		fmt.Fprintf(out, "space %s: rebuilt %d records from %d changes\n", sp.id, records, changes)
	}
	a.cache.clear()
	// The full check of every acknowledged envelope, which opening skips.
	if err := a.checkAcknowledged(true); err != nil {
		return err
	}
	a.statMu.Lock()
	corrupt, missing := a.corrupt, a.missing
	a.statMu.Unlock()
	for _, g := range missing {
		fmt.Fprintf(out, "space %s: device %s seqs %d..%d acknowledged but missing; start the agent to fetch them again from peers\n", g.Space, g.Author, g.From, g.To)
	}
	if corrupt > 0 {
		fmt.Fprintf(out, "%d corrupt values were skipped; start the agent to fetch them again from peers\n", corrupt)
	}
	return a.load()
}

// rebuildSpace recomputes a space's records and context from its envelopes
// and writes them, with extra entries (deletes of envelopes, say) first. It
// writes directly in several transactions — rebuilding is idempotent — so
// the caller holds stateMu with nothing in flight (beginWrite, or a barrier),
// and reloads afterwards.
func (a *Agent) rebuildSpace(sp *spaceState, extra []kvEntry) (records, changes int, err error) {
	skip := func(h crypto.Header) bool { return false }
	if len(extra) > 0 {
		// Envelopes being deleted by extra are not replayed.
		gone := map[string]bool{}
		for _, e := range extra {
			if e.Del {
				gone[string(e.Key)] = true
			}
		}
		skip = func(h crypto.Header) bool { return gone[string(envKey(h.Space, h.Author, h.Seq))] }
	}
	state := crdt.NewSpace()
	// Seqs of envelopes without ops count as seen, as on the write path.
	err = a.db.scan(envSpacePrefix(sp.id), func(k, env []byte) error {
		h, err := crypto.ParseHeader(env)
		if err != nil || skip(h) {
			return nil
		}
		if h.Kind != crypto.KindChange {
			state.MarkSeen(crdt.Dot{Replica: crdt.ReplicaID(h.Author), Seq: h.Seq})
		}
		return nil
	}, a.countCorrupt)
	if err != nil {
		return 0, 0, err
	}
	// The changes the apply path would apply, in an order it could have
	// (causal.go): each once every seen change is applied. No-ops count
	// as seen; changes that wait (a dependency not held, an upgrade) do
	// not.
	held := a.heldEnvelope(sp, skip)
	var ready []*crdt.Change
	if err := a.replayChangesSkipping(sp, skip, func(ch *crdt.Change) error {
		switch v, _, _ := a.staticVerdict(sp, ch, held); v {
		case causalBad:
			state.MarkSeen(ch.Dot())
		case causalReady:
			ready = append(ready, ch)
		}
		return nil
	}, func(h crypto.Header) {
		state.MarkSeen(crdt.Dot{Replica: crdt.ReplicaID(h.Author), Seq: h.Seq})
	}); err != nil {
		return 0, 0, err
	}
	for len(ready) > 0 {
		var later []*crdt.Change
		for _, ch := range ready {
			if !a.seenApplied(sp, state.Context, ch) {
				later = append(later, ch)
				continue
			}
			changes++
			if err := state.Apply(a.withoutVoidDots(sp, ch)); err != nil {
				state.MarkSeen(ch.Dot()) // as the apply path: a no-op
			}
		}
		if len(later) == len(ready) {
			break // the rest waits for changes not held or not openable
		}
		ready = later
	}
	entries := append([]kvEntry(nil), extra...)
	// Drop every stored record, then write the rebuilt ones.
	err = a.db.kv.ScanKeys(recSpacePrefix(sp.id), func(k []byte) error {
		entries = append(entries, kvEntry{Key: k, Del: true})
		return nil
	})
	if err != nil {
		return 0, 0, err
	}
	for _, id := range state.IDs() {
		b, err := state.Records[id].MarshalBinary()
		if err != nil {
			return 0, 0, err
		}
		entries = append(entries, a.db.entry(recKey(sp.id, string(id)), b))
	}
	cb, _ := state.Context.MarshalBinary()
	entries = append(entries, a.db.entry(ctxKey(sp.id), cb))
	var groups [][]kvEntry
	for len(entries) > 0 {
		n, size := 0, 0
		for n < len(entries) && n < 512 && (n == 0 || size+len(entries[n].Key)+len(entries[n].Val) <= maxGroupBytes) {
			size += len(entries[n].Key) + len(entries[n].Val)
			n++
		}
		groups, entries = append(groups, entries[:n]), entries[n:]
	}
	for _, e := range a.db.kv.CommitGroups(groups) {
		if e != nil {
			return 0, 0, e
		}
	}
	return len(state.IDs()), changes, nil
}

func (a *Agent) staticReady(sp *spaceState, ch *crdt.Change, held func(crypto.DeviceID, uint64) ([32]byte, bool)) bool {
	v, _, _ := a.staticVerdict(sp, ch, held)
	return v == causalReady
}
