package agent

import (
	"encoding/json"
	"errors"
	"fmt"

	"fieldsync/agent/api"
	"fieldsync/crdt"
	"fieldsync/crypto"
)

func jsonMarshal(v any) ([]byte, error)   { return json.Marshal(v) }
func jsonUnmarshal(b []byte, v any) error { return json.Unmarshal(b, v) }

// load reads every space's state into memory and checks that every envelope
// the heads acknowledge is present (docs/design.md §7). The caller holds writeMu or
// has not started serving yet.
func (a *Agent) load() error {
	// A certificate from before version 2 is countersigned now (certs.go).
	a.upgradeOwnCert()
	a.spaces = map[crypto.SpaceID]*spaceState{}
	a.cache.clear()
	get := func(id crypto.SpaceID) *spaceState {
		s := a.spaces[id]
		if s == nil {
			s = &spaceState{id: id, ctx: crdt.NewContext(), heads: map[crypto.DeviceID]head{}, keys: map[crypto.KeyID]*crypto.SpaceKey{}}
			a.spaces[id] = s
		}
		return s
	}
	// Space metadata.
	err := a.db.scan([]byte{pfxSpace}, func(k, v []byte) error {
		var id crypto.SpaceID
		if len(k) != 17 {
			return fmt.Errorf("space key of %d bytes", len(k))
		}
		copy(id[:], k[1:])
		s := get(id)
		if err := json.Unmarshal(v, &s.meta); err != nil {
			return fmt.Errorf("space %s metadata: %v", id, err)
		}
		return nil
	}, nil)
	if err != nil {
		return err
	}
	// Causal contexts.
	err = a.db.scan([]byte{pfxContext}, func(k, v []byte) error {
		var id crypto.SpaceID
		copy(id[:], k[1:])
		c, err := crdt.UnmarshalContext(v)
		if err != nil {
			return fmt.Errorf("space %s context: %w", id, err)
		}
		get(id).ctx = c
		return nil
	}, nil)
	if err != nil {
		return err
	}
	// Heads.
	err = a.db.scan([]byte{pfxHead}, func(k, v []byte) error {
		if len(k) != 33 {
			return fmt.Errorf("head key of %d bytes", len(k))
		}
		var id crypto.SpaceID
		var author crypto.DeviceID
		copy(id[:], k[1:17])
		copy(author[:], k[17:33])
		h, err := unmarshalHead(v)
		if err != nil {
			return err
		}
		get(id).heads[author] = h
		return nil
	}, nil)
	if err != nil {
		return err
	}
	// Epoch keys.
	err = a.db.scan([]byte{pfxEpoch}, func(k, v []byte) error {
		var id crypto.SpaceID
		copy(id[:], k[1:17])
		sk, began, err := parseEpochValue(v)
		if err != nil {
			return fmt.Errorf("space %s epoch key: %w", id, err)
		}
		s := get(id)
		s.keys[sk.ID()] = sk
		if s.epochAt == nil {
			s.epochAt = map[crypto.KeyID]uint64{}
		}
		s.epochAt[sk.ID()] = began
		return nil
	}, nil)
	if err != nil {
		return err
	}
	err = a.db.scan([]byte{pfxShared}, func(k, v []byte) error {
		if len(k) != 1+16+16+16 {
			return nil
		}
		var id crypto.SpaceID
		var sk shareKey
		copy(id[:], k[1:17])
		copy(sk.recipient[:], k[17:33])
		copy(sk.epoch[:], k[33:49])
		get(id).markShared(sk)
		return nil
	}, nil)
	if err != nil {
		return err
	}
	a.statMu.Lock()
	a.released = map[crypto.SpaceID][]string{}
	a.statMu.Unlock()
	for _, s := range a.spaces {
		a.noteReleased(s)
		// Our profile is the first or second envelope we write in a space
		// (after the routing record when we created it).
		_, s.profiled = s.heads[a.dev]
	}
	// Officer names from verified profiles.
	err = a.db.scan([]byte{pfxProfile}, func(k, v []byte) error {
		if len(k) != 33 {
			return nil
		}
		var id crypto.SpaceID
		var author crypto.DeviceID
		copy(id[:], k[1:17])
		copy(author[:], k[17:33])
		a.setOfficer(id, author, string(v))
		return nil
	}, a.countCorrupt)
	if err != nil {
		return err
	}
	// Fork evidence: the freeze points.
	err = a.db.scan([]byte{pfxFork}, func(k, v []byte) error {
		if len(k) < 33 {
			return nil
		}
		var id crypto.SpaceID
		var author crypto.DeviceID
		copy(id[:], k[1:17])
		copy(author[:], k[17:33])
		e1, e2, err := parseEvidence(v)
		if err != nil {
			return nil
		}
		h1, err1 := crypto.ParseHeader(e1)
		h2, err2 := crypto.ParseHeader(e2)
		if err1 != nil || err2 != nil {
			return nil
		}
		a.statMu.Lock()
		a.frozen[gapKey{id, author}] = min(h1.Seq, h2.Seq)
		a.statMu.Unlock()
		return nil
	}, a.countCorrupt)
	if err != nil {
		return err
	}
	// Certificates and revocations.
	err = a.db.scan([]byte{pfxCert}, func(k, v []byte) error {
		c, err := crypto.ParseCertificate(v)
		if err != nil {
			return fmt.Errorf("stored certificate: %w", err)
		}
		if id := c.Device.ID(); id != a.dev { // ours is the data dir's (open)
			a.statMu.Lock()
			a.certs[id] = c
			a.statMu.Unlock()
		}
		return nil
	}, a.countCorrupt)
	if err != nil {
		return err
	}
	if err := a.loadCertConflicts(); err != nil {
		return err
	}
	err = a.db.scan([]byte{pfxRevoke}, func(k, v []byte) error {
		r, err := crypto.ParseRevocation(v)
		if err != nil {
			return fmt.Errorf("stored revocation: %w", err)
		}
		a.revs[r.Device] = r
		return nil
	}, a.countCorrupt)
	if err != nil {
		return err
	}
	// Epochs: the current one of each space, from the lists of its key
	// shares. A store written before epochs were ordered causally has no
	// lists yet: build them from the log once (certificates are loaded).
	var migrated []kvEntry
	for _, s := range a.sortedSpaces() {
		if s.meta.Epochs == nil && len(s.keys) > 0 {
			if err := a.recomputeEpochStarts(s); err != nil {
				return fmt.Errorf("space %s epochs: %w", s.id, err)
			}
			migrated = append(migrated, a.db.entry(spaceKey(s.id), s.meta.marshal()))
		}
		s.pickCurrent()
	}
	// A key adopted from a share just before a crash may not have been
	// wrapped on yet: the first batch received checks (wrapIfDue).
	a.wrapDue.Store(true)
	if len(migrated) > 0 {
		if err := a.db.kv.commitGroups([][]kvEntry{migrated})[0]; err != nil {
			return fmt.Errorf("store the epochs' lists: %w", err)
		}
	}
	// HLC: never run backwards across restarts — but never start beyond
	// physical time plus the drift limit either: a clock that far ahead
	// was pushed (by an agent before issue 12, which let a key share dated
	// years ahead move it) or this device's own clock has been set back,
	// and staying there would date every write where peers refuse it as
	// past its author's certificate. Causal order does not depend on it
	// (dots and the epochs' lists do), so it restarts from physical time.
	if b, err := a.db.get(metaKey("hlc")); err == nil && len(b) == 8 {
		a.clock.Last = crdt.UnpackTimestamp(beUint64(b))
		phys := a.physMillis()
		if limit := phys + a.cfg.MaxDrift.Milliseconds(); a.clock.Last.Wall > limit {
			a.log.Warn("the stored clock is ahead of this device's clock beyond the drift limit; restarting it from this device's clock (check the system clock if it was set back)",
				"stored", a.clock.Last.String(), "now", crdt.Timestamp{Wall: phys}.String())
			a.clock.Last = crdt.Timestamp{Wall: phys}
		}
	} else if err != nil && !errors.Is(err, errKVNotFound) {
		return fmt.Errorf("hlc: %w", err)
	}
	return a.checkAcknowledged(false)
}

// openCheckDepth is how many of the newest seqs of each author's log the
// open-time check looks up. A truncated write-ahead log or a lost value-log
// tail loses the newest writes first; checking every envelope would read the
// whole store (seconds and hundreds of MB of mapped tables at a million
// changes), so that is left to `fieldsync repair` (full = true).
const openCheckDepth = 256

// checkAcknowledged compares every head with the envelopes present: a seq at
// or below a head whose envelope is gone was acknowledged and then lost
// (bit rot, a truncated log). It is reported in status and, since heads then
// stop below the loss, fetched again by sync. With full false only the
// newest openCheckDepth seqs of each log are looked up.
func (a *Agent) checkAcknowledged(full bool) error {
	var missing []api.Gap
	for _, s := range a.sortedSpaces() {
		for author, h := range s.heads {
			from := uint64(1)
			if !full && h.Seq > openCheckDepth {
				from = h.Seq - openCheckDepth + 1
			}
			next := from
			err := a.db.kv.scanKeysFrom(envAuthorPrefix(s.id, author), envKey(s.id, author, from), func(k []byte) error {
				_, _, seq, ok := parseEnvKey(k)
				if !ok || seq > h.Seq {
					return errStopScan
				}
				if seq > next {
					missing = append(missing, api.Gap{Space: s.id.String(), Author: author.String(), From: next, To: seq - 1})
				}
				next = seq + 1
				return nil
			})
			if err != nil {
				return err
			}
			if next <= h.Seq {
				missing = append(missing, api.Gap{Space: s.id.String(), Author: author.String(), From: next, To: h.Seq})
			}
		}
	}
	if len(missing) > 0 {
		a.log.Error("acknowledged envelopes are missing from the store; they will be fetched again from peers", "ranges", len(missing))
	}
	a.statMu.Lock()
	a.missing = missing
	a.statMu.Unlock()
	return nil
}

// recordCache holds the newest state of recently written records, including
// writes not yet committed, so a write can build on the one before it without
// waiting for the disk. Entries of committed writes may be evicted.
type recordCache struct {
	max     int
	entries map[string]cacheEntry
}

type cacheEntry struct {
	rec     *crdt.Record
	writeID uint64
}

func newRecordCache(max int) *recordCache {
	return &recordCache{max: max, entries: map[string]cacheEntry{}}
}

func (c *recordCache) clear() { c.entries = map[string]cacheEntry{} }

func (c *recordCache) get(key string) (*crdt.Record, bool) {
	e, ok := c.entries[key]
	return e.rec, ok
}

func (c *recordCache) put(key string, rec *crdt.Record, writeID, committed uint64) {
	c.entries[key] = cacheEntry{rec: rec, writeID: writeID}
	if len(c.entries) > c.max {
		for k, e := range c.entries {
			if e.writeID <= committed {
				delete(c.entries, k)
			}
			if len(c.entries) <= c.max/2 {
				break
			}
		}
	}
}

func (a *Agent) setOfficer(space crypto.SpaceID, author crypto.DeviceID, name string) {
	a.statMu.Lock()
	a.officers[gapKey{space, author}] = name
	a.statMu.Unlock()
}
