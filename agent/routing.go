package agent

import (
	"bytes"
	"crypto/rand"
	"encoding/binary"
	"fmt"
	"net/http"
	"slices"
	"sort"

	"fieldsync/crdt"
	"fieldsync/crypto"
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
// (docs/crdt.md, "Release lists"). A record replaces the records it names in
// Supersedes and its author's earlier records; the records nothing replaces
// are the heads. A bureau is released when a head releases it and no head
// withdrew it — a head withdraws a bureau when it leaves out a bureau that a
// record it replaced (directly or not) had released. So a withdrawal wins
// over a concurrent release of the same bureau (fail closed, DESIGN §2),
// while concurrent releases of different bureaus both stand. The owner is
// always released. The result is sorted and does not depend on the order in
// which the records arrived.
func effectiveRelease(owner string, recs []routingEntry) []string {
	type ref struct {
		author string
		seq    uint64
	}
	index := make(map[ref]int, len(recs))
	for i, r := range recs {
		index[ref{r.Author, r.Seq}] = i
	}
	// replaces[i] lists the records record i replaces directly.
	replaces := make([][]int, len(recs))
	replaced := make([]bool, len(recs))
	for i, r := range recs {
		for _, s := range r.Supersedes {
			if j, ok := index[ref{s.Author, s.Seq}]; ok && j != i {
				replaces[i] = append(replaces[i], j)
				replaced[j] = true
			}
		}
		for j, o := range recs {
			if o.Author == r.Author && o.Seq < r.Seq {
				replaces[i] = append(replaces[i], j)
				replaced[j] = true
			}
		}
	}
	// known(i): every bureau released by a record in i's past.
	known := func(i int) map[string]bool {
		seen := map[int]bool{}
		out := map[string]bool{}
		stack := slices.Clone(replaces[i])
		for len(stack) > 0 {
			j := stack[len(stack)-1]
			stack = stack[:len(stack)-1]
			if seen[j] {
				continue
			}
			seen[j] = true
			for _, b := range recs[j].Released {
				out[b] = true
			}
			stack = append(stack, replaces[j]...)
		}
		return out
	}
	released := map[string]bool{owner: true}
	var heads []int
	for i := range recs {
		if !replaced[i] {
			heads = append(heads, i)
		}
	}
	candidates := map[string]bool{}
	for _, i := range heads {
		for _, b := range recs[i].Released {
			candidates[b] = true
		}
	}
	pasts := make([]map[string]bool, len(heads))
	for k, i := range heads {
		pasts[k] = known(i)
	}
	for b := range candidates {
		in := true
		for k, i := range heads {
			if !slices.Contains(recs[i].Released, b) && pasts[k][b] {
				in = false // this head withdrew it
				break
			}
		}
		if in {
			released[b] = true
		}
	}
	out := make([]string, 0, len(released))
	for b := range released {
		out = append(out, b)
	}
	sort.Strings(out)
	return out
}

// routingHeads returns the refs of the routing records nothing replaces: a
// new routing record supersedes them.
func routingHeads(recs []routingEntry) []crypto.RoutingRef {
	var out []crypto.RoutingRef
	for i, r := range recs {
		head := true
		for j, o := range recs {
			if i == j {
				continue
			}
			if o.Author == r.Author && o.Seq > r.Seq {
				head = false
				break
			}
			for _, s := range o.Supersedes {
				if s.Author == r.Author && s.Seq == r.Seq {
					head = false
				}
			}
			if !head {
				break
			}
		}
		if head {
			if dev, err := crypto.ParseDeviceID(r.Author); err == nil {
				out = append(out, crypto.RoutingRef{Author: dev, Seq: r.Seq})
			}
		}
	}
	return out
}

// applyRouting adds a verified routing record to the space's release list and
// recomputes it; it reports whether a bureau was released that was not
// before (not counting a space's first record). writeMu held.
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
// the routing records. writeMu held.
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
}

// dropRoutings forgets the routing records of author above seq (its log was
// cut there: a revocation or a fork). writeMu held.
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
		post(a, mux, PathSpaceRelease, func(req SpaceBureauRequest) (any, error) { return a.ChangeRelease(req, true) })
		post(a, mux, PathSpaceWithdraw, func(req SpaceBureauRequest) (any, error) { return a.ChangeRelease(req, false) })
	})
}

// ChangeRelease releases a space to a bureau (release true) or withdraws it:
// a signed routing record that supersedes every routing record this device
// holds. Only officer devices of the owning bureau may; the owner itself
// cannot be withdrawn. A withdrawal rotates the epoch key at once, wrapped
// only to the devices still entitled, so the withdrawn bureau cannot open
// what is written from now on (what it already holds, it keeps).
func (a *Agent) ChangeRelease(req SpaceBureauRequest, release bool) (Space, error) {
	if a.cfg.Relay {
		return Space{}, fmt.Errorf("%w: a relay cannot change a space's release list", ErrForbidden)
	}
	b, err := a.resolveBureau(req.Bureau)
	if err != nil {
		return Space{}, err
	}
	if err := a.beginWrite(); err != nil {
		return Space{}, err
	}
	sp, err := a.resolveSpace(req.Space)
	if err != nil {
		a.writeMu.Unlock()
		return Space{}, err
	}
	if sp.meta.OwnerFP != a.cert.Bureau.Fingerprint() {
		a.writeMu.Unlock()
		return Space{}, fmt.Errorf("%w: only devices of the owning bureau (%s) may change the release list of space %s", ErrForbidden, sp.meta.Owner, sp.id)
	}
	if sp.current == nil {
		a.writeMu.Unlock()
		return Space{}, fmt.Errorf("%w: this device holds no key for space %s yet", ErrForbidden, sp.id)
	}
	fp := b.Fingerprint()
	if !release && fp == sp.meta.OwnerFP {
		a.writeMu.Unlock()
		return Space{}, fmt.Errorf("%w: the owning bureau cannot be withdrawn from its own space", ErrBadRequest)
	}
	has := slices.Contains(sp.meta.ReleaseFP, fp)
	if has == release {
		view := spaceView(sp.meta)
		a.writeMu.Unlock()
		return view, nil // already so: nothing to sign
	}
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
			a.abortWrite()
			return Space{}, err
		}
		entries = append(entries, rot...)
	}
	r := crypto.Routing{Space: sp.id, Nonce: sp.meta.Nonce, Owner: sp.meta.OwnerFP, Released: list,
		SealedName: crypto.SealName(sp.current, sp.id, sp.meta.Name, rand.Reader),
		Supersedes: routingHeads(sp.meta.Routings)}
	prof, err := a.ensureProfile(sp)
	if err != nil {
		a.abortWrite()
		return Space{}, err
	}
	entries = append(entries, prof...)
	hlc := a.clock.Now(a.physMillis())
	_, env, err := a.appendEnvelope(sp, crypto.KindRouting, r.Marshal(), nil, hlc)
	if err != nil {
		a.abortWrite()
		return Space{}, err
	}
	entries = append(entries, env...)
	a.applyRouting(sp, crypto.Header{Author: a.dev, Seq: sp.heads[a.dev].Seq}, r, a.cert.Bureau.Name)
	shares, _, err := a.shareEntries(sp, a.knownCerts())
	if err != nil {
		a.abortWrite()
		return Space{}, err
	}
	entries = append(entries, shares...)
	ctxBytes, err := sp.ctx.MarshalBinary()
	if err != nil {
		a.abortWrite()
		return Space{}, err
	}
	entries = append(entries, a.db.entry(ctxKey(sp.id), ctxBytes), a.db.entry(spaceKey(sp.id), sp.meta.marshal()), a.hlcEntry())
	view := spaceView(sp.meta)
	if err := a.commitWrite(entries); err != nil {
		return Space{}, fmt.Errorf("release list not changed: %w", err)
	}
	verb := "withdrew"
	if release {
		verb = "released"
	}
	a.log.Info(verb+" a space", "space", sp.id.String(), "bureau", fp)
	a.notify()
	return view, nil
}

// ---- Epoch keys ----

// Epochs are ordered by when they began, the newest held being the current
// one, and every replica must agree on that order from the envelopes alone
// (docs/crdt.md, "Epochs"): an epoch's start is the earliest HLC of the key
// shares of it in the space's log (spaceMeta.EpochStarts) — the rotator's
// first share, normally — which every member and relay holds alike. An
// epoch this device began and has not wrapped to anyone yet has only its
// provisional start (stored with the key), and only this device holds it.

// epochValue is the stored form of an epoch key: the key, then its
// provisional start (packed HLC; 0 when unknown).
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

// epochStart is when an epoch began, as every replica sees it: the earliest
// key share of it, else its provisional start.
func (s *spaceState) epochStart(id crypto.KeyID) uint64 {
	if v, ok := s.meta.EpochStarts[id.String()]; ok {
		return v
	}
	return s.epochAt[id]
}

// noteShare records a key share of an epoch at hlc (the earliest wins) and
// settles the current epoch again.
func (s *spaceState) noteShare(epoch crypto.KeyID, hlc uint64) {
	if s.meta.EpochStarts == nil {
		s.meta.EpochStarts = map[string]uint64{}
	}
	if old, ok := s.meta.EpochStarts[epoch.String()]; !ok || hlc < old {
		s.meta.EpochStarts[epoch.String()] = hlc
	}
	s.pickCurrent()
}

// maxStart is the latest start of any epoch known in the space.
func (s *spaceState) maxStart() uint64 {
	var m uint64
	for _, v := range s.meta.EpochStarts {
		m = max(m, v)
	}
	for _, v := range s.epochAt {
		m = max(m, v)
	}
	return m
}

// pickCurrent makes the newest epoch held the current one: the latest
// start, ties broken by key ID.
func (s *spaceState) pickCurrent() {
	var best *crypto.SpaceKey
	var bestStart uint64
	for id, k := range s.keys {
		st := s.epochStart(id)
		bid := crypto.KeyID{}
		if best != nil {
			bid = best.ID()
		}
		if best == nil || st > bestStart || (st == bestStart && bytes.Compare(id[:], bid[:]) > 0) {
			best, bestStart = k, st
		}
	}
	s.current = best
	if best != nil {
		s.meta.Epoch = best.ID().String()
	}
}

// adoptEpoch records an epoch key held (with its provisional start, 0 if
// none) and settles the current epoch again.
func (s *spaceState) adoptEpoch(k *crypto.SpaceKey, provisional uint64) {
	if s.epochAt == nil {
		s.epochAt = map[crypto.KeyID]uint64{}
	}
	if _, ok := s.epochAt[k.ID()]; !ok {
		s.epochAt[k.ID()] = provisional
	}
	s.keys[k.ID()] = k
	s.pickCurrent()
}

// rotateEpoch starts a new epoch in the space: a fresh key, current from now
// on. The caller writes its key shares (shareEntries) in the same commit.
// writeMu held.
func (a *Agent) rotateEpoch(sp *spaceState) ([]kvEntry, error) {
	key, err := crypto.NewSpaceKey(rand.Reader)
	if err != nil {
		return nil, err
	}
	// The new epoch must sort after every epoch known even when this
	// device's clock runs behind the one that began them (a Lamport bump):
	// the mesh settles on the newest rotation, not on the most skewed
	// clock. Its shares, written after, carry later HLCs still.
	began := a.clock.Now(a.physMillis())
	if m := sp.maxStart(); began.Pack() <= m {
		a.clock.Last = crdt.UnpackTimestamp(m + 1)
		began = a.clock.Now(a.physMillis())
	}
	sp.adoptEpoch(key, began.Pack())
	if sp.current != key {
		return nil, fmt.Errorf("rotate: the new epoch is not the newest (clock at %v)", began)
	}
	a.log.Info("rotated a space's epoch key", "space", sp.id.String(), "epoch", key.ID().String())
	return []kvEntry{a.db.entry(epochKey(sp.id, key.ID()), epochValue(key, began.Pack())), a.db.entry(spaceKey(sp.id), sp.meta.marshal())}, nil
}

// recomputeEpochStarts dates every epoch again from the key shares left in
// the space's log, after a cut removed some (revocation, fork). writeMu
// held; the caller stores the metadata.
func (a *Agent) recomputeEpochStarts(sp *spaceState) error {
	starts := map[string]uint64{}
	err := a.db.scan(envSpacePrefix(sp.id), func(k, env []byte) error {
		h, err := crypto.ParseHeader(env)
		if err != nil || h.Kind != crypto.KindKeyShare || len(env) < crypto.HeaderSize+int(h.BodyLen) {
			return nil
		}
		share, err := crypto.ParseKeyShare(env[crypto.HeaderSize : crypto.HeaderSize+int(h.BodyLen)])
		if err != nil {
			return nil
		}
		id, hlc := share.Epoch.String(), packHLC(h)
		if old, ok := starts[id]; !ok || hlc < old {
			starts[id] = hlc
		}
		return nil
	}, a.countCorrupt)
	if err != nil {
		return err
	}
	sp.meta.EpochStarts = starts
	sp.pickCurrent()
	return nil
}

// needsRotation reports whether the current epoch key of the space is held
// by a device no longer entitled to it — revoked, or of a bureau the space
// was withdrawn from, or unknown here: the next write must then start a new
// epoch (DESIGN §5).
// A device holds an epoch when a key share of it was addressed to it, or it
// wrote a share or a change under it. writeMu held.
func (a *Agent) needsRotation(sp *spaceState) bool {
	if sp.current == nil {
		return false
	}
	cur := sp.current.ID()
	a.statMu.Lock()
	defer a.statMu.Unlock()
	for sk := range sp.shared {
		if sk.epoch != cur || sk.recipient == a.dev {
			continue
		}
		if a.revs[sk.recipient] != nil {
			return true
		}
		// A holder whose certificate this device lacks (it knows it only
		// from a share addressed to it) cannot be judged: fail closed.
		if c := a.certs[sk.recipient]; c == nil || !entitled(sp, c) {
			return true
		}
	}
	return false
}

// noteHolder records that dev holds the epoch (it wrote under it), so that a
// rotation is due if it loses its entitlement. writeMu held.
func (a *Agent) noteHolder(sp *spaceState, dev crypto.DeviceID, epoch crypto.KeyID) []kvEntry {
	sk := shareKey{recipient: dev, epoch: epoch}
	if epoch == (crypto.KeyID{}) || sp.shared[sk] {
		return nil
	}
	sp.markShared(sk)
	return []kvEntry{a.db.entry(sharedKey(sp.id, sk), nil)}
}

// packHLC is the packed HLC of an envelope header, for epoch ordering.
func packHLC(h crypto.Header) uint64 { return crdt.UnpackTimestamp(h.HLC).Pack() }
