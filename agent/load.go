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

// load reads every space's state and the trust tables into memory and
// checks that every envelope the heads acknowledge is present
// (docs/design.md §7). The caller holds stateMu or has not started serving
// yet.
func (a *Agent) load() error {
	// A certificate from before version 2 is countersigned now (certs.go).
	a.upgradeOwnCert()
	a.cache.clear()
	// The search index is derived from the state: built again from it.
	a.findReset()
	spaces, err := a.loadSpaces()
	if err != nil {
		return err
	}
	a.spaces = spaces
	// The trust tables are built afresh and published at once when they
	// are whole: readers outside stateMu (signature checks, handshakes)
	// never see a half-loaded one.
	tt, err := a.loadTrust()
	if err != nil {
		return err
	}
	a.trustTab.Store(tt)
	if err := a.settleEpochs(); err != nil {
		return err
	}
	// A key adopted from a share just before a crash may not have been
	// wrapped on yet: the first batch received checks (wrapIfDue).
	a.wrapDue.Store(true)
	if err := a.loadClock(); err != nil {
		return err
	}
	return a.checkAcknowledged(false)
}

// spaceSet is the spaces being loaded, by ID.
type spaceSet map[crypto.SpaceID]*spaceState

func (m spaceSet) get(id crypto.SpaceID) *spaceState {
	s := m[id]
	if s == nil {
		s = &spaceState{id: id, ctx: crdt.NewContext(), heads: map[crypto.DeviceID]head{}, keys: map[crypto.KeyID]*crypto.SpaceKey{}}
		m[id] = s
	}
	return s
}

// loadSpaces reads each space's metadata, causal context, heads, epoch keys
// and the shares it already wrote. Any of them unreadable fails the load:
// the store needs `fieldsync repair`.
func (a *Agent) loadSpaces() (spaceSet, error) {
	m := spaceSet{}
	steps := []struct {
		prefix byte
		load   func(m spaceSet, k, v []byte) error
	}{
		{pfxSpace, loadSpaceMeta},
		{pfxContext, loadContext},
		{pfxHead, loadHead},
		{pfxEpoch, loadEpochKey},
		{pfxShared, loadShared},
	}
	erased := a.tombstoneIDs() // their keys are skipped (erase.go)
	for _, st := range steps {
		err := a.db.scan([]byte{st.prefix}, func(k, v []byte) error {
			if ofErased(erased, k) {
				return nil
			}
			return st.load(m, k, v)
		}, nil)
		if err != nil {
			return nil, err
		}
	}
	for _, s := range m {
		// Our profile is the first or second envelope we write in a space
		// (after the routing record when we created it).
		_, s.profiled = s.heads[a.dev]
	}
	// Receipts owed from before a stop are written by the worker soon
	// after (agent.go, Open; receipts.go).
	owed, err := a.loadOwed(m, erased)
	if err != nil {
		return nil, err
	}
	a.receiptsDue.Store(owed)
	return m, nil
}

func loadSpaceMeta(m spaceSet, k, v []byte) error {
	var id crypto.SpaceID
	if len(k) != 17 {
		return fmt.Errorf("space key of %d bytes", len(k))
	}
	copy(id[:], k[1:])
	if err := json.Unmarshal(v, &m.get(id).meta); err != nil {
		return fmt.Errorf("space %s metadata: %v", id, err)
	}
	return nil
}

func loadContext(m spaceSet, k, v []byte) error {
	var id crypto.SpaceID
	copy(id[:], k[1:])
	c, err := crdt.UnmarshalContext(v)
	if err != nil {
		return fmt.Errorf("space %s context: %w", id, err)
	}
	m.get(id).ctx = c
	return nil
}

func loadHead(m spaceSet, k, v []byte) error {
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
	m.get(id).heads[author] = h
	return nil
}

func loadEpochKey(m spaceSet, k, v []byte) error {
	var id crypto.SpaceID
	copy(id[:], k[1:17])
	sk, began, err := parseEpochValue(v)
	if err != nil {
		return fmt.Errorf("space %s epoch key: %w", id, err)
	}
	s := m.get(id)
	s.keys[sk.ID()] = sk
	if s.epochAt == nil {
		s.epochAt = map[crypto.KeyID]uint64{}
	}
	s.epochAt[sk.ID()] = began
	return nil
}

func loadShared(m spaceSet, k, _ []byte) error {
	if len(k) != 1+16+16+16 {
		return nil
	}
	var id crypto.SpaceID
	var sk shareKey
	copy(id[:], k[1:17])
	copy(sk.recipient[:], k[17:33])
	copy(sk.epoch[:], k[33:49])
	m.get(id).markShared(sk)
	return nil
}

// loadTrust builds the trust tables from the store: release lists (from
// the spaces loaded), fork evidence, certificates, certificate conflicts
// and revocations. It also notes officer names from verified profiles.
// Unreadable evidence or profiles are counted as corrupt and skipped.
func (a *Agent) loadTrust() (*trustTables, error) {
	tt := newTrustTables()
	tt.certs[a.dev] = a.cert // our own certificate is known to ourselves like any other
	for _, s := range a.spaces {
		setReleased(tt, s)
	}
	steps := []struct {
		prefix byte
		load   func(tt *trustTables, k, v []byte) error
	}{
		{pfxProfile, a.loadProfile},
		{pfxFork, loadForkPoint},
		{pfxCert, a.loadCert},
		{pfxTombstone, a.loadTombstone},
	}
	erased := a.tombstoneIDs() // their keys are skipped (erase.go)
	for _, st := range steps {
		err := a.db.scan([]byte{st.prefix}, func(k, v []byte) error {
			if ofErased(erased, k) {
				return nil
			}
			return st.load(tt, k, v)
		}, a.countCorrupt)
		if err != nil {
			return nil, err
		}
	}
	if err := a.loadCertConflicts(tt); err != nil { // needs the certificates
		return nil, err
	}
	err := a.db.scan([]byte{pfxRevoke}, func(k, v []byte) error { return loadRevocation(tt, k, v) }, a.countCorrupt)
	return tt, err
}

func (a *Agent) loadProfile(_ *trustTables, k, v []byte) error {
	if len(k) != 33 {
		return nil
	}
	var id crypto.SpaceID
	var author crypto.DeviceID
	copy(id[:], k[1:17])
	copy(author[:], k[17:33])
	a.setOfficer(id, author, string(v))
	return nil
}

// loadForkPoint notes where fork evidence freezes its author.
func loadForkPoint(tt *trustTables, k, v []byte) error {
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
	tt.frozen[gapKey{id, author}] = min(h1.Seq, h2.Seq)
	return nil
}

func (a *Agent) loadCert(tt *trustTables, _, v []byte) error {
	c, err := crypto.ParseCertificate(v)
	if err != nil {
		return fmt.Errorf("stored certificate: %w", err)
	}
	if id := c.Device.ID(); id != a.dev { // ours is the data dir's (open)
		tt.certs[id] = c
	}
	return nil
}

func loadRevocation(tt *trustTables, _, v []byte) error {
	r, err := crypto.ParseRevocation(v)
	if err != nil {
		return fmt.Errorf("stored revocation: %w", err)
	}
	tt.revs[r.Device] = r
	return nil
}

// settleEpochs picks each space's current epoch from the lists of its key
// shares. A store written before epochs were ordered causally has no lists
// yet: they are built from the log once (certificates are loaded by then)
// and stored.
func (a *Agent) settleEpochs() error {
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
	if len(migrated) > 0 {
		if err := a.db.kv.CommitGroups([][]kvEntry{migrated})[0]; err != nil {
			return fmt.Errorf("store the epochs' lists: %w", err)
		}
	}
	return nil
}

// loadClock restores the HLC: never run backwards across restarts — but
// never start beyond physical time plus the drift limit either: a clock
// that far ahead was pushed (by an agent before issue 12, which let a key
// share dated years ahead move it) or this device's own clock has been set
// back, and staying there would date every write where peers refuse it as
// past its author's certificate. Causal order does not depend on it (dots
// and the epochs' lists do), so it restarts from physical time.
func (a *Agent) loadClock() error {
	if b, err := a.db.get(metaKey("hlc-others")); err == nil && len(b) == 8 {
		a.othersHLC = crdt.UnpackTimestamp(beUint64(b)) // autoerase.go
	} else if err != nil && !errors.Is(err, errKVNotFound) {
		return fmt.Errorf("hlc-others: %w", err)
	}
	b, err := a.db.get(metaKey("hlc"))
	switch {
	case errors.Is(err, errKVNotFound):
		return nil
	case err != nil:
		return fmt.Errorf("hlc: %w", err)
	case len(b) != 8:
		return nil
	}
	a.clock.Last = crdt.UnpackTimestamp(beUint64(b))
	phys := a.physMillis()
	if limit := phys + a.cfg.MaxDrift.Milliseconds(); a.clock.Last.Wall > limit {
		// Restarted from physical time, but never below this device's own
		// last envelope: an author's log stays in HLC order (its own clock
		// ran ahead and was set back; a pushed clock no write used goes).
		restart := crdt.Timestamp{Wall: phys}
		if own := a.ownLastHLC(); own.Pack() > restart.Pack() {
			restart = own
		}
		a.log.Warn("the stored clock is ahead of this device's clock beyond the drift limit; restarting it from this device's clock, or its own last envelope if later (check the system clock if it was set back)",
			"stored", a.clock.Last.String(), "now", crdt.Timestamp{Wall: phys}.String(), "restart", restart.String())
		a.clock.Last = restart
	}
	return nil
}

// ownLastHLC is the latest HLC of this device's own envelopes, the head of
// its log in each space (zero when it wrote none). a.spaces loaded.
func (a *Agent) ownLastHLC() crdt.Timestamp {
	var out crdt.Timestamp
	for _, sp := range a.spaces {
		hd := sp.heads[a.dev]
		if hd.Seq == 0 {
			continue
		}
		env, err := a.db.get(envKey(sp.id, a.dev, hd.Seq))
		if err != nil {
			continue // reported by the open-time check
		}
		if h, err := crypto.ParseHeader(env); err == nil && h.HLC > out.Pack() {
			out = crdt.UnpackTimestamp(h.HLC)
		}
	}
	return out
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
			err := a.db.kv.ScanKeysFrom(envAuthorPrefix(s.id, author), envKey(s.id, author, from), func(k []byte) error {
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
