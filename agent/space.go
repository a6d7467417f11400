package agent

import (
	"crypto/rand"
	"errors"
	"fmt"
	"slices"
	"sort"
	"strings"
	"time"

	"golang.org/x/text/unicode/norm"

	"fieldsync/agent/api"
	"fieldsync/crdt"
	"fieldsync/crypto"
)

// API-level errors; handlers map them to codes (api.go).
var (
	ErrNotFound   = errors.New("not found")
	ErrBadRequest = errors.New("bad request")
	ErrAmbiguous  = errors.New("ambiguous")
	ErrForbidden  = errors.New("not allowed")
	ErrConflict   = errors.New("conflict")
)

// NFC normalises an identifier (record IDs, field names, space names).
func NFC(s string) string { return norm.NFC.String(s) }

// resolveSpace finds a space by ID, unique ID prefix (≥ 6 characters) or
// unique name (docs/design.md §8). stateMu held.
func (a *Agent) resolveSpace(ref string) (*spaceState, error) {
	ref = NFC(strings.TrimSpace(ref))
	if ref == "" {
		return nil, fmt.Errorf("%w: no space given", ErrBadRequest)
	}
	if id, err := crypto.ParseSpaceID(strings.ToLower(ref)); err == nil {
		if s := a.spaces[id]; s != nil {
			return s, nil
		}
		if e := a.erasedSpace(id); e != nil {
			return nil, fmt.Errorf("%w: space %s was erased on %s (see `fieldsync space list --erased`)", ErrNotFound, id, e.IssuedAt.Format(time.RFC3339))
		}
	}
	var byPrefix, byName []*spaceState
	lower := strings.ToLower(ref)
	for _, s := range a.sortedSpaces() {
		if len(lower) >= 6 && strings.HasPrefix(s.id.String(), lower) {
			byPrefix = append(byPrefix, s)
		}
		if s.meta.Name != "" && s.meta.Name == ref {
			byName = append(byName, s)
		}
	}
	match := byPrefix
	if len(match) == 0 {
		match = byName
	}
	switch len(match) {
	case 0:
		return nil, fmt.Errorf("%w: no space %q (see `fieldsync space list`)", ErrNotFound, ref)
	case 1:
		return match[0], nil
	}
	var names []string
	for _, s := range match {
		names = append(names, fmt.Sprintf("%s (%s)", s.id, s.meta.Name))
	}
	return nil, fmt.Errorf("%w: %q matches %d spaces: %s; give the space ID", ErrAmbiguous, ref, len(match), strings.Join(names, ", "))
}

// resolveBureau finds a trusted bureau by name or fingerprint.
func (a *Agent) resolveBureau(ref string) (crypto.BureauPublic, error) {
	ref = strings.TrimSpace(ref)
	if b, ok := a.trust.Lookup(strings.ToLower(ref)); ok {
		return b, nil
	}
	var found []crypto.BureauPublic
	for _, b := range a.trust.List() {
		if strings.EqualFold(b.Name, ref) {
			found = append(found, b)
		}
	}
	switch len(found) {
	case 0:
		return crypto.BureauPublic{}, fmt.Errorf("%w: bureau %q is not trusted by this device (add its key with `fieldsync trust add`)", ErrBadRequest, ref)
	case 1:
		return found[0], nil
	}
	return crypto.BureauPublic{}, fmt.Errorf("%w: several trusted bureaus are named %q; give the fingerprint", ErrAmbiguous, ref)
}

// CreateSpace creates a space owned by this device's bureau and released to
// it and the named bureaus: its log starts with the signed routing record
// and this device's profile.
func (a *Agent) CreateSpace(name string, releaseTo []string) (api.Space, error) {
	name = NFC(strings.TrimSpace(name))
	if name == "" || len(name) > 256 {
		return api.Space{}, fmt.Errorf("%w: a space name of 1 to 256 bytes is needed", ErrBadRequest)
	}
	if a.cfg.Relay {
		return api.Space{}, fmt.Errorf("%w: a relay cannot create spaces", ErrForbidden)
	}
	owner := a.cert.Bureau
	released := map[string]string{owner.Fingerprint(): owner.Name}
	for _, r := range releaseTo {
		for _, part := range strings.Split(r, ",") {
			if part = strings.TrimSpace(part); part == "" {
				continue
			}
			b, err := a.resolveBureau(part)
			if err != nil {
				return api.Space{}, err
			}
			released[b.Fingerprint()] = b.Name
		}
	}
	id, nonce, err := crypto.NewSpaceIDFor(owner.Fingerprint(), rand.Reader)
	if err != nil {
		return api.Space{}, err
	}
	key, err := crypto.NewSpaceKey(rand.Reader)
	if err != nil {
		return api.Space{}, err
	}
	meta := spaceMeta{ID: id.String(), Name: name, Owner: owner.Name, OwnerFP: owner.Fingerprint(), Epoch: key.ID().String(), Nonce: nonce}
	for fp := range released {
		meta.ReleaseFP = append(meta.ReleaseFP, fp)
	}
	sort.Strings(meta.ReleaseFP)
	for _, fp := range meta.ReleaseFP {
		meta.Release = append(meta.Release, released[fp])
	}
	routing := crypto.Routing{Space: id, Nonce: nonce, Owner: meta.OwnerFP, Released: meta.ReleaseFP, SealedName: crypto.SealName(key, id, name, rand.Reader)}

	stored := false
	err = a.withWrite(func(t *tx) error {
		t.changed()
		began := a.clock.Now(a.physMillis())
		sp := &spaceState{id: id, meta: meta, ctx: crdt.NewContext(), heads: map[crypto.DeviceID]head{},
			keys: map[crypto.KeyID]*crypto.SpaceKey{}}
		sp.beginEpoch(key, began.Pack())
		a.spaces[id] = sp
		entries, err := a.appendEnvelope(sp, crypto.KindRouting, routing.Marshal(), nil, a.clock.Now(a.physMillis()))
		if err != nil {
			return err
		}
		a.applyRouting(sp, crypto.Header{Author: a.dev, Seq: sp.heads[a.dev].Seq}, routing, owner.Name)
		prof, err := a.ensureProfile(sp)
		if err != nil {
			return err
		}
		ctxBytes, err := sp.ctx.MarshalBinary()
		if err != nil {
			return err
		}
		t.put(entries...)
		t.put(prof...)
		t.put(
			a.db.entry(spaceKey(id), sp.meta.marshal()),
			a.db.entry(epochKey(id, key.ID()), epochValue(key, began.Pack())),
			a.db.entry(ctxKey(id), ctxBytes),
			a.hlcEntry())
		stored = true
		return nil
	})
	if err != nil {
		if stored {
			return api.Space{}, fmt.Errorf("space not stored: %w", err)
		}
		return api.Space{}, err
	}
	a.notify()
	// Officers of released bureaus already known get the key now (a
	// failure leaves it to the next trigger: a new certificate, a key).
	if _, err := a.ShareKeys(); err != nil && !errors.Is(err, ErrClosed) {
		a.log.Warn("wrapping a new space's key to known officers", "space", id.String(), "err", err)
	}
	return spaceView(meta), nil
}

func spaceView(m spaceMeta) api.Space {
	return api.Space{ID: m.ID, Name: m.Name, Owner: m.Owner, Release: slices.Clone(nonNil(m.Release)), UnreadableAuthors: []string{}, Receipts: policyNames[m.receiptMode()], Retention: m.retentionView()}
}

func nonNil(s []string) []string {
	if s == nil {
		return []string{}
	}
	return s
}

// ListSpaces returns every space this device holds, by name then ID.
func (a *Agent) ListSpaces() []api.Space {
	var out []api.Space
	a.withRead(func() error {
		out = make([]api.Space, 0, len(a.spaces))
		for _, s := range a.spaces {
			out = append(out, spaceView(s.meta))
		}
		return nil
	})
	if !a.cfg.Relay {
		for i := range out {
			if id, err := crypto.ParseSpaceID(out[i].ID); err == nil {
				if n, authors, _, err := a.unreadableIn(id); err == nil && n > 0 {
					out[i].Unreadable, out[i].UnreadableAuthors = n, authors
				}
			}
		}
	}
	sort.Slice(out, func(i, j int) bool {
		if out[i].Name != out[j].Name {
			return out[i].Name < out[j].Name
		}
		return out[i].ID < out[j].ID
	})
	return out
}
