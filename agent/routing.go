package agent

import (
	"crypto/rand"
	"encoding/binary"
	"fieldsync/agent/api"
	"fmt"
	"maps"
	"net/http"
	"slices"

	"fieldsync/crypto"
	"fieldsync/internal/rules"
)

// routingEntry is one routing record of a space, as the release-list CRDT
// needs it (kept in spaceMeta, so the list is known without reading the log).
type routingEntry struct {
	Author     string       `json:"author"` // device ID
	Seq        uint64       `json:"seq"`
	Released   []string     `json:"released"`             // bureau fingerprints, owner included
	Supersedes []routingRef `json:"supersedes,omitempty"` // records this one replaces
}

type routingRef struct {
	Author string `json:"author"`
	Seq    uint64 `json:"seq"`
}

// effectiveRelease computes a space's release list from its routing records
// (rules.ReleaseList; docs/crdt.md, "Release lists"): a withdrawal wins over
// a concurrent release of the same bureau, the owner is always released.
func effectiveRelease(owner string, recs []routingEntry) []string {
	return rules.ReleaseList(owner, routingRules(recs))
}

// routingRules is the routing records as the rules take them.
func routingRules(recs []routingEntry) []rules.Routing {
	out := make([]rules.Routing, len(recs))
	for i, r := range recs {
		out[i] = rules.Routing{Author: r.Author, Seq: r.Seq, Released: r.Released}
		for _, s := range r.Supersedes {
			out[i].Supersedes = append(out[i].Supersedes, rules.Ref{Author: s.Author, Seq: s.Seq})
		}
	}
	return out
}

// routingHeads returns the refs of the routing records nothing replaces: a
// new routing record supersedes them.
func routingHeads(recs []routingEntry) []crypto.RoutingRef {
	var out []crypto.RoutingRef
	for _, r := range rules.RoutingHeads(routingRules(recs)) {
		if dev, err := crypto.ParseDeviceID(r.Author); err == nil {
			out = append(out, crypto.RoutingRef{Author: dev, Seq: r.Seq})
		}
	}
	return out
}

// applyRouting adds a verified routing record to the space's release list and
// recomputes it; it reports whether a bureau was released that was not
// before (not counting a space's first record). stateMu held.
func (a *Agent) applyRouting(sp *spaceState, h crypto.Header, r crypto.Routing, ownerName string) (released bool) {
	author := h.Author.String()
	for _, e := range sp.meta.Routings {
		if e.Author == author && e.Seq == h.Seq {
			return false
		}
	}
	before := slices.Clone(sp.meta.ReleaseFP)
	first := len(sp.meta.Routings) == 0
	defer func() {
		for _, fp := range sp.meta.ReleaseFP {
			if !first && !slices.Contains(before, fp) {
				released = true
			}
		}
	}()
	e := routingEntry{Author: author, Seq: h.Seq, Released: slices.Clone(r.Released)}
	for _, s := range r.Supersedes {
		e.Supersedes = append(e.Supersedes, routingRef{Author: s.Author.String(), Seq: s.Seq})
	}
	sp.meta.Routings = append(sp.meta.Routings, e)
	if sp.meta.OwnerFP == "" {
		sp.meta.OwnerFP, sp.meta.Owner, sp.meta.Nonce = r.Owner, ownerName, r.Nonce
	}
	a.refreshRelease(sp)
	return false // set by the deferred comparison
}

// refreshRelease recomputes the release list (fingerprints and names) from
// the routing records. stateMu held.
func (a *Agent) refreshRelease(sp *spaceState) {
	if sp.meta.OwnerFP == "" {
		return
	}
	sp.meta.ReleaseFP = effectiveRelease(sp.meta.OwnerFP, sp.meta.Routings)
	sp.meta.Release = make([]string, 0, len(sp.meta.ReleaseFP))
	for _, fp := range sp.meta.ReleaseFP {
		name := fp
		if b, ok := a.trust.Lookup(fp); ok {
			name = b.Name
		}
		sp.meta.Release = append(sp.meta.Release, name)
	}
	a.noteReleased(sp)
	sp.pickCurrent() // which epochs' lists count depends on the release list
}

// dropRoutings forgets the routing records of author above seq (its log was
// cut there: a revocation or a fork). stateMu held.
func (a *Agent) dropRoutings(sp *spaceState, author crypto.DeviceID, above uint64) {
	id := author.String()
	sp.meta.Routings = slices.DeleteFunc(sp.meta.Routings, func(e routingEntry) bool { return e.Author == id && e.Seq > above })
	if len(sp.meta.Routings) == 0 {
		// Its creating record is gone too ('*:0' of the creator): the space
		// has no owner and no release list now, as on replicas that refused
		// that record — fail closed, and the same everywhere.
		sp.meta.OwnerFP, sp.meta.Owner, sp.meta.ReleaseFP, sp.meta.Release = "", "", nil, nil
		a.noteReleased(sp)
		return
	}
	a.refreshRelease(sp)
}

func init() {
	apiExtensions = append(apiExtensions, func(a *Agent, mux *http.ServeMux) {
		post(a, mux, api.PathSpaceRelease, func(req api.SpaceBureauRequest) (any, error) { return a.ChangeRelease(req, true) })
		post(a, mux, api.PathSpaceWithdraw, func(req api.SpaceBureauRequest) (any, error) { return a.ChangeRelease(req, false) })
	})
}

// ChangeRelease releases a space to a bureau (release true) or withdraws it:
// a signed routing record that supersedes every routing record this device
// holds. Only officer devices of the owning bureau may; the owner itself
// cannot be withdrawn. A withdrawal rotates the epoch key at once, wrapped
// only to the devices still entitled, so the withdrawn bureau cannot open
// what is written from now on (what it already holds, it keeps).
func (a *Agent) ChangeRelease(req api.SpaceBureauRequest, release bool) (api.Space, error) {
	if a.cfg.Relay {
		return api.Space{}, fmt.Errorf("%w: a relay cannot change a space's release list", ErrForbidden)
	}
	b, err := a.resolveBureau(req.Bureau)
	if err != nil {
		return api.Space{}, err
	}
	var view api.Space
	var spaceID crypto.SpaceID
	fp := b.Fingerprint()
	changed := false
	err = a.withWrite(func(t *tx) error {
		sp, err := a.resolveSpace(req.Space)
		if err != nil {
			return err
		}
		if sp.meta.OwnerFP != a.cert.Bureau.Fingerprint() {
			return fmt.Errorf("%w: only devices of the owning bureau (%s) may change the release list of space %s", ErrForbidden, sp.meta.Owner, sp.id)
		}
		if sp.current == nil {
			return fmt.Errorf("%w: this device holds no key for space %s yet", ErrForbidden, sp.id)
		}
		if !release && fp == sp.meta.OwnerFP {
			return fmt.Errorf("%w: the owning bureau cannot be withdrawn from its own space", ErrBadRequest)
		}
		has := slices.Contains(sp.meta.ReleaseFP, fp)
		if has == release {
			view = spaceView(sp.meta)
			return nil // already so: nothing to sign
		}
		t.changed()
		list := slices.DeleteFunc(slices.Clone(sp.meta.ReleaseFP), func(x string) bool { return x == fp })
		if release {
			list = append(list, fp)
		}
		var entries []kvEntry
		if !release {
			// Rotate first, so the name in the new record is sealed under the
			// key the withdrawn bureau will not get.
			rot, err := a.rotateEpoch(sp)
			if err != nil {
				return t.fail(err)
			}
			entries = append(entries, rot...)
		}
		r := crypto.Routing{Space: sp.id, Nonce: sp.meta.Nonce, Owner: sp.meta.OwnerFP, Released: list,
			SealedName: crypto.SealName(sp.current, sp.id, sp.meta.Name, rand.Reader),
			Supersedes: routingHeads(sp.meta.Routings)}
		prof, err := a.ensureProfile(sp)
		if err != nil {
			return t.fail(err)
		}
		entries = append(entries, prof...)
		hlc := a.clock.Now(a.physMillis())
		env, err := a.appendEnvelope(sp, crypto.KindRouting, r.Marshal(), nil, hlc)
		if err != nil {
			return t.fail(err)
		}
		entries = append(entries, env...)
		a.applyRouting(sp, crypto.Header{Author: a.dev, Seq: sp.heads[a.dev].Seq}, r, a.cert.Bureau.Name)
		shares, _, err := a.shareEntries(sp, a.knownCerts())
		if err != nil {
			return t.fail(err)
		}
		entries = append(entries, shares...)
		ctxBytes, err := sp.ctx.MarshalBinary()
		if err != nil {
			return t.fail(err)
		}
		entries = append(entries, a.db.entry(ctxKey(sp.id), ctxBytes), a.db.entry(spaceKey(sp.id), sp.meta.marshal()), a.hlcEntry())
		view, spaceID, changed = spaceView(sp.meta), sp.id, true
		t.put(entries...)
		return nil
	})
	switch {
	case err != nil && changed:
		return api.Space{}, fmt.Errorf("release list not changed: %w", err)
	case err != nil:
		return api.Space{}, err
	case !changed:
		return view, nil
	}
	verb := "withdrew"
	if release {
		verb = "released"
	}
	a.log.Info(verb+" a space", "space", spaceID.String(), "bureau", fp)
	a.notify()
	return view, nil
}

// ---- Epoch keys ----

// Epochs are ordered causally, not by wall clock (docs/crdt.md, "Epochs"):
// a rotation names, in every key share of the new epoch, the epochs it
// replaces — those current on the rotating device — and every device that
// wraps that epoch later copies the list. Every replica computes the
// current epoch from the lists of the shares in the space's log (clear
// bodies every member and relay holds alike) and the keys it holds; no
// HLC takes part, so a share dated years ahead moves nothing.
//
// spaceMeta.Epochs keeps, per epoch, what the log says of it: by bureau
// (of the shares' authors), the union of the lists they gave. A list
// counts only while its bureau is released (a withdrawn bureau's devices
// cannot retire the epochs of those still entitled).

// epochInfo is what this device knows of one epoch of a space.
type epochInfo struct {
	// By maps the fingerprint of each bureau whose devices wrote key
	// shares of this epoch to the union of the epochs those shares list
	// as replaced (sorted key IDs; empty for version 1 shares).
	By map[string][]string `json:"by,omitempty"`
	// Mine is set when this device began the epoch; Own is the list it
	// gave it (kept even before its first share is written, and across a
	// cut, which rebuilds By from the log).
	Mine bool     `json:"mine,omitempty"`
	Own  []string `json:"own,omitempty"`
}

// epochValue is the stored form of an epoch key: the key, then when this
// device began it (packed HLC; 0 when it got it from a share). The time is
// informational: it orders nothing.
func epochValue(k *crypto.SpaceKey, began uint64) []byte {
	return binary.BigEndian.AppendUint64(k.Bytes(), began)
}

func parseEpochValue(v []byte) (*crypto.SpaceKey, uint64, error) {
	var began uint64
	if len(v) == 40 {
		began = binary.BigEndian.Uint64(v[32:])
		v = v[:32]
	}
	k, err := crypto.SpaceKeyFromBytes(v)
	return k, began, err
}

func (s *spaceState) epochInfo(id string) *epochInfo {
	if s.meta.Epochs == nil {
		s.meta.Epochs = map[string]*epochInfo{}
	}
	e := s.meta.Epochs[id]
	if e == nil {
		e = &epochInfo{}
		s.meta.Epochs[id] = e
	}
	return e
}

// noteShare records what a key share of an epoch says (its author's bureau
// and the epochs it replaces) and settles the current epoch again. It
// changes nothing when the share says nothing new.
func (s *spaceState) noteShare(share crypto.KeyShare, bureau string) {
	e := s.epochInfo(share.Epoch.String())
	old, had := e.By[bureau]
	merged := slices.Clone(old)
	for _, r := range share.Replaces {
		merged = append(merged, r.String())
	}
	slices.Sort(merged)
	merged = slices.Compact(merged)
	if had && slices.Equal(old, merged) {
		return
	}
	if e.By == nil {
		e.By = map[string][]string{}
	}
	e.By[bureau] = merged
	s.pickCurrent()
}

// epochRules is what this device knows of the space's epochs, as the rules
// take it: the lists of released bureaus count (docs/crdt.md, "Epochs").
func (s *spaceState) epochRules() rules.Epochs {
	known := make(map[crypto.KeyID]rules.Epoch, len(s.meta.Epochs))
	for id, e := range s.meta.Epochs {
		k, err := crypto.ParseKeyID(id)
		if err != nil {
			continue
		}
		var re rules.Epoch
		if e != nil {
			re.Mine, re.Own = e.Mine, keyIDs(e.Own)
			re.By = make(map[string][]crypto.KeyID, len(e.By))
			for b, l := range e.By {
				re.By[b] = keyIDs(l)
			}
		}
		known[k] = re
	}
	return rules.Epochs{Known: known, Released: s.meta.ReleaseFP}
}

// keyIDs parses key IDs in text form, skipping any that do not parse.
func keyIDs(l []string) []crypto.KeyID {
	out := make([]crypto.KeyID, 0, len(l))
	for _, s := range l {
		if k, err := crypto.ParseKeyID(s); err == nil {
			out = append(out, k)
		}
	}
	return out
}

// epochOrder computes which known epochs are replaced and how deep each is
// (rules.Epochs.Order).
func (s *spaceState) epochOrder() (replaced map[crypto.KeyID]bool, depth map[crypto.KeyID]int) {
	return s.epochRules().Order()
}

// pickCurrent settles the current epoch: among the epoch keys held that
// may be current (backed; all held if none is), those no known epoch
// replaces (all of them if every one is replaced: a hostile cycle); of
// those the deepest, then the largest key ID. Every replica holding the
// same keys and the same log settles on the same epoch.
func (s *spaceState) pickCurrent() {
	s.current = nil
	if id, ok := s.epochRules().Current(slices.Collect(maps.Keys(s.keys))); ok {
		s.current, s.meta.Epoch = s.keys[id], id.String()
	}
}

// epochHeads lists what a new epoch replaces: the current epoch first,
// then every other epoch held that nothing known replaces, deepest first,
// at most crypto.MaxReplaces.
func (s *spaceState) epochHeads() []crypto.KeyID {
	var cur crypto.KeyID
	if s.current != nil {
		cur = s.current.ID()
	}
	return s.epochRules().Heads(slices.Collect(maps.Keys(s.keys)), cur)
}

// shareList is the list a key share of the epoch carries: what this
// device knows the epoch replaces, at most crypto.MaxReplaces (the
// smallest key IDs if a hostile author made it longer).
func (s *spaceState) shareList(id crypto.KeyID) []crypto.KeyID {
	return s.epochRules().ShareList(id)
}

// adoptEpoch records an epoch key held (began: when this device began it,
// 0 if it got it from a share) and settles the current epoch again.
func (s *spaceState) adoptEpoch(k *crypto.SpaceKey, began uint64) {
	if s.epochAt == nil {
		s.epochAt = map[crypto.KeyID]uint64{}
	}
	if _, ok := s.epochAt[k.ID()]; !ok {
		s.epochAt[k.ID()] = began
	}
	s.keys[k.ID()] = k
	s.pickCurrent()
}

// beginEpoch makes a new epoch key this device's own: it replaces the
// epochs current here (epochHeads), and becomes the current one.
func (s *spaceState) beginEpoch(k *crypto.SpaceKey, began uint64) {
	e := s.epochInfo(k.ID().String())
	e.Mine = true
	e.Own = nil
	for _, id := range s.epochHeads() {
		e.Own = append(e.Own, id.String())
	}
	slices.Sort(e.Own)
	s.adoptEpoch(k, began)
}

// rotateEpoch starts a new epoch in the space: a fresh key that replaces
// the current one (and every other epoch held that nothing replaces yet),
// current from now on. The caller writes its key shares (shareEntries) in
// the same commit. The clock is only read, never moved: epochs are not
// ordered by time. stateMu held.
func (a *Agent) rotateEpoch(sp *spaceState) ([]kvEntry, error) {
	key, err := crypto.NewSpaceKey(rand.Reader)
	if err != nil {
		return nil, err
	}
	began := a.clock.Now(a.physMillis())
	sp.beginEpoch(key, began.Pack())
	if sp.current != key {
		return nil, fmt.Errorf("rotate: the new epoch did not become the current one in space %s", sp.id)
	}
	a.log.Info("rotated a space's epoch key", "space", sp.id.String(), "epoch", key.ID().String())
	return []kvEntry{a.db.entry(epochKey(sp.id, key.ID()), epochValue(key, began.Pack())), a.db.entry(spaceKey(sp.id), sp.meta.marshal())}, nil
}

// recomputeEpochStarts builds the epochs' lists again from the key shares
// left in the space's log, after a cut removed some (revocation, fork), or
// when a store written before epochs were ordered causally is opened (then
// the epochs this device began are those stored with a start). stateMu
// held (or not serving yet); the caller stores the metadata.
func (a *Agent) recomputeEpochStarts(sp *spaceState) error {
	old := sp.meta.Epochs
	sp.meta.Epochs = map[string]*epochInfo{}
	for id, e := range old {
		if e != nil && e.Mine {
			sp.meta.Epochs[id] = &epochInfo{Mine: true, Own: e.Own}
		}
	}
	if old == nil {
		for id, began := range sp.epochAt {
			if began != 0 {
				sp.epochInfo(id.String()).Mine = true
			}
		}
	}
	sp.meta.EpochStarts = nil // dated epochs by HLC before: no longer read
	err := a.db.scan(envSpacePrefix(sp.id), func(k, env []byte) error {
		h, err := crypto.ParseHeader(env)
		if err != nil || h.Kind != crypto.KindKeyShare || len(env) < crypto.HeaderSize+int(h.BodyLen) {
			return nil
		}
		share, err := crypto.ParseKeyShare(env[crypto.HeaderSize : crypto.HeaderSize+int(h.BodyLen)])
		if err != nil {
			return nil
		}
		cert := a.cert // our own is known before a.trustNow().certs holds it (load)
		if h.Author != a.dev {
			cert = a.trustNow().certs[h.Author]
		}
		if cert == nil {
			return nil
		}
		sp.noteShare(share, cert.Bureau.Fingerprint())
		return nil
	}, a.countCorrupt)
	if err != nil {
		return err
	}
	sp.pickCurrent()
	return nil
}

// needsRotation reports whether the current epoch key of the space is held
// by a device no longer entitled to it — revoked, or of a bureau the space
// was withdrawn from, or unknown here: the next write must then start a new
// epoch (docs/design.md §5).
// A device holds an epoch when a key share of it was addressed to it, or it
// wrote a share or a change under it. stateMu held.
func (a *Agent) needsRotation(sp *spaceState) bool {
	if sp.current == nil {
		return false
	}
	cur := sp.current.ID()
	for sk := range sp.shared {
		if sk.epoch != cur || sk.recipient == a.dev {
			continue
		}
		if a.trustNow().revs[sk.recipient] != nil {
			return true
		}
		// A holder whose certificate this device lacks (it knows it only
		// from a share addressed to it) cannot be judged: fail closed.
		if c := a.trustNow().certs[sk.recipient]; c == nil || !entitled(sp, c) {
			return true
		}
	}
	return false
}

// noteHolder records that dev holds the epoch (it wrote under it), so that a
// rotation is due if it loses its entitlement. stateMu held.
func (a *Agent) noteHolder(sp *spaceState, dev crypto.DeviceID, epoch crypto.KeyID) []kvEntry {
	sk := shareKey{recipient: dev, epoch: epoch}
	if epoch == (crypto.KeyID{}) || sp.shared[sk] {
		return nil
	}
	sp.markShared(sk)
	return []kvEntry{a.db.entry(sharedKey(sp.id, sk), nil)}
}
