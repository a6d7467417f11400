package agent

// Crypto-erasure of one record (docs/design.md §6, "Erasing one record";
// docs/crypto.md, "Record-erase marker" and §2 "Envelope version 2";
// docs/storage.md, "Tombstones and purging").
//
// An officer device of the owning bureau lists the segments of the record
// in its log (every version 2 change envelope's segment whose ops name it)
// and signs a record-erase marker naming them by (author, seq, index) and
// the record by a keyed hash only. The marker travels like a space's erase
// marker (it is one of erasureBlobs: sync mesh objects, bundles). Every
// replica that accepts it — each judges the author itself (rules.MayErase)
// — keeps it, replaces those segments by their hashes in the envelopes it
// holds (the signature, the envelope ID and every chain stay valid), drops
// the old envelopes, the record and the context from Badger's files,
// rebuilds the space's state from the cut envelopes, and collects the value
// log. An envelope that arrives later with a listed segment still sealed (a
// bundle made before, a peer offline at the erasure) has it erased on
// ingest, before anything is stored.

import (
	"bytes"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"time"

	"fieldsync/agent/api"
	"fieldsync/crdt"
	"fieldsync/crypto"
	"fieldsync/internal/rules"
	fsync "fieldsync/sync"
)

const (
	// pfxRecErasure: e space markerID(32) -> recTombstone (JSON).
	pfxRecErasure = 'e'
	// pfxRecStaged: w space author seq -> the envelope with its erased
	// segments cut, to be written back once the old one is dropped.
	pfxRecStaged = 'w'
)

func recErasureKey(space crypto.SpaceID, id [32]byte) []byte {
	return append(append([]byte{pfxRecErasure}, space[:]...), id[:]...)
}

func recStagedKey(space crypto.SpaceID, author crypto.DeviceID, seq uint64) []byte {
	k := append([]byte{pfxRecStaged}, space[:]...)
	k = append(k, author[:]...)
	return binary.BigEndian.AppendUint64(k, seq)
}

// recTombstone is what an e key holds.
type recTombstone struct {
	Marker []byte `json:"marker"`
	// Reason is given only on the device that erased, and stays there.
	Reason string `json:"reason,omitempty"`
	// Records are the records whose segments this device cut for the
	// marker, as far as it could read them (history shows the erasure in
	// theirs); Misattributed says some are not the record the marker names
	// by its keyed tag (misattributed).
	Records       []string `json:"records,omitempty"`
	Misattributed bool     `json:"misattributed,omitempty"`
}

// crashAfterStaging, set by a test only, stops a record erasure right
// after the marker and the cut envelopes are committed, as a crash would.
var crashAfterStaging func() error

// envRef names one envelope.
type envRef struct {
	space  crypto.SpaceID
	author crypto.DeviceID
	seq    uint64
}

// recErasures is the index of the record-erase markers held: the segments
// to erase, by envelope. Built from the store on first use, added to by
// applyRecordErasure; read without stateMu by the ingest path.
type recErasures struct {
	loaded bool
	refs   map[envRef][]segCut
	chunks map[chunkID]bool
	blobs  map[[32]byte]markerBlob
	// byAuthor is what each device's markers held here weigh (capped:
	// maxRecordErasuresPerAuthor).
	byAuthor map[crypto.DeviceID]markerLoad
}

// markerLoad counts one author's record-erase markers held, and the
// segment and chunk references they list.
type markerLoad struct{ markers, refs int }

// Caps on what one device's record-erase markers may make every replica,
// relays included, keep on disk and in memory (docs/design.md §6, "Erasing
// one record"). Every marker is signed by an owner officer and lists up to
// 65,536 segments and as many chunks (~3.7 MB): without a cap, one officer
// laptop taken over before its revocation could mint markers until every
// relay's disk and every agent's memory were full. An honest device stays
// far below: 4,096 records erased, of 32 segments each on average.
const (
	maxRecordErasuresPerAuthor    = 4096
	maxRecordErasureRefsPerAuthor = 1 << 17
)

// errErasureCap refuses an erase marker beyond its author's cap.
var errErasureCap = errors.New("erase marker cap reached")

// recordErasureRoom reports whether this device may take e: a marker held
// already always, a new one only within its author's caps. recErMu held.
func (x *recErasures) room(e *crypto.RecordErasure) error {
	if _, ok := x.blobs[e.ID()]; ok {
		return nil
	}
	l := x.byAuthor[e.Author]
	refs := len(e.Segments) + len(e.Chunks)
	if l.markers+1 > maxRecordErasuresPerAuthor || l.refs+refs > maxRecordErasureRefsPerAuthor {
		return fmt.Errorf("%w: device %s has %d record-erase markers listing %d segments and chunks here, and this one lists %d more (the cap per device is %d markers and %d references, docs/design.md §6): a device that erases this much is more likely taken over than busy; its bureau should look at it, and revoke it if so",
			errErasureCap, e.Author, l.markers, l.refs, refs, maxRecordErasuresPerAuthor, maxRecordErasureRefsPerAuthor)
	}
	return nil
}

// segCut is one segment a marker names, and the end of the time its marker
// covers (cutUntil): only an envelope written before then can be one the
// eraser held.
type segCut struct {
	index int
	until int64 // Unix milliseconds
}

// cutUntil is the end of the time a record-erase marker covers: the
// second after its IssuedAt (kept to the second). An envelope whose signed
// HLC is at or after it was written after the marker, so the eraser cannot
// have held it, and no marker cuts it: a hostile owner officer listing
// slots not yet written (an author's next seqs) cannot silently erase
// writes to come. The eraser sets IssuedAt no earlier than the newest
// envelope it lists, and receivers refuse a marker from further ahead than
// the clock drift they allow envelopes (docs/design.md §6).
func cutUntil(e *crypto.RecordErasure) int64 { return (e.IssuedAt.Unix() + 1) * 1000 }

// errMarkerAhead is a record-erase marker dated further ahead of this
// device's clock than the drift allowed (cutUntil).
var errMarkerAhead = errors.New("marker from the future")

// hlcMillis is the wall-clock part of a packed HLC (docs/format.md).
func hlcMillis(hlc uint64) int64 { return int64(hlc >> 16) }

// markerBlob is a record-erase marker held, with its space.
type markerBlob struct {
	space crypto.SpaceID
	blob  []byte
}

func init() {
	apiExtensions = append(apiExtensions, func(a *Agent, mux *http.ServeMux) {
		post(a, mux, api.PathRecordErase, func(req api.RecordEraseRequest) (any, error) { return a.EraseRecord(req) })
	})
}

// recErased returns the index, loading it from the store the first time.
// recErMu held.
func (a *Agent) recErasedLocked() *recErasures {
	x := &a.recEr
	if x.loaded {
		return x
	}
	x.refs, x.chunks, x.blobs = map[envRef][]segCut{}, map[chunkID]bool{}, map[[32]byte]markerBlob{}
	x.byAuthor = map[crypto.DeviceID]markerLoad{}
	a.db.scan([]byte{pfxRecErasure}, func(k, v []byte) error {
		var ts recTombstone
		if json.Unmarshal(v, &ts) != nil {
			return nil
		}
		if e, err := crypto.ParseRecordErasure(ts.Marker); err == nil {
			x.add(e)
		}
		return nil
	}, a.countCorrupt)
	x.loaded = true
	return x
}

func (x *recErasures) add(e *crypto.RecordErasure) {
	if _, ok := x.blobs[e.ID()]; !ok {
		l := x.byAuthor[e.Author]
		x.byAuthor[e.Author] = markerLoad{l.markers + 1, l.refs + len(e.Segments) + len(e.Chunks)}
	}
	x.blobs[e.ID()] = markerBlob{e.Space, e.Marshal()}
	for _, c := range e.Chunks {
		x.chunks[chunkID{e.Space, c}] = true
	}
	until := cutUntil(e)
	for _, r := range e.Segments {
		k := envRef{e.Space, r.Author, r.Seq}
		x.refs[k] = append(x.refs[k], segCut{int(r.Index), until})
	}
}

// erasedSegments returns the segments of an envelope (with that signed
// HLC) that record-erase markers held here name and cover (cutUntil).
func (a *Agent) erasedSegments(space crypto.SpaceID, author crypto.DeviceID, seq, hlc uint64) []int {
	a.recErMu.Lock()
	defer a.recErMu.Unlock()
	var out []int
	for _, c := range a.recErasedLocked().refs[envRef{space, author, seq}] {
		if hlcMillis(hlc) < c.until && !slices.Contains(out, c.index) {
			out = append(out, c.index)
		}
	}
	return out
}

// recordErasureBlobs are the record-erase markers to pass on (not those of
// a space erased since: its own marker says more).
func (a *Agent) recordErasureBlobs() [][]byte {
	erased := a.trustNow().erased
	a.recErMu.Lock()
	defer a.recErMu.Unlock()
	x := a.recErasedLocked()
	out := make([][]byte, 0, len(x.blobs))
	for _, b := range x.blobs {
		if erased[b.space] == nil {
			out = append(out, b.blob)
		}
	}
	slices.SortFunc(out, bytes.Compare)
	return out
}

// cutSegments returns env with the segments idx erased, ignoring indexes
// past its segments (an envelope the eraser did not hold as this one: a
// fork) and version 1 envelopes (not cut: they cannot be). It returns env
// itself when nothing changes.
func cutSegments(env []byte, idx []int) []byte {
	infos, err := crypto.Segments(env)
	if err != nil {
		return env
	}
	var in []int
	for _, i := range idx {
		if i < len(infos) && !infos[i].Erased {
			in = append(in, i)
		}
	}
	if len(in) == 0 {
		return env
	}
	out, err := crypto.EraseSegments(env, in...)
	if err != nil {
		return env
	}
	return out
}

// eraseOnIngest erases, in an envelope just verified, the segments that
// record-erase markers held here name (a bundle made before the erasure, a
// peer that was offline): what is stored never held them. The envelope's
// signature and ID are unchanged.
func (a *Agent) eraseOnIngest(h crypto.Header, env []byte) []byte {
	if h.Version != crypto.HeaderVersion2 {
		return env
	}
	idx := a.erasedSegments(h.Space, h.Author, h.Seq, h.HLC)
	if len(idx) == 0 {
		return env
	}
	return cutSegments(env, idx)
}

// EraseRecord erases one record here and signs the marker that erases it
// everywhere else (api.PathRecordErase). Only an officer device of the
// owning bureau may (rules.MayErase), as for a space.
func (a *Agent) EraseRecord(req api.RecordEraseRequest) (api.RecordErased, error) {
	return a.eraseRecord(req, false)
}

// eraseRecord is EraseRecord; with deferPurge the space's purge is left to
// purgeStaged (applyRecordErasureThen).
func (a *Agent) eraseRecord(req api.RecordEraseRequest, deferPurge bool) (api.RecordErased, error) {
	if a.cfg.Relay {
		return api.RecordErased{}, fmt.Errorf("%w: a relay cannot erase a record", ErrForbidden)
	}
	reason := strings.TrimSpace(req.Reason)
	if reason == "" || len(reason) > 1024 {
		return api.RecordErased{}, fmt.Errorf("%w: a reason of 1 to 1024 bytes is needed (it stays on this device)", ErrBadRequest)
	}
	rid := crdt.RecordID(NFC(req.Record))
	var e *crypto.RecordErasure
	var envs int
	err := a.withRead(func() error {
		sp, err := a.erasableSpace(req.Space)
		if err != nil {
			return err
		}
		if sp.current == nil {
			return fmt.Errorf("%w: this device holds no key for space %s", ErrForbidden, sp.id)
		}
		refs, chunks, v1, err := a.recordSegments(sp, rid)
		if err != nil {
			return err
		}
		if v1 > 0 {
			return fmt.Errorf("%w: record %q has %d changes in version 1 envelopes (written before segmented changes, docs/crypto.md §2): their bodies cannot be cut without breaking the signature; erase the whole space instead (fieldsync space erase)", ErrForbidden, rid, v1)
		}
		if len(refs) == 0 {
			return fmt.Errorf("%w: no change of record %q in space %s is held here", ErrNotFound, rid, sp.id)
		}
		// The marker is dated no earlier than the newest envelope it
		// lists (an author's clock may run ahead of ours, within the
		// allowed drift): receivers cut only envelopes written before it.
		at := a.cfg.now()
		seen := map[envRef]bool{}
		for _, r := range refs {
			k := envRef{sp.id, r.Author, r.Seq}
			if seen[k] {
				continue
			}
			seen[k] = true
			env, err := a.db.get(envKey(k.space, k.author, k.seq))
			if err != nil {
				return err
			}
			if h, err := crypto.ParseHeader(env); err == nil && time.UnixMilli(hlcMillis(h.HLC)).After(at) {
				at = time.UnixMilli(hlcMillis(h.HLC))
			}
		}
		// An author whose clock ran further ahead than receivers allow
		// (skewed): the marker would be refused; it is dated at the limit,
		// and that author's envelopes beyond it are not cut elsewhere.
		if limit := a.cfg.now().Add(a.cfg.MaxDrift); at.After(limit) {
			at = limit
		}
		envs = len(seen)
		e, err = crypto.NewRecordErasure(a.id, sp.id, sp.meta.Nonce, sp.meta.OwnerFP, sp.current, string(rid), refs, chunks, at)
		return err
	})
	if err != nil {
		return api.RecordErased{}, err
	}
	if _, err := a.applyRecordErasureThen(e, reason, deferPurge); err != nil {
		if errors.Is(err, errErasureCap) {
			err = fmt.Errorf("%w: %v", ErrForbidden, err)
		}
		return api.RecordErased{}, err
	}
	a.log.Warn("record erased here; the record-erase marker goes to every peer", "space", e.Space.String(), "segments", len(e.Segments))
	a.notify()
	return api.RecordErased{Space: e.Space.String(), Record: string(rid), Tag: hex.EncodeToString(e.Tag[:]), Author: e.Author.String(),
		ErasedAt: e.IssuedAt.Format(time.RFC3339), Segments: len(e.Segments), Envelopes: envs, Chunks: len(e.Chunks), Reason: reason}, nil
}

// erasableSpace resolves a space this device may erase records in: an
// officer of its owning bureau, not revoked (rules.MayErase). stateMu held.
func (a *Agent) erasableSpace(ref string) (*spaceState, error) {
	sp, err := a.resolveSpace(ref)
	if err != nil {
		return nil, err
	}
	if len(sp.meta.Routings) == 0 || sp.meta.OwnerFP == "" {
		return nil, fmt.Errorf("%w: space %s has no routing record here yet", ErrForbidden, sp.id)
	}
	if err := rules.MayErase(a.cert, a.trustNow().revs[a.dev], sp.meta.OwnerFP); err != nil {
		return nil, fmt.Errorf("%w: %v", ErrForbidden, err)
	}
	return sp, nil
}

// recordSegments lists the segments of record rid in the space's change
// envelopes this device can open, the attachment chunks that only rid's
// manifests (any value it ever held) name, and counts the version 1 changes
// that touch rid (which cannot be cut). stateMu held.
func (a *Agent) recordSegments(sp *spaceState, rid crdt.RecordID) (refs []crypto.SegmentRef, chunks []crypto.ChunkRef, v1 int, err error) {
	mine, others := map[crypto.ChunkRef]bool{}, map[crypto.ChunkRef]bool{}
	// Erasures staged and not purged yet (applyRecordErasureThen): the
	// envelopes are read as those left them, so a manifest an erased
	// record held does not keep its chunks.
	staged := false
	a.db.kv.ScanKeys(append([]byte{pfxRecStaged}, sp.id[:]...), func([]byte) error { staged = true; return errStopScan })
	err = a.db.scan(envSpacePrefix(sp.id), func(k, env []byte) error {
		h, err := crypto.ParseHeader(env)
		if err != nil || h.Kind != crypto.KindChange {
			return nil
		}
		if staged {
			if cut, err := a.db.get(recStagedKey(sp.id, h.Author, h.Seq)); err == nil {
				env = cut
			}
		}
		oc, err := openChange(env, sp)
		if err != nil || oc.ch == nil {
			return nil
		}
		for _, o := range oc.ch.Ops {
			if o.Kind != crdt.OpPut && o.Kind != crdt.OpResolve {
				continue
			}
			if _, cs, ok, err := parseManifest(o.Value); ok && err == nil {
				for _, c := range cs {
					if o.Record == rid {
						mine[c] = true
					} else {
						others[c] = true
					}
				}
			}
		}
		if h.Version != crypto.HeaderVersion2 {
			if slices.Contains(oc.ch.Records(), rid) {
				v1++
			}
			return nil
		}
		for i, r := range oc.segRecord {
			if r == rid {
				refs = append(refs, crypto.SegmentRef{Author: h.Author, Seq: h.Seq, Index: uint16(i)})
			}
		}
		return nil
	}, a.countCorrupt)
	for c := range mine {
		if !others[c] {
			chunks = append(chunks, c)
		}
	}
	return refs, chunks, v1, err
}

// erasedChunk reports whether a record-erase marker held here names the
// chunk: it is taken from no peer again.
func (a *Agent) erasedChunk(space crypto.SpaceID, ref crypto.ChunkRef) bool {
	a.recErMu.Lock()
	defer a.recErMu.Unlock()
	return a.recErasedLocked().chunks[chunkID{space, ref}]
}

type chunkID struct {
	space crypto.SpaceID
	ref   crypto.ChunkRef
}

// dropChunks drops every version of the held chunks among refs from the
// store's files. It reports whether any was held. stateMu held, nothing in
// flight.
func (a *Agent) dropChunks(space crypto.SpaceID, refs []crypto.ChunkRef) (bool, error) {
	var keys [][]byte
	for _, r := range refs {
		if held, err := a.hasChunk(space, r); err != nil {
			return false, err
		} else if held {
			keys = append(keys, chunkKey(space, r))
		}
	}
	if len(keys) == 0 {
		return false, nil
	}
	for pass := 0; ; pass++ {
		if err := a.db.kv.DropPrefixes(keys...); err != nil {
			return true, fmt.Errorf("drop the erased record's attachment chunks: %w", err)
		}
		if a.versionsLeft(keys) == 0 {
			break
		}
		if pass == 2 {
			return true, fmt.Errorf("drop the erased record's attachment chunks: versions remain after three passes; restart the agent to finish")
		}
	}
	a.dropWants(space, refs)
	return true, nil
}

// AddRecordErasure checks a record-erase marker received from a peer or a
// bundle and, if its author may erase in the space, applies it here.
func (a *Agent) AddRecordErasure(blob []byte) (bool, error) {
	e, err := crypto.ParseRecordErasure(blob)
	if err != nil {
		return false, &erasureRefused{err}
	}
	tt := a.trustNow()
	cert := tt.certs[e.Author]
	if cert == nil {
		return false, &erasureRefused{fmt.Errorf("%w: record-erase marker in space %s by device %s, whose certificate this device has not seen yet (taken once it has)", crypto.ErrUntrusted, e.Space, e.Author)}
	}
	if err := e.Verify(cert.Device); err != nil {
		return false, &erasureRefused{err}
	}
	at := e.IssuedAt
	if at.Before(cert.NotBefore) {
		at = cert.NotBefore
	}
	if err := cert.Verify(a.trustAnywhere(cert), at); err != nil {
		return false, &erasureRefused{err}
	}
	if err := rules.MayErase(cert, tt.revs[e.Author], e.Owner); err != nil {
		return false, &erasureRefused{err}
	}
	if ahead := e.IssuedAt.Sub(a.cfg.now()); ahead > a.cfg.MaxDrift {
		return false, &erasureRefused{fmt.Errorf("%w: record-erase marker in space %s issued %v ahead of this device's clock (more than the %v allowed): taken when it is no longer in the future", errMarkerAhead, e.Space, ahead.Round(time.Second), a.cfg.MaxDrift)}
	}
	fresh, err := a.applyRecordErasure(e, "")
	if errors.Is(err, errErasureCap) {
		a.log.Warn("a device's record-erase markers reached the cap: refused", "author", e.Author.String(), "space", e.Space.String())
		return false, &erasureRefused{err}
	}
	return fresh, err
}

// applyRecordErasure keeps e and erases its segments here. It returns
// whether the marker is new here.
func (a *Agent) applyRecordErasure(e *crypto.RecordErasure, reason string) (bool, error) {
	return a.applyRecordErasureThen(e, reason, false)
}

// applyRecordErasureThen is applyRecordErasure; with deferPurge, it stages
// the cut envelopes (and drops chunks and partial envelopes) but leaves the
// purge — dropping the space's old versions and rebuilding its state, the
// costly part — to purgeStaged, so that erasing many records of a space
// rebuilds it once (autoerase.go). Staged cuts compose: a marker staged
// after another cuts the envelope as already staged. Until the purge the
// listed envelopes are still served whole (the marker travels with them
// and every receiver cuts them); a crash before it is finished at start
// like any interrupted erasure (purgeRecordsAtStart).
func (a *Agent) applyRecordErasureThen(e *crypto.RecordErasure, reason string, deferPurge bool) (bool, error) {
	if a.erasedSpace(e.Space) != nil {
		return false, nil // the whole space is gone already
	}
	key := recErasureKey(e.Space, e.ID())
	fresh := false
	err := a.withWrite(func(t *tx) error {
		_, err := a.db.get(key)
		if err == nil {
			return nil // held: applied when it came (a crash is finished at start)
		}
		a.recErMu.Lock()
		x := a.recErasedLocked()
		if err := x.room(e); err != nil {
			a.recErMu.Unlock()
			return err
		}
		x.add(e)
		a.recErMu.Unlock()
		t.changed()
		a.com.Barrier()
		fresh = true
		byEnv := map[envRef][]int{}
		var order []envRef
		for _, r := range e.Segments {
			k := envRef{e.Space, r.Author, r.Seq}
			if byEnv[k] == nil {
				order = append(order, k)
			}
			byEnv[k] = append(byEnv[k], int(r.Index))
		}
		sp := a.spaces[e.Space]
		var recs []crdt.RecordID
		var entries []kvEntry
		for _, k := range order {
			env, err := a.db.get(recStagedKey(k.space, k.author, k.seq)) // cut by a marker staged before
			if err != nil {
				env, err = a.db.get(envKey(k.space, k.author, k.seq))
			}
			if err != nil {
				continue // not held here (yet): erased on ingest
			}
			if h, err := crypto.ParseHeader(env); err != nil || hlcMillis(h.HLC) >= cutUntil(e) {
				continue // written after the marker: not what the eraser held (cutUntil)
			}
			if sp != nil && sp.current != nil {
				if oc, err := openChange(env, sp); err == nil {
					for _, i := range byEnv[k] {
						if i < len(oc.segRecord) && oc.segRecord[i] != "" && !slices.Contains(recs, oc.segRecord[i]) {
							recs = append(recs, oc.segRecord[i])
						}
					}
				}
			}
			if cut := cutSegments(env, byEnv[k]); !bytes.Equal(cut, env) {
				entries = append(entries, a.db.entry(recStagedKey(k.space, k.author, k.seq), cut))
			}
		}
		ts := recTombstone{Marker: e.Marshal(), Reason: reason}
		for _, r := range recs {
			ts.Records = append(ts.Records, string(r))
		}
		if sp != nil {
			ts.Misattributed = a.misattributed(sp, e, recs)
		}
		b, _ := json.Marshal(ts)
		entries = append([]kvEntry{a.db.entry(key, b)}, entries...)
		if len(entries) > 1 {
			entries = append(entries, a.db.entry(metaKey(metaPurge), []byte{1}))
		}
		if err := a.db.kv.CommitGroups([][]kvEntry{entries})[0]; err != nil {
			return err
		}
		if crashAfterStaging != nil {
			return crashAfterStaging()
		}
		chunks, err := a.dropChunks(e.Space, e.Chunks)
		if err != nil {
			return err
		}
		// A prefix of a listed envelope, received in part (partial.go),
		// holds the segment's sealed bytes too: it goes, and the envelope
		// comes again whole, to be cut on arrival.
		partials, err := a.dropPartials(order)
		if err != nil {
			return err
		}
		chunks = chunks || partials
		if sp == nil || len(entries) == 1 {
			if chunks { // large values: the value log holds them
				a.collectValueLogNow()
			}
			return nil // no envelope of the record held here
		}
		if deferPurge {
			return nil // purgeStaged
		}
		return a.purgeRecord(sp)
	})
	if err != nil {
		return fresh, fmt.Errorf("erase a record in space %s: %w", e.Space, err)
	}
	return fresh, nil
}

// misattributed reports whether a record-erase marker cut segments of a
// record other than the one it names by its keyed tag. Only an owner
// officer may sign a marker, and it may erase any record of its space; but
// a marker naming record A while listing B's segments erases B under A's
// name, and no replica without the key can tell. Every replica cuts what
// the marker lists all the same (they must converge, and relays cannot
// read); one that can read the segments records which records they were,
// says so in each one's history, and warns, naming the device (docs/design.md
// §6, "Erasing one record"). stateMu held.
func (a *Agent) misattributed(sp *spaceState, e *crypto.RecordErasure, recs []crdt.RecordID) bool {
	key := sp.keys[e.TagEpoch]
	if key == nil {
		return false // the tag's key is not held here: nothing to check against
	}
	var other []string
	for _, r := range recs {
		if crypto.RecordTag(key, string(r)) != e.Tag {
			other = append(other, string(r))
		}
	}
	if len(other) == 0 {
		return false
	}
	a.log.Warn("a record-erase marker cuts segments of records other than the one it names: erased here as everywhere, shown in their history; the signing device's bureau should look at it",
		"author", e.Author.String(), "space", e.Space.String(), "records", len(other))
	return true
}

// erasureHistory lists, for a record's history, the record-erase markers
// held here that cut segments of it (as this device read them when it
// applied the marker): who erased, when, and whether the marker named
// another record (misattributed).
func (a *Agent) erasureHistory(space crypto.SpaceID, rid crdt.RecordID) []api.HistoryEntry {
	var out []api.HistoryEntry
	a.db.scan(append([]byte{pfxRecErasure}, space[:]...), func(k, v []byte) error {
		var ts recTombstone
		if json.Unmarshal(v, &ts) != nil || !slices.Contains(ts.Records, string(rid)) {
			return nil
		}
		e, err := crypto.ParseRecordErasure(ts.Marker)
		if err != nil {
			return nil
		}
		at := crdt.Timestamp{Wall: e.IssuedAt.UnixMilli()}
		h := api.HistoryEntry{Author: e.Author.String(), Bureau: a.bureauOf(e.Author), HLC: formatHLC(at),
			Time: e.IssuedAt.UTC().Format(time.RFC3339), Signature: "valid", Outcome: api.OutcomeErased, Ops: []api.HistoryOp{}}
		h.Officer = a.officer(&spaceState{id: space}, e.Author) // by the space's profiles
		if ts.Misattributed {
			h.Error = "the record-erase marker names another record by its keyed tag, yet listed this record's segments: cut here as on every replica; the bureau of the device that signed it should look at that device"
		}
		out = append(out, h)
		return nil
	}, a.countCorrupt)
	return out
}

// dropPartials drops, from Badger's files, the partial envelopes held of
// the given envelopes; it reports whether there were any.
func (a *Agent) dropPartials(refs []envRef) (bool, error) {
	var slots [][]byte
	for _, k := range refs {
		slot := partialSlot(fsync.SpaceID(k.space), fsync.PeerID(k.author), k.seq)
		held := false
		a.db.kv.ScanKeys(slot, func([]byte) error { held = true; return errStopScan })
		if held {
			slots = append(slots, slot)
		}
	}
	if len(slots) == 0 {
		return false, nil
	}
	if err := a.db.kv.DropPrefixes(slots...); err != nil {
		return false, fmt.Errorf("drop the partial envelopes of an erased record: %w", err)
	}
	return true, nil
}

// purgeRecord finishes a record erasure in sp: the staged cut envelopes
// replace the old ones, whose every version is dropped from Badger's files
// with the space's records and context; the space's state is
// rebuilt from the envelopes, and the value log collected. Idempotent: a
// crash anywhere is finished by purgeRecordsAtStart. stateMu held, nothing
// in flight.
func (a *Agent) purgeRecord(sp *spaceState) error {
	var staged []kvEntry // staged key -> cut envelope
	err := a.db.scan(append([]byte{pfxRecStaged}, sp.id[:]...), func(k, v []byte) error {
		staged = append(staged, kvEntry{Key: bytes.Clone(k), Val: bytes.Clone(v)})
		return nil
	}, a.countCorrupt)
	if err != nil {
		return err
	}
	// Every record of the space is dropped and rebuilt, not only the
	// erased ones: which records the cut segments held is known only to
	// replicas with the key, and not at all after a crash.
	drop := [][]byte{recSpacePrefix(sp.id), ctxKey(sp.id)}
	for _, s := range staged {
		drop = append(drop, append([]byte{pfxEnvelope}, s.Key[1:]...))
	}
	var live []kvEntry
	anyRec := false
	a.db.kv.ScanKeys(recSpacePrefix(sp.id), func([]byte) error { anyRec = true; return errStopScan })
	if !anyRec { // Badger drops a prefix only while a live key is under it
		empty, _ := crdt.NewRecord("\x00erasing").MarshalBinary()
		live = append(live, a.db.entry(recKey(sp.id, "\x00erasing"), empty))
	}
	if len(live) > 0 {
		if err := a.db.kv.CommitGroups([][]kvEntry{live})[0]; err != nil {
			return err
		}
	}
	for pass := 0; ; pass++ {
		if err := a.db.kv.DropPrefixes(drop...); err != nil {
			return fmt.Errorf("drop the erased record's old versions: %w", err)
		}
		if a.versionsLeft(drop) == 0 {
			break
		}
		if pass == 2 {
			return fmt.Errorf("drop the erased record's old versions: %d versions remain after three passes; stop the agent and start it again to finish", a.versionsLeft(drop))
		}
	}
	// The cut envelopes go back first: the rebuild replays them.
	back := make([]kvEntry, 0, len(staged))
	for _, s := range staged {
		back = append(back, a.db.entry(append([]byte{pfxEnvelope}, s.Key[1:]...), s.Val))
	}
	if len(back) > 0 {
		if err := a.db.kv.CommitGroups([][]kvEntry{back})[0]; err != nil {
			return err
		}
	}
	var done []kvEntry
	for _, s := range staged {
		done = append(done, kvEntry{Key: s.Key, Del: true})
	}
	if _, _, err := a.rebuildSpace(sp, done); err != nil {
		return err
	}
	a.cache.clear()
	a.collectValueLogNow()
	return a.reload()
}

// purgeStaged purges a space whose record erasures were staged with
// deferPurge (applyRecordErasureThen), if any are.
func (a *Agent) purgeStaged(id crypto.SpaceID) error {
	staged := false
	a.db.kv.ScanKeys(append([]byte{pfxRecStaged}, id[:]...), func([]byte) error { staged = true; return errStopScan })
	if !staged {
		return nil
	}
	return a.withWrite(func(t *tx) error {
		sp := a.spaces[id]
		if sp == nil {
			return nil
		}
		t.changed()
		a.com.Barrier()
		return a.purgeRecord(sp)
	})
}

// purgeRecordsAtStart finishes record erasures a crash interrupted: any
// staged cut envelope left means the purge did not end.
func (a *Agent) purgeRecordsAtStart() error {
	a.recErMu.Lock()
	var held []chunkID
	for c := range a.recErasedLocked().chunks {
		held = append(held, c)
	}
	a.recErMu.Unlock()
	for _, c := range held {
		if ok, _ := a.hasChunk(c.space, c.ref); ok {
			err := a.withWrite(func(t *tx) error {
				t.changed()
				a.com.Barrier()
				_, err := a.dropChunks(c.space, []crypto.ChunkRef{c.ref})
				return err
			})
			if err != nil {
				return err
			}
		}
	}
	spaces := map[crypto.SpaceID]bool{}
	a.db.kv.ScanKeys([]byte{pfxRecStaged}, func(k []byte) error {
		if len(k) >= 17 {
			spaces[crypto.SpaceID(k[1:17])] = true
		}
		return nil
	})
	for id := range spaces {
		if err := a.purgeStaged(id); err != nil {
			return err
		}
	}
	return nil
}
