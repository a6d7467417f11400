package agent

// Cold envelopes (docs/storage.md, "Cold envelopes"; docs/format.md, "Cold
// envelope (version 1)"; docs/design.md §7, "Bounded storage"): a pruned
// envelope is stored as its signature, its segments' nonces and hashes and
// its compressed plaintexts (crypto.FreezeEnvelope), inside the store-key
// sealing every value gets, and sealed again to the exact bytes it was
// whenever it is read. The one choke point is sealedKV.open: every reader
// of E keys (sync, bundles, backups, history, rebuilds, erasures, load)
// opens through it and never sees the cold form. Only compaction writes it
// (compact.go), and only after checking that it thaws.

import (
	"errors"
	"fmt"
	"sync"

	"fieldsync/crypto"
)

// coldKeyring finds epoch keys for thawing in the store itself (K keys),
// so that sealedKV.open needs no lock of the agent's: it is called with
// stateMu held and without. Keys read are cached until their space is
// erased (forget).
type coldKeyring struct {
	mu   sync.RWMutex
	keys map[[32]byte]*crypto.SpaceKey // space ‖ key ID
}

func coldCacheKey(space crypto.SpaceID, epoch crypto.KeyID) (k [32]byte) {
	copy(k[:16], space[:])
	copy(k[16:], epoch[:])
	return k
}

// storeRing is the crypto.Keyring of a store: its K keys, cached.
type storeRing struct{ s *sealedKV }

// Key implements crypto.Keyring.
func (sr storeRing) Key(space crypto.SpaceID, epoch crypto.KeyID) (*crypto.SpaceKey, bool) {
	r := &sr.s.cold
	ck := coldCacheKey(space, epoch)
	r.mu.RLock()
	k := r.keys[ck]
	r.mu.RUnlock()
	if k != nil {
		return k, true
	}
	k, err := sr.s.epochKey(space, epoch)
	if err != nil {
		return nil, false
	}
	r.mu.Lock()
	if r.keys == nil {
		r.keys = map[[32]byte]*crypto.SpaceKey{}
	}
	r.keys[ck] = k
	r.mu.Unlock()
	return k, true
}

// forget drops the cached keys of an erased space.
func (r *coldKeyring) forget(space crypto.SpaceID) {
	r.mu.Lock()
	defer r.mu.Unlock()
	for ck := range r.keys {
		if [16]byte(ck[:16]) == space {
			delete(r.keys, ck)
		}
	}
}

// epochKey reads one epoch key from the store (a K key).
func (s *sealedKV) epochKey(space crypto.SpaceID, epoch crypto.KeyID) (*crypto.SpaceKey, error) {
	v, err := s.kv.Get(epochKey(space, epoch))
	if err != nil {
		return nil, err
	}
	pt, err := s.openRaw(epochKey(space, epoch), v)
	if err != nil {
		return nil, err
	}
	k, _, err := parseEpochValue(pt)
	clear(pt)
	if err != nil || k.ID() != epoch {
		return nil, fmt.Errorf("%w: epoch key %s of space %s", errCorrupt, epoch, space)
	}
	return k, nil
}

// errColdThaw wraps a cold envelope that does not thaw; it is also
// errCorrupt, so every reader handles it as a corrupt stored envelope.
var errColdThaw = errors.New("cold envelope does not thaw")

// thaw rebuilds the envelope a cold value under key stands for.
func (s *sealedKV) thaw(key, cold []byte) ([]byte, error) {
	env, err := crypto.ThawEnvelope(cold, storeRing{s})
	if err != nil {
		what := fmt.Sprintf("key %x", key)
		if space, author, seq, ok := parseEnvKey(key); ok {
			what = fmt.Sprintf("space %s author %s seq %d", space, author, seq)
		}
		return nil, fmt.Errorf("%w: %w: envelope %s: %w (counted as a corrupt value: stop the agent and run `fieldsync repair`, then start it to fetch the envelope again from peers)", errCorrupt, errColdThaw, what, err)
	}
	return env, nil
}

// freeze returns the cold form of env, or nil when it has none here: not a
// version 2 change, or an epoch key the store does not hold (the check
// thaws it through the same keyring as open).
func (s *sealedKV) freeze(env []byte) []byte {
	cold, err := crypto.FreezeEnvelope(env, storeRing{s})
	if err != nil {
		return nil
	}
	return cold
}

// scanStored calls fn with every envelope under prefix, thawed, and
// whether it is stored cold and how many bytes it takes as stored (before
// the store's own sealing). A value that fails to open or thaw goes to
// onCorrupt and is skipped.
func (s *sealedKV) scanStored(prefix []byte, fn func(key, env []byte, cold bool, size int) error, onCorrupt func(key []byte)) error {
	return s.kv.Scan(prefix, func(k, v []byte) error {
		pt, err := s.openRaw(k, v)
		cold := err == nil && len(k) > 0 && k[0] == pfxEnvelope && crypto.IsCold(pt)
		size := len(pt)
		if cold {
			pt, err = s.thaw(k, pt)
		}
		if err != nil {
			if onCorrupt != nil {
				onCorrupt(k)
				return nil
			}
			return err
		}
		return fn(k, pt, cold, size)
	})
}

// anyCut reports whether a version 2 envelope has a cut segment: only
// those are frozen (a whole envelope is kept as received).
func anyCut(env []byte) bool {
	infos, err := crypto.Segments(env)
	if err != nil {
		return false
	}
	for _, s := range infos {
		if s.Erased {
			return true
		}
	}
	return false
}
