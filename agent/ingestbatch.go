package agent

import (
	"errors"

	"fieldsync/crypto"
)

// verified is an envelope that verifyEnvelope passed (err nil) or refused.
type verified struct {
	env  []byte
	h    crypto.Header
	cert *crypto.Certificate
	err  error
}

// ingestRun stores and applies, in ONE write transaction, the longest
// prefix of items that are the plain case of ingestVerified: verified
// changes, in a space that is open here and released to their author's
// bureau, each the next of its author's log (chained to the head, or to
// the item before it). What a transaction costs once — stateMu, a commit
// group, the space's context, metadata, heads and clock — is then paid
// once per sync batch instead of once per envelope, and a record touched
// by several changes of the run is stored once.
//
// It returns how many items it stored (all added) and whether the caller
// must fall back to ingestVerified for the rest: n == 0 means the first
// item is not the plain case (or applying one of the run failed, in which
// case nothing of the run was kept: the state is reloaded, and
// ingestVerified then judges each envelope alone, as before). The run
// ends after an envelope that unlocks waiting ones; that commit is
// durable and what waited is applied on top of it, as ingestVerified does.
func (a *Agent) ingestRun(items []verified) (n int, err error) {
	var (
		unlocked bool
		space    crypto.SpaceID
	)
	err = a.withWrite(func(t *tx) error {
		var sp *spaceState
		heads := map[crypto.DeviceID]head{}
		var order []crypto.DeviceID
		size := 0
		for n < len(items) {
			it := items[n]
			h := it.h
			if it.err != nil || h.Kind != crypto.KindChange {
				break
			}
			if f := a.frozenAt(h.Space, h.Author); f != 0 && h.Seq >= f {
				break
			}
			s := a.spaces[h.Space]
			if s == nil || len(s.meta.Routings) == 0 || !everReleased(s, it.cert) || (sp != nil && s != sp) {
				break
			}
			hd := s.heads[h.Author]
			if h.Seq != hd.Seq+1 || h.Prev != hd.Hash || size > maxGroupBytes/2 {
				break
			}
			sp = s
			t.changed()
			entries, _, err := a.applyEnvelope(sp, h, it.env, it.cert)
			if err != nil {
				return errRunFallback{err}
			}
			nh := head{Seq: h.Seq, Hash: crypto.Hash(it.env)}
			a.advanceHead(sp, h.Author, nh)
			if _, ok := heads[h.Author]; !ok {
				order = append(order, h.Author)
			}
			heads[h.Author] = nh
			if sp.resolvesWait(h.Author, h.Seq) {
				sp.unlocked = true
			}
			t.put(entries...)
			t.put(a.db.entry(envKey(h.Space, h.Author, h.Seq), it.env))
			size += len(it.env) + entriesSize(entries)
			n++
			if sp.unlocked {
				break // what waited is applied on top of this run, once it is durable
			}
		}
		if n == 0 {
			return nil
		}
		space = sp.id
		for _, au := range order {
			t.put(a.db.entry(headKey(sp.id, au), heads[au].marshal()))
		}
		ctxBytes, _ := sp.ctx.MarshalBinary()
		t.put(
			a.db.entry(ctxKey(sp.id), ctxBytes),
			a.db.entry(spaceKey(sp.id), sp.meta.marshal()),
			a.hlcEntry())
		t.entries = lastPerKey(t.entries)
		unlocked = sp.unlocked
		sp.unlocked = false
		t.window = !unlocked
		return nil
	})
	if errors.As(err, new(errRunFallback)) {
		return 0, nil
	}
	if err != nil {
		return 0, err
	}
	for _, it := range items[:n] {
		a.clearGap(it.h.Space, it.h.Author, it.h.Seq)
	}
	if unlocked {
		if err := a.drainPending(space); err != nil {
			return n, err
		}
		a.wrapDue.Store(true) // wrapped on at the end of the batch (wrapIfDue)
	}
	return n, nil
}

// errRunFallback ends an ingestRun whose state must be reloaded: the
// caller judges the envelopes one by one instead.
type errRunFallback struct{ err error }

func (e errRunFallback) Error() string { return e.err.Error() }

// lastPerKey keeps, of entries with the same key, the last one, in the
// place of the first: a record touched by several changes of a run is
// stored once, in its newest state.
func lastPerKey(es []kvEntry) []kvEntry {
	idx := make(map[string]int, len(es))
	out := es[:0:0]
	for _, e := range es {
		if i, ok := idx[string(e.Key)]; ok {
			out[i] = e
			continue
		}
		idx[string(e.Key)] = len(out)
		out = append(out, e)
	}
	return out
}
