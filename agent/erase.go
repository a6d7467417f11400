package agent

// Crypto-erasure of a space (docs/design.md §6, "Erasing a space";
// docs/crypto.md, "Erase marker"; docs/storage.md, "Tombstones and
// purging").
//
// An officer device of the owning bureau signs an erase marker; it travels
// as a mesh object next to revocations (sync, relays, bundles). Every
// replica that accepts it — each judges the author itself — keeps the
// marker as the space's tombstone, refuses the space's envelopes from then
// on (from sync, relays and bundles made before the erasure), and deletes
// everything of the space: envelopes, records, context, heads, metadata,
// epoch keys, profiles, fork evidence, waiting markers, shares given, the
// orphans held in memory and the caches. The keys are dropped from Badger's
// files, not only marked deleted (store.DropPrefixes rewrites every table
// that holds one), and the value log is collected after. A crash between
// storing the tombstone and dropping is finished at the next start.

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"sort"
	"strings"
	"time"

	"fieldsync/agent/api"
	"fieldsync/crypto"
	"fieldsync/internal/rules"
)

// pfxTombstone: T space -> tombstone (JSON): the erase marker of a space
// erased here.
const pfxTombstone = 'T'

// RejectErased counts envelopes of an erased space, refused.
const RejectErased = "erased"

// metaPurge marks that an erasure's purge of the value log is due (set
// with the tombstone, cleared once a pass after a restart ran).
const metaPurge = "purge"

func tombstoneKey(space crypto.SpaceID) []byte { return append([]byte{pfxTombstone}, space[:]...) }

// spacePrefixes are the key prefixes that hold a space's data, each
// followed by the space ID (docs/storage.md). A new per-space key space
// must be added here; the erasure test fails on any key left that names the
// space.
var spacePrefixes = []byte{pfxEnvelope, pfxRecord, pfxContext, pfxHead, pfxSpace, pfxEpoch, pfxProfile, pfxFork, pfxShared, pfxPending, pfxReceipt, pfxOwed, pfxChunk, pfxChunkGone, pfxRecErasure, pfxRecStaged, pfxPartial}

// tombstone is what the T key holds.
type tombstone struct {
	Marker []byte `json:"marker"`
	// Reason is given only on the device that erased, and stays there.
	Reason string `json:"reason,omitempty"`
}

func init() {
	apiExtensions = append(apiExtensions, func(a *Agent, mux *http.ServeMux) {
		post(a, mux, api.PathSpaceErase, func(req api.SpaceEraseRequest) (any, error) { return a.EraseSpace(req) })
		mux.HandleFunc("GET "+api.PathSpaceErased, func(w http.ResponseWriter, r *http.Request) {
			v, err := a.Erased()
			a.reply(w, v, err)
		})
	})
}

func (a *Agent) loadTombstone(tt *trustTables, k, v []byte) error {
	if len(k) != 17 {
		return nil
	}
	var ts tombstone
	if err := json.Unmarshal(v, &ts); err != nil {
		return fmt.Errorf("tombstone %x: %v", k[1:], err)
	}
	e, err := crypto.ParseErasure(ts.Marker)
	if err != nil {
		return fmt.Errorf("tombstone %x: %w", k[1:], err)
	}
	tt.erased[e.Space] = e
	return nil
}

// tombstoneIDs reads the IDs of the spaces erased here from the store:
// load skips every other key of theirs (a crash may leave some between the
// tombstone and the drop, which purgeAtStart finishes).
func (a *Agent) tombstoneIDs() map[crypto.SpaceID]bool {
	m := map[crypto.SpaceID]bool{}
	a.db.kv.ScanKeys([]byte{pfxTombstone}, func(k []byte) error {
		if len(k) == 17 {
			m[crypto.SpaceID(k[1:])] = true
		}
		return nil
	})
	return m
}

// ofErased reports whether store key k belongs to a space in erased.
func ofErased(erased map[crypto.SpaceID]bool, k []byte) bool {
	return len(erased) > 0 && len(k) >= 17 && k[0] != pfxTombstone && erased[crypto.SpaceID(k[1:17])]
}

// erasedSpace returns the tombstone of space, or nil.
func (a *Agent) erasedSpace(space crypto.SpaceID) *crypto.Erasure {
	return a.trustNow().erased[space]
}

// rejectErased is the refusal of an envelope of an erased space.
func (a *Agent) rejectErased(space crypto.SpaceID, e *crypto.Erasure) error {
	return a.reject(RejectErased, fmt.Errorf("space %s was erased on %s by device %s: its envelopes are refused for good", space, e.IssuedAt.Format(time.RFC3339), e.Author))
}

// EraseSpace erases a space here and signs the marker that erases it
// everywhere else (api.PathSpaceErase). Only an officer device of the
// owning bureau may (rules.MayErase), as for the release list.
func (a *Agent) EraseSpace(req api.SpaceEraseRequest) (api.Erased, error) {
	if a.cfg.Relay {
		return api.Erased{}, fmt.Errorf("%w: a relay cannot erase a space", ErrForbidden)
	}
	reason := strings.TrimSpace(req.Reason)
	if reason == "" || len(reason) > 1024 {
		return api.Erased{}, fmt.Errorf("%w: a reason of 1 to 1024 bytes is needed (it stays on this device)", ErrBadRequest)
	}
	var (
		id    crypto.SpaceID
		nonce [16]byte
		owner string
	)
	err := a.withRead(func() error {
		sp, err := a.resolveSpace(req.Space)
		if err != nil {
			return err
		}
		if len(sp.meta.Routings) == 0 || sp.meta.OwnerFP == "" {
			return fmt.Errorf("%w: space %s has no routing record here yet; erase it from a device that holds it", ErrForbidden, sp.id)
		}
		id, nonce, owner = sp.id, sp.meta.Nonce, sp.meta.OwnerFP
		return nil
	})
	if err != nil {
		return api.Erased{}, err
	}
	if err := rules.MayErase(a.cert, a.trustNow().revs[a.dev], owner); err != nil {
		return api.Erased{}, fmt.Errorf("%w: %v", ErrForbidden, err)
	}
	e, err := crypto.NewErasure(a.id, id, nonce, owner, a.cfg.now())
	if err != nil {
		return api.Erased{}, err
	}
	if _, err := a.applyErasure(e, reason); err != nil {
		return api.Erased{}, err
	}
	a.log.Warn("space erased here; the erase marker goes to every peer", "space", id.String())
	a.notify()
	kept := a.erasedSpace(id)
	return a.erasedView(kept, reason), nil
}

// AddErasure checks an erase marker received from a peer or a bundle and,
// if its author may erase the space, erases it here (applyErasure). The
// author's certificate must be held (one that arrives before it is refused
// and comes again with the next round: certificates travel first).
func (a *Agent) AddErasure(blob []byte) (bool, error) {
	if crypto.IsRecordErasure(blob) { // one record's marker travels the same ways (recerase.go)
		return a.AddRecordErasure(blob)
	}
	e, err := a.checkErasure(blob)
	if err != nil {
		return false, &erasureRefused{err}
	}
	if err := a.spaceErasureRoom(e); err != nil {
		a.log.Warn("a device's erase markers of spaces not held here reached the cap: refused", "author", e.Author.String(), "space", e.Space.String())
		return false, &erasureRefused{err}
	}
	return a.applyErasure(e, "")
}

// maxSpaceErasuresPerAuthor caps the tombstones one device's markers may
// leave of spaces this device does not hold. Any officer of a bureau (or its
// laptop, taken over before it is revoked) may mint markers for made-up
// space IDs of its bureau, each a tombstone on every replica, relays
// included; without a cap that fills their disks (docs/design.md §6).
// Markers of spaces held here are not capped: there are only so many.
const maxSpaceErasuresPerAuthor = 4096

// spaceErasureRoom reports whether this device may keep e's tombstone:
// always for a space it holds or a marker it keeps already, else only
// within its author's cap.
func (a *Agent) spaceErasureRoom(e *crypto.Erasure) error {
	if a.erasedSpace(e.Space) != nil {
		return nil // rules.ErasureReplaces judges the two
	}
	held := false
	a.withRead(func() error {
		_, held = a.spaces[e.Space]
		_, orphan := a.orphans[e.Space]
		held = held || orphan
		return nil
	})
	if held {
		return nil
	}
	n := 0
	for _, x := range a.trustNow().erased {
		if x.Author == e.Author {
			n++
		}
	}
	if n >= maxSpaceErasuresPerAuthor {
		return fmt.Errorf("%w: device %s has erased %d spaces this device never held (the cap per device is %d, docs/design.md §6): a device that does this is more likely taken over than busy; its bureau should look at it, and revoke it if so",
			errErasureCap, e.Author, n, maxSpaceErasuresPerAuthor)
	}
	return nil
}

// erasureRefused is an erase marker that failed the receiver's checks (as
// opposed to a local failure while erasing): sync counts it as a
// rejection and goes on.
type erasureRefused struct{ err error }

func (e *erasureRefused) Error() string { return "erase marker refused: " + e.err.Error() }
func (e *erasureRefused) Unwrap() error { return e.err }

// checkErasure parses an erase marker and judges its author.
func (a *Agent) checkErasure(blob []byte) (*crypto.Erasure, error) {
	e, err := crypto.ParseErasure(blob)
	if err != nil {
		return nil, err
	}
	tt := a.trustNow()
	cert := tt.certs[e.Author]
	if cert == nil {
		return nil, fmt.Errorf("%w: erase marker of space %s by device %s, whose certificate this device has not seen yet (taken once it has)", crypto.ErrUntrusted, e.Space, e.Author)
	}
	if err := e.Verify(cert.Device); err != nil {
		return nil, err
	}
	// The author is judged at the marker's time, as a change at its HLC;
	// a time before the certificate's start only says its clock is behind.
	at := e.IssuedAt
	if at.Before(cert.NotBefore) {
		at = cert.NotBefore
	}
	if err := cert.Verify(a.trustAnywhere(cert), at); err != nil {
		return nil, err
	}
	if err := rules.MayErase(cert, tt.revs[e.Author], e.Owner); err != nil {
		return nil, err
	}
	return e, nil
}

// applyErasure keeps e as its space's tombstone and erases the space here.
// Of two markers of one space the earlier issued is kept everywhere
// (rules.ErasureReplaces). It returns whether the tombstone is new here.
// Holding it already, it still purges what is left (a crash came between
// the tombstone and the drop).
func (a *Agent) applyErasure(e *crypto.Erasure, reason string) (bool, error) {
	old := a.erasedSpace(e.Space)
	same := old != nil && bytes.Equal(old.Marshal(), e.Marshal())
	if old != nil && !same && !rules.ErasureReplaces(e, old) {
		return false, nil // the one kept stays
	}
	fresh := false
	err := a.withWrite(func(t *tx) error {
		if same && a.purged(e.Space) {
			return nil
		}
		t.changed()
		// Settle everything in flight: the purge writes the store itself,
		// and Badger refuses writes while it drops.
		a.com.Barrier()
		if !same {
			b, _ := json.Marshal(tombstone{Marker: e.Marshal(), Reason: reason})
			if err := a.db.kv.CommitGroups([][]kvEntry{{a.db.entry(tombstoneKey(e.Space), b), a.db.entry(metaKey(metaPurge), []byte{1})}})[0]; err != nil {
				return err
			}
			a.editTrustLocked(func(tt *trustTables) {
				tt.erased[e.Space] = e
				delete(tt.released, e.Space)
				for k := range tt.frozen {
					if k.space == e.Space {
						delete(tt.frozen, k)
					}
				}
			})
			fresh = true
		}
		delete(a.orphans, e.Space)
		a.forgetSpaceStats(e.Space)
		a.forgetWants(e.Space)
		dropped, err := a.dropSpace(e.Space)
		if err != nil {
			return err
		}
		if !dropped {
			// Nothing of the space was held here (a marker of a space this
			// device never had): no flush, no table rewrite, no collection,
			// so that markers a member mints for made-up spaces cost a
			// tombstone each, not a rewrite of the store.
			return nil
		}
		// Still under the write lock with nothing in flight: Badger's value
		// log collection reads the memtable's version unlocked
		// (DB.MaxVersion), which races with a write being applied.
		a.collectValueLogNow()
		return a.reload()
	})
	if err != nil {
		return fresh, fmt.Errorf("erase space %s: %w", e.Space, err)
	}
	return fresh, nil
}

// dropSpace removes every key of the space from the store's files. stateMu
// held, nothing in flight.
//
// Badger drops a prefix only while a live key is under it, so one is
// written under each first (a key the loaders skip: load ignores every key
// of an erased space). Whatever version is still found under a prefix
// after the drop (Badger gives up on a level-0 compaction silently) is
// dropped again; the erasure fails if some remains.
func (a *Agent) dropSpace(space crypto.SpaceID) (dropped bool, err error) {
	// Epoch keys cached to thaw cold envelopes (cold.go): forgotten before
	// and again after the drop, since a thaw (which takes no lock of the
	// agent's) may read a key back into the cache until the keys are gone.
	a.db.cold.forget(space)
	defer a.db.cold.forget(space)
	prefixes := make([][]byte, 0, len(spacePrefixes))
	for _, p := range spacePrefixes {
		prefixes = append(prefixes, append([]byte{p}, space[:]...))
	}
	if a.versionsLeft(prefixes) == 0 {
		return false, nil
	}
	for range 3 {
		var live []kvEntry
		for _, p := range prefixes {
			live = append(live, a.db.entry(append(bytes.Clone(p), "\x00erased"...), nil))
		}
		if err := a.db.kv.CommitGroups([][]kvEntry{live})[0]; err != nil {
			return true, fmt.Errorf("drop the space's keys from the store: %w", err)
		}
		if err := a.db.kv.DropPrefixes(prefixes...); err != nil {
			return true, fmt.Errorf("drop the space's keys from the store: %w", err)
		}
		if left := a.versionsLeft(prefixes); left == 0 {
			return true, nil
		}
	}
	return true, fmt.Errorf("drop the space's keys from the store: %d versions remain after three passes; stop the agent and start it again to finish", a.versionsLeft(prefixes))
}

// versionsLeft counts the versions of keys still held under the prefixes,
// deleted ones included.
func (a *Agent) versionsLeft(prefixes [][]byte) int {
	n := 0
	for _, p := range prefixes {
		a.db.kv.VersionsUnder(p, func([]byte, []byte, bool) error { n++; return nil })
	}
	return n
}

// purged reports whether no key of the space is left in the store. stateMu
// held.
func (a *Agent) purged(space crypto.SpaceID) bool {
	if a.spaces[space] != nil {
		return false
	}
	for _, p := range spacePrefixes {
		left := false
		a.db.kv.ScanKeys(append([]byte{p}, space[:]...), func([]byte) error { left = true; return errStopScan })
		if left {
			return false
		}
	}
	return true
}

// collectValueLogNow is collectValueLog after making Badger begin a new
// value-log file (store.BeginValueLogFile: up to one file, 64 MiB, of
// filler writes), so that the file being written until now, which holds
// most of an erased space's values, is rewritten by this pass rather than
// after the next start. Should beginning a file fail (a full disk), the
// pass after the next start (purgeAtStart) still reaches it.
func (a *Agent) collectValueLogNow() {
	if err := a.db.kv.BeginValueLogFile(); err != nil {
		a.log.Warn("beginning a value-log file after an erasure: its values are collected after the next start", "err", err)
	}
	a.collectValueLog()
}

// collectValueLog rewrites the value-log files that hold discarded data:
// values of Badger's value threshold or more (most records and envelopes)
// of an erased space live there, not in the tables. Best effort; the file
// being written is reached by the pass after the next start (purgeAtStart)
// unless collectValueLogNow began a new one.
//
// The ratio is tiny on purpose: a file is rewritten as soon as anything in
// it is discarded, so one erased value in a full 64 MiB file is not left
// behind; this runs only after an erasure, and once at the next start.
func (a *Agent) collectValueLog() {
	if n, err := a.db.kv.CollectValueLog(1e-6); err != nil {
		a.log.Warn("collecting the value log after an erasure", "err", err)
	} else if n > 0 {
		a.log.Info("value log collected after an erasure", "files", n)
	}
}

// purgeAtStart finishes erasures: a space whose tombstone is held but whose
// keys are not all dropped (a crash came in between) is dropped now, and
// the value log is collected once after the restart that follows an
// erasure. Called by open, before serving.
func (a *Agent) purgeAtStart() error {
	if err := a.purgeRecordsAtStart(); err != nil { // recerase.go
		return err
	}
	for id, e := range a.trustNow().erased {
		var done bool
		a.withRead(func() error { done = a.purged(id); return nil })
		if !done {
			if _, err := a.applyErasure(e, ""); err != nil {
				return err
			}
		}
	}
	if _, err := a.db.get(metaKey(metaPurge)); err != nil {
		return nil
	}
	a.collectValueLog()
	return a.db.kv.CommitGroups([][]kvEntry{{{Key: metaKey(metaPurge), Del: true}}})[0]
}

// forgetSpaceStats drops what the display caches hold of a space: officer
// names (case data), gaps, peers' claims.
func (a *Agent) forgetSpaceStats(space crypto.SpaceID) {
	a.statMu.Lock()
	defer a.statMu.Unlock()
	for k := range a.officers {
		if k.space == space {
			delete(a.officers, k)
		}
	}
	for k := range a.gaps {
		if k.space == space {
			delete(a.gaps, k)
		}
	}
	delete(a.peerHeld, space)
}

// erasureBlobs are the tombstones to pass on (mesh objects, bundles):
// spaces' erase markers, then records' (recerase.go).
func (a *Agent) erasureBlobs() [][]byte {
	tt := a.trustNow()
	out := make([][]byte, 0, len(tt.erased))
	for _, e := range tt.erased {
		out = append(out, e.Marshal())
	}
	sort.Slice(out, func(i, j int) bool { return bytes.Compare(out[i], out[j]) < 0 })
	return append(out, a.recordErasureBlobs()...) // records' markers: recerase.go
}

// Erased lists the tombstones held here (api.PathSpaceErased), by space.
func (a *Agent) Erased() ([]api.Erased, error) {
	tt := a.trustNow()
	out := make([]api.Erased, 0, len(tt.erased))
	for id, e := range tt.erased {
		var reason string
		if v, err := a.db.get(tombstoneKey(id)); err == nil {
			var ts tombstone
			if json.Unmarshal(v, &ts) == nil {
				reason = ts.Reason
			}
		} else if !errors.Is(err, errKVNotFound) {
			return nil, err
		}
		out = append(out, a.erasedView(e, reason))
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Space < out[j].Space })
	return out, nil
}

func (a *Agent) erasedView(e *crypto.Erasure, reason string) api.Erased {
	var purged bool
	a.withRead(func() error { purged = a.purged(e.Space); return nil })
	return api.Erased{Space: e.Space.String(), Owner: e.Owner, Author: e.Author.String(),
		ErasedAt: e.IssuedAt.Format(time.RFC3339), Reason: reason, Purged: purged}
}
