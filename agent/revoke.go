package agent

import (
	"bytes"
	"encoding/base64"
	"errors"
	"fmt"
	"net/http"
	"sort"
	"strconv"
	"strings"

	"fieldsync/agent/api"
	"fieldsync/crypto"
	"fieldsync/internal/rules"
)

// Revocation API (docs/api.md; its types are in agent/api): the CLI asks
// the agent for the cut-offs it holds (prepare), signs the revocation with
// the bureau key — which never reaches the agent — and submits it.

func init() {
	apiExtensions = append(apiExtensions, func(a *Agent, mux *http.ServeMux) {
		post(a, mux, api.PathRevokePrepare, func(req api.RevokePrepareRequest) (any, error) { return a.PrepareRevocation(req) })
		post(a, mux, api.PathRevoke, func(req api.RevokeSubmitRequest) (any, error) {
			blob, err := base64.StdEncoding.DecodeString(req.Revocation)
			if err != nil {
				return nil, fmt.Errorf("%w: revocation is not base64: %v", ErrBadRequest, err)
			}
			return a.SubmitRevocation(blob)
		})
	})
}

// resolveDevice finds a known device by ID or unique prefix (≥ 6 characters).
func (a *Agent) resolveDevice(ref string) (*crypto.Certificate, error) {
	ref = strings.ToLower(strings.TrimSpace(ref))
	if len(ref) < 6 {
		return nil, fmt.Errorf("%w: a device ID or a prefix of at least 6 characters is needed", ErrBadRequest)
	}
	var found []*crypto.Certificate
	for _, c := range a.knownCerts() {
		if strings.HasPrefix(c.Device.ID().String(), ref) {
			found = append(found, c)
		}
	}
	switch len(found) {
	case 0:
		return nil, fmt.Errorf("%w: no known device %q (see `fieldsync peers`; this agent must have seen its certificate)", ErrNotFound, ref)
	case 1:
		return found[0], nil
	}
	var ids []string
	for _, c := range found {
		ids = append(ids, c.Device.ID().String())
	}
	return nil, fmt.Errorf("%w: %q matches %d devices: %s", ErrAmbiguous, ref, len(found), strings.Join(ids, ", "))
}

// PrepareRevocation fills in the cut-offs this agent holds for the device:
// per space, the contiguous seqs of its log held here (docs/design.md §5). A space
// where it holds nothing gets 0 through the default cut-off. Explicit
// cut-offs override; "*:N" sets the default and drops the filled-in ones.
func (a *Agent) PrepareRevocation(req api.RevokePrepareRequest) (api.RevokePlan, error) {
	cert, err := a.resolveDevice(req.Device)
	if err != nil {
		return api.RevokePlan{}, err
	}
	dev := cert.Device.ID()
	plan := api.RevokePlan{Device: dev.String(), Bureau: cert.Bureau.Fingerprint(), Role: cert.Role.String(), Cutoffs: map[string]uint64{}}
	if dev == a.dev {
		return api.RevokePlan{}, fmt.Errorf("%w: this agent's own device cannot be revoked through itself; run revoke on another device's agent", ErrBadRequest)
	}
	a.stateMu.Lock()
	defer a.stateMu.Unlock()
	wildcard := false
	type explicit struct {
		space string
		seq   uint64
	}
	var given []explicit
	for _, c := range req.Cutoffs {
		i := strings.LastIndexByte(c, ':')
		if i <= 0 {
			return api.RevokePlan{}, fmt.Errorf("%w: cut-off %q: want SPACE:SEQ (or '*:0')", ErrBadRequest, c)
		}
		seq, err := strconv.ParseUint(c[i+1:], 10, 64)
		if err != nil {
			return api.RevokePlan{}, fmt.Errorf("%w: cut-off %q: bad seq", ErrBadRequest, c)
		}
		if c[:i] == "*" {
			wildcard, plan.DefaultCutoff = true, seq
			continue
		}
		sp, err := a.resolveSpace(c[:i])
		if err != nil {
			return api.RevokePlan{}, err
		}
		given = append(given, explicit{sp.id.String(), seq})
	}
	if !wildcard {
		for _, sp := range a.sortedSpaces() {
			if hd, ok := sp.heads[dev]; ok && hd.Seq > 0 {
				plan.Cutoffs[sp.id.String()] = hd.Seq
			}
		}
	}
	for _, g := range given {
		plan.Cutoffs[g.space] = g.seq
	}
	if len(plan.Cutoffs) > crypto.MaxRevocationCutoffs {
		return api.RevokePlan{}, fmt.Errorf("%w: %d cut-offs, more than a revocation holds (%d)", ErrBadRequest, len(plan.Cutoffs), crypto.MaxRevocationCutoffs)
	}
	return plan, nil
}

// SubmitRevocation stores a signed revocation and applies it here; sync then
// spreads it to every peer (a mesh object) and bundles carry it.
func (a *Agent) SubmitRevocation(blob []byte) (api.RevokeResult, error) {
	r, err := crypto.ParseRevocation(blob)
	if err != nil {
		return api.RevokeResult{}, fmt.Errorf("%w: not a valid revocation: %v", ErrBadRequest, err)
	}
	cert := a.trustNow().certs[r.Device]
	if cert != nil && cert.Bureau.Fingerprint() != r.Bureau {
		return api.RevokeResult{}, fmt.Errorf("%w: device %s belongs to bureau %s; only that bureau's key can revoke it", ErrForbidden, r.Device, cert.Bureau.Fingerprint())
	}
	added, dropped, err := a.addRevocation(blob)
	if err != nil {
		if errors.Is(err, crypto.ErrUntrusted) {
			return api.RevokeResult{}, fmt.Errorf("%w: %v (add the bureau with `fieldsync trust add`)", ErrForbidden, err)
		}
		return api.RevokeResult{}, err
	}
	if added {
		a.drainAfterRevocation()
	}
	res := api.RevokeResult{Device: r.Device.String(), Added: added, Cutoffs: map[string]uint64{}, Default: r.DefaultCutoff, Dropped: nonNilGaps(dropped)}
	for s, c := range r.Cutoffs {
		res.Cutoffs[s.String()] = c
	}
	a.notify()
	return res, nil
}

func nonNilGaps(g []api.Gap) []api.Gap {
	if g == nil {
		return []api.Gap{}
	}
	return g
}

// AddRevocation stores a bureau-signed revocation after checking it, and
// removes what the device wrote past its cut-offs (addRevocation).
func (a *Agent) AddRevocation(blob []byte) (bool, error) {
	added, _, err := a.addRevocation(blob)
	if err == nil && added {
		a.drainAfterRevocation()
	}
	return added, err
}

// drainAfterRevocation applies the changes that waited for envelopes a
// revocation has made invalid: what lies past a cut-off no longer needs to
// be held or applied (causal.go validUpTo).
func (a *Agent) drainAfterRevocation() {
	for _, id := range a.SpaceIDs() {
		if err := a.drainPending(id); err != nil && !errors.Is(err, ErrClosed) {
			a.log.Warn("applying waiting envelopes after a revocation", "err", err)
		}
	}
}

// newerRevocation reports whether r should replace old: the later issued
// wins, ties by the signed bytes, so every replica keeps the same one
// (rules.RevocationReplaces).
func newerRevocation(r, old *crypto.Revocation) bool {
	return rules.RevocationReplaces(r, old)
}

// addRevocation stores a revocation and applies it: in every space, the
// device's envelopes past the cut-off are removed and the space's state is
// rebuilt without them, so that replicas that accepted them before the
// revocation arrived end where replicas that learnt of it first do
// (docs/design.md §5: changes past the cut-off are rejected by all peers). It
// returns whether the revocation was new here and what it removed.
//
// A revocation is taken only for a device whose certificate is known here,
// so that it can be checked to come from the device's own bureau (one that
// arrives first is refused and comes again with the next sync round, after
// the certificate). Holding the revocation already, it still cuts what is
// due: a crash between storing a revocation and cutting leaves the cut to
// the next time it arrives, or to the next start (cutRevoked).
func (a *Agent) addRevocation(blob []byte) (bool, []api.Gap, error) {
	r, err := crypto.ParseRevocation(blob)
	if err != nil {
		return false, nil, err
	}
	old, cert := a.trustNow().revs[r.Device], a.trustNow().certs[r.Device]
	// The device's pinned certificate names the only bureau that may revoke
	// it (certs.go): a trusted one, or one a space held here is released to
	// (scoped trust: a bureau revoking its own device).
	trust := a.trust
	if cert != nil && cert.Bureau.Fingerprint() == r.Bureau {
		trust = a.trustAnywhere(cert)
	}
	if err := r.Verify(trust); err != nil {
		return false, nil, err
	}
	if cert == nil {
		return false, nil, fmt.Errorf("%w: revocation of device %s, whose certificate this device has not seen yet (taken once it has)", crypto.ErrUntrusted, r.Device)
	}
	if cert.Bureau.Fingerprint() != r.Bureau {
		return false, nil, fmt.Errorf("%w: revocation of device %s by bureau %s, not its own", crypto.ErrUntrusted, r.Device, r.Bureau)
	}
	same := old != nil && bytes.Equal(old.Marshal(), r.Marshal())
	if !same && !newerRevocation(r, old) {
		return false, nil, nil // an older one: the newer stays
	}
	var dropped []api.Gap
	fresh := false
	err = a.withWrite(func(t *tx) error {
		if same && !a.cutDue(r) {
			return nil
		}
		// Settle everything in flight before editing logs directly: the
		// cut writes the store itself and reloads.
		a.com.Barrier()
		if !same {
			if err := a.db.kv.CommitGroups([][]kvEntry{{a.db.entry(revokeKey(r.Device), r.Marshal())}})[0]; err != nil {
				return err
			}
			a.editTrustLocked(func(tt *trustTables) { tt.revs[r.Device] = r })
			fresh = true
		}
		var err error
		if dropped, err = a.cutPast(r); err != nil {
			return err
		}
		a.log.Warn("device revoked", "device", r.Device.String(), "bureau", r.Bureau, "spaces_cut", len(dropped))
		return a.reload()
	})
	return fresh, dropped, err
}

// cutDue reports whether some space holds envelopes of r's device past its
// cut-off. stateMu held.
func (a *Agent) cutDue(r *crypto.Revocation) bool {
	for _, sp := range a.spaces {
		if _, due := rules.CutFrom(r, sp.id, sp.heads[r.Device].Seq); due {
			return true
		}
	}
	return false
}

// cutPast removes r's device's envelopes past its cut-offs in every space
// and rebuilds those spaces. stateMu held, nothing in flight; the caller
// reloads.
func (a *Agent) cutPast(r *crypto.Revocation) ([]api.Gap, error) {
	var dropped []api.Gap
	for _, sp := range a.sortedSpaces() {
		hd := sp.heads[r.Device]
		from, due := rules.CutFrom(r, sp.id, hd.Seq)
		if !due {
			continue
		}
		if err := a.cutLog(sp, r.Device, from, nil); err != nil {
			return dropped, fmt.Errorf("revocation: %w", err)
		}
		dropped = append(dropped, api.Gap{Space: sp.id.String(), Author: r.Device.String(), From: from, To: hd.Seq})
	}
	sort.Slice(dropped, func(i, j int) bool { return dropped[i].Space < dropped[j].Space })
	return dropped, nil
}

// cutRevoked applies, at start, every cut a stored revocation calls for and
// that is not done yet (a crash came between storing and cutting).
func (a *Agent) cutRevoked() error {
	revs := make([]*crypto.Revocation, 0, len(a.trustNow().revs))
	for _, r := range a.trustNow().revs {
		revs = append(revs, r)
	}
	for _, r := range revs {
		var due bool
		a.withRead(func() error { due = a.cutDue(r); return nil })
		if !due {
			continue
		}
		if _, _, err := a.addRevocation(r.Marshal()); err != nil {
			return fmt.Errorf("apply the stored revocation of %s: %w", r.Device, err)
		}
	}
	return nil
}

// cutLog cuts author's log in the space from seq `from` on — its envelopes
// and pending marks deleted, its head moved below, its routing records
// dropped — writes extra with it, rebuilds the space's state without what
// was cut, and dates the epochs again from the key shares left. Revocations
// and fork evidence both cut this way. stateMu held with nothing in flight;
// the caller reloads.
func (a *Agent) cutLog(sp *spaceState, author crypto.DeviceID, from uint64, extra []kvEntry) error {
	if hd := sp.heads[author]; hd.Seq >= from {
		cert := a.trustNow().certs[author]
		for s := from; s <= hd.Seq; s++ {
			extra = append(extra, kvEntry{Key: envKey(sp.id, author, s), Del: true}, kvEntry{Key: pendingKey(sp.id, author, s), Del: true})
			// A key share being cut no longer gives its recipient the
			// epoch (replicas that learnt of the cut first never accepted
			// it): forget that it was given, so that a device holding the
			// epoch wraps it again — else changes others wrote under it
			// stay unreadable there. What the cut author holds is kept.
			env, err := a.db.get(envKey(sp.id, author, s))
			if err != nil || cert == nil {
				continue
			}
			if h, body, err := crypto.Verify(env, cert.Device); err == nil && h.Kind == crypto.KindKeyShare {
				if share, err := crypto.ParseKeyShare(body); err == nil && share.Recipient != author {
					sk := shareKey{recipient: share.Recipient, epoch: share.Epoch}
					delete(sp.shared, sk)
					extra = append(extra, kvEntry{Key: sharedKey(sp.id, sk), Del: true})
				}
			}
		}
		nh := head{Seq: from - 1}
		if nh.Seq > 0 {
			prev, err := a.db.get(envKey(sp.id, author, nh.Seq))
			if err != nil {
				return fmt.Errorf("read seq %d: %w", nh.Seq, err)
			}
			nh.Hash = crypto.Hash(prev)
			extra = append(extra, a.db.entry(headKey(sp.id, author), nh.marshal()))
		} else {
			extra = append(extra, kvEntry{Key: headKey(sp.id, author), Del: true})
		}
	}
	if _, _, err := a.rebuildSpace(sp, extra); err != nil {
		return fmt.Errorf("rebuild space %s: %w", sp.id, err)
	}
	a.dropRoutings(sp, author, from-1)
	if err := a.recomputeEpochStarts(sp); err != nil {
		return err
	}
	return a.db.kv.CommitGroups([][]kvEntry{{a.db.entry(spaceKey(sp.id), sp.meta.marshal())}})[0]
}
