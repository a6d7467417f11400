package agent

// Envelopes of spaces whose routing record has not arrived (issue 12, item
// 2). A space exists on a device only from its routing record on: until
// then nobody can judge who may write in it, so what arrives for it is held
// in memory, bounded in spaces and bytes and for a limited time, and
// ingested once the routing record opens the space (sync sends a space's
// envelopes by author, so another author's may come first). Beyond the
// bounds an envelope is refused ("no_routing") and sync offers it again
// later. Nothing of it is stored: key shares for random space IDs create
// nothing, on disk or across a restart.

import (
	"cmp"
	"errors"
	"fmt"
	"slices"
	"time"

	"fieldsync/crypto"
	"fieldsync/internal/rules"
)

// Bounds of the orphan holding area.
const (
	maxOrphanSpaces     = 64
	maxOrphanSpaceBytes = 4 << 20
	maxOrphanBytes      = 16 << 20
	orphanTTL           = 10 * time.Minute
)

// RejectNoRouting counts envelopes refused because their space's routing
// record is not held and the holding area is full.
const RejectNoRouting = "no_routing"

// errOrphanHeld is what ingestVerified returns for an envelope held until
// its space's routing record comes: not an error for sync (ingest returns
// nil for it), but not stored either.
var errOrphanHeld = errors.New("held until the space's routing record arrives")

type orphanEnv struct {
	env  []byte
	h    crypto.Header
	cert *crypto.Certificate
}

type orphanSet struct {
	envs  []orphanEnv
	bytes int
	since time.Time
}

// everReleased reports whether the certificate's device is an officer of a
// bureau some routing record of the space released: the owner's, or one
// any record held names (a withdrawal does not make a bureau's earlier
// writes invalid: docs/crypto.md, "Known limits").
func everReleased(sp *spaceState, c *crypto.Certificate) bool {
	return rules.EverReleased(c, sp.meta.OwnerFP, routingRules(sp.meta.Routings))
}

// holdOrphan keeps a verified envelope of a space without a routing record,
// within the bounds. stateMu held.
func (a *Agent) holdOrphan(h crypto.Header, env []byte, cert *crypto.Certificate) error {
	now := a.cfg.now()
	total := 0
	for id, o := range a.orphans {
		if now.Sub(o.since) > orphanTTL {
			delete(a.orphans, id)
			continue
		}
		total += o.bytes
	}
	o := a.orphans[h.Space]
	refuse := func(why string) error {
		return a.reject(RejectNoRouting, fmt.Errorf("space %s: its routing record is not held yet and %s; sync offers it again later", h.Space, why))
	}
	if o == nil {
		if len(a.orphans) >= maxOrphanSpaces {
			return refuse(fmt.Sprintf("%d such spaces are held already", maxOrphanSpaces))
		}
		o = &orphanSet{since: now}
	}
	for _, e := range o.envs {
		if e.h.Author == h.Author && e.h.Seq == h.Seq {
			return errOrphanHeld // held already
		}
	}
	if o.bytes+len(env) > maxOrphanSpaceBytes || total+len(env) > maxOrphanBytes {
		return refuse("what is held for such spaces is at its bound")
	}
	if a.orphans == nil {
		a.orphans = map[crypto.SpaceID]*orphanSet{}
	}
	o.envs = append(o.envs, orphanEnv{env: env, h: h, cert: cert})
	o.bytes += len(env)
	a.orphans[h.Space] = o
	return errOrphanHeld
}

// replayOrphans ingests what waited for the space's routing record, in
// (author, seq) order. Refusals are counted as usual.
func (a *Agent) replayOrphans(space crypto.SpaceID) error {
	// Taking them out changes the state (in memory only): a transaction
	// with nothing to store.
	var o *orphanSet
	err := a.withWrite(func(*tx) error {
		o = a.orphans[space]
		delete(a.orphans, space)
		return nil
	})
	if err != nil || o == nil {
		return err
	}
	slices.SortFunc(o.envs, func(x, y orphanEnv) int {
		if c := cmp.Compare(string(x.h.Author[:]), string(y.h.Author[:])); c != 0 {
			return c
		}
		return cmp.Compare(x.h.Seq, y.h.Seq)
	})
	for _, e := range o.envs {
		if _, err := a.ingestVerified(e.env, e.h, e.cert, true); err != nil {
			var re *RejectError
			if !errors.As(err, &re) && !errors.Is(err, errOrphanHeld) {
				return err
			}
		}
	}
	return nil
}
