package agent

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"time"

	"fieldsync/agent/api"
	"fieldsync/crdt"
	"fieldsync/crypto"
	fsync "fieldsync/sync"
)

// Attachments (docs/design.md §8 "Attachments", docs/format.md
// "Attachments"): a file attached to a record field is cut into
// content-defined chunks (chunker.go), each sealed deterministically under
// the space's current epoch key (crypto.ChunkSealer) and stored once per
// space under its ref, in key space 'B'. The field's value is a small
// manifest — name, size, SHA-256, media type, epoch, ordered chunk refs and
// sizes — written as an ordinary change, so it is signed by its author and
// syncs first; the chunks follow in sync's chunk phase (sync/chunks.go),
// last, within the budgets, and resume where a cut round stopped.

// Attachment modes (Config.Attachments).
const (
	AttachAll      = "all"       // fetch every chunk peers hold (default; relays always)
	AttachOnDemand = "on-demand" // fetch a file's chunks when `record open` asks
)

// Limits of attachments.
const (
	maxAttachBytes  = 4 << 30                    // one file
	maxAttachChunks = maxAttachBytes/cdcMin + 1  // chunks in one manifest
	attachBatch     = 8 << 20                    // sealed chunk bytes per store commit
	manifestMagic   = "fieldsync-attachment/1\n" // a register value that is a manifest begins so
)

// manifest is an attachment field's value after manifestMagic (JSON).
type manifest struct {
	Name   string          `json:"name"`
	Size   int64           `json:"size"`
	SHA256 string          `json:"sha256"`
	Mime   string          `json:"mime,omitempty"`
	Epoch  string          `json:"epoch"` // the epoch key the chunks are sealed under
	Chunks []manifestChunk `json:"chunks"`
}

type manifestChunk struct {
	Ref  string `json:"ref"`  // hex SHA-256 of the sealed chunk
	Size int    `json:"size"` // plaintext bytes
}

func (m *manifest) marshal() []byte {
	b, _ := json.Marshal(m)
	return append([]byte(manifestMagic), b...)
}

// parseManifest decodes a register value that is a manifest; ok is false
// for any other value. A value that begins like one but does not decode, or
// breaks a bound, is an error.
func parseManifest(v []byte) (*manifest, []crypto.ChunkRef, bool, error) {
	if !bytes.HasPrefix(v, []byte(manifestMagic)) {
		return nil, nil, false, nil
	}
	var m manifest
	dec := json.NewDecoder(bytes.NewReader(v[len(manifestMagic):]))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&m); err != nil {
		return nil, nil, true, fmt.Errorf("attachment manifest: %v", err)
	}
	if len(m.Chunks) > maxAttachChunks || m.Size < 0 || m.Size > maxAttachBytes {
		return nil, nil, true, errors.New("attachment manifest: over the limits")
	}
	refs := make([]crypto.ChunkRef, len(m.Chunks))
	var total int64
	for i, c := range m.Chunks {
		b, err := hex.DecodeString(c.Ref)
		if err != nil || len(b) != 32 || c.Size <= 0 || c.Size > cdcMax {
			return nil, nil, true, fmt.Errorf("attachment manifest: chunk %d malformed", i)
		}
		copy(refs[i][:], b)
		total += int64(c.Size)
	}
	if total != m.Size {
		return nil, nil, true, errors.New("attachment manifest: chunk sizes do not add up to the file size")
	}
	return &m, refs, true, nil
}

// attachState holds on-demand wants: chunks `record open` asked for that
// are not held yet (in memory; a restart forgets them and the next open asks
// again).
type attachState struct {
	mu    sync.Mutex
	wants map[crypto.SpaceID]map[crypto.ChunkRef]bool
	// pins are the chunks attachments being written name: chunk
	// collection leaves them (chunkgc.go).
	pins map[chunkID]int
}

// attach returns the agent's on-demand wants (created on first use).
func (a *Agent) attach() *attachState {
	st := &a.attachSt
	st.mu.Lock()
	if st.wants == nil {
		st.wants = map[crypto.SpaceID]map[crypto.ChunkRef]bool{}
	}
	st.mu.Unlock()
	return st
}

// forgetWants drops the wants of an erased space.
func (a *Agent) forgetWants(space crypto.SpaceID) {
	st := a.attach()
	st.mu.Lock()
	delete(st.wants, space)
	st.mu.Unlock()
}

func chunkKey(space crypto.SpaceID, ref crypto.ChunkRef) []byte {
	k := make([]byte, 0, 1+16+32)
	k = append(k, pfxChunk)
	k = append(k, space[:]...)
	return append(k, ref[:]...)
}

func (a *Agent) hasChunk(space crypto.SpaceID, ref crypto.ChunkRef) (bool, error) {
	_, err := a.db.kv.Get(chunkKey(space, ref))
	if errors.Is(err, errKVNotFound) {
		return false, nil
	}
	return err == nil, err
}

// commitChunks stores chunks of space, unless the space is erased. It holds
// the state lock, so it never runs while an erasure drops the space's keys
// (a chunk stored after the drop would outlive the erasure) or collects the
// value log (Badger's collection races with a write being applied).
func (a *Agent) commitChunks(space crypto.SpaceID, entries []kvEntry) error {
	return a.withRead(func() error {
		if e := a.erasedSpace(space); e != nil {
			return a.rejectErased(space, e)
		}
		return a.db.kv.CommitGroups([][]kvEntry{entries})[0]
	})
}

// getChunk returns a held sealed chunk, checked against its ref (a chunk
// corrupted at rest is reported missing, so peers send it again).
func (a *Agent) getChunk(space crypto.SpaceID, ref crypto.ChunkRef) ([]byte, error) {
	v, err := a.db.get(chunkKey(space, ref))
	if errors.Is(err, errCorrupt) || err == nil && !crypto.CheckChunk(ref, v) {
		// Corrupt at rest: dropped, so that it counts as missing and is
		// fetched again from a peer.
		a.countCorrupt(chunkKey(space, ref))
		_ = a.db.kv.CommitGroups([][]kvEntry{{{Key: chunkKey(space, ref), Del: true}}})
		return nil, errKVNotFound
	}
	return v, err
}

func (a *Agent) attachMode() string {
	if a.cfg.Relay || a.cfg.Attachments == "" {
		return AttachAll
	}
	return a.cfg.Attachments
}

func absPath(what, p string) error {
	if p == "" || !filepath.IsAbs(p) {
		return fmt.Errorf("%w: %s must be an absolute path", ErrBadRequest, what)
	}
	return nil
}

// Attach is `record attach`: it stores the file's chunks (those not held
// yet), then writes the manifest to the field.
func (a *Agent) Attach(req api.AttachRequest) (api.AttachResult, error) {
	if err := absPath("path", req.Path); err != nil {
		return api.AttachResult{}, err
	}
	sp, rid, err := a.recordRef(api.RecordRef{Space: req.Space, Record: req.Record})
	if err != nil {
		return api.AttachResult{}, err
	}
	field, err := checkName("field name", req.Field)
	if err != nil {
		return api.AttachResult{}, err
	}
	var key *crypto.SpaceKey
	_ = a.withRead(func() error { key = sp.current; return nil })
	if key == nil {
		return api.AttachResult{}, fmt.Errorf("%w: %v (space %s)", ErrForbidden, crypto.ErrNoKey, sp.id)
	}
	f, err := os.Open(req.Path)
	if err != nil {
		return api.AttachResult{}, fmt.Errorf("%w: %v", ErrBadRequest, err)
	}
	defer f.Close()
	if st, err := f.Stat(); err != nil || !st.Mode().IsRegular() {
		return api.AttachResult{}, fmt.Errorf("%w: %s is not a regular file", ErrBadRequest, req.Path)
	} else if st.Size() > maxAttachBytes {
		return api.AttachResult{}, fmt.Errorf("%w: file of %d bytes; attachments are at most %d", errTooLarge, st.Size(), int64(maxAttachBytes))
	}
	sealer := crypto.NewChunkSealer(sp.id, key)
	m := manifest{Name: req.Name, Mime: req.Mime, Epoch: key.ID().String()}
	if m.Name == "" {
		m.Name = filepath.Base(req.Path)
	}
	var res api.AttachResult
	whole := sha256.New()
	var batch []kvEntry
	batchBytes := 0
	flush := func() error {
		if len(batch) == 0 {
			return nil
		}
		err := a.commitChunks(sp.id, batch)
		batch, batchBytes = nil, 0
		return err
	}
	inBatch := map[crypto.ChunkRef]bool{}
	// Every chunk named is pinned until the manifest is written, so that a
	// chunk collection between the check below and the write does not
	// delete a chunk found held (chunkgc.go).
	var pinned []crypto.ChunkRef
	defer func() { a.unpinChunks(sp.id, pinned) }()
	err = chunkReader(f, func(c []byte) error {
		if m.Size += int64(len(c)); m.Size > maxAttachBytes {
			return fmt.Errorf("%w: the file grew past %d bytes", errTooLarge, int64(maxAttachBytes))
		}
		whole.Write(c)
		sealed, ref := sealer.Seal(c)
		m.Chunks = append(m.Chunks, manifestChunk{Ref: hex.EncodeToString(ref[:]), Size: len(c)})
		a.pinChunk(sp.id, ref)
		pinned = append(pinned, ref)
		held, err := a.hasChunk(sp.id, ref)
		if err != nil {
			return err
		}
		if held || inBatch[ref] {
			res.ReusedChunk++
			return nil
		}
		inBatch[ref] = true
		res.NewChunks++
		res.NewBytes += int64(len(sealed))
		batch = append(batch, a.db.entry(chunkKey(sp.id, ref), sealed))
		if batchBytes += len(sealed); batchBytes >= attachBatch {
			return flush()
		}
		return nil
	})
	if err == nil {
		err = flush()
	}
	if err != nil {
		return api.AttachResult{}, err
	}
	m.SHA256 = hex.EncodeToString(whole.Sum(nil))
	rec, err := a.writeRecord(sp, rid, func(r *crdt.Record) ([]crdt.Op, error) {
		if r == nil {
			r = crdt.NewRecord(rid)
		}
		return []crdt.Op{r.Put(field, m.marshal())}, nil
	})
	if err != nil {
		return api.AttachResult{}, err
	}
	res.Record = rec
	if f, ok := rec.Fields[field]; ok && f.Attachment != nil {
		res.Attachment = *f.Attachment
	}
	return res, nil
}

// attachmentInfo describes a manifest value and how much of it is held.
func (a *Agent) attachmentInfo(space crypto.SpaceID, v []byte) *api.Attachment {
	m, refs, ok, err := parseManifest(v)
	if !ok || err != nil {
		return nil
	}
	out := &api.Attachment{Name: m.Name, Size: m.Size, SHA256: m.SHA256, Mime: m.Mime, Chunks: len(refs)}
	for _, r := range refs {
		if held, _ := a.hasChunk(space, r); held {
			out.Held++
		}
	}
	out.State = heldState(out.Held, out.Chunks)
	return out
}

func heldState(held, n int) string {
	switch {
	case held == n:
		return "yes"
	case held == 0:
		return "no"
	}
	return "partial"
}

// Open is `record open`: it writes the attached file to req.Out, after
// checking every chunk against its ref and the whole file against its hash.
// Chunks not held are asked of peers (on every device: an on-demand device
// fetches only so); with WaitMS it waits for them, else it says how many are
// missing.
func (a *Agent) Open(ctx context.Context, req api.OpenRequest) (api.OpenResult, error) {
	if err := absPath("out", req.Out); err != nil {
		return api.OpenResult{}, err
	}
	sp, _, r, err := a.existingRecord(api.RecordRef{Space: req.Space, Record: req.Record})
	if err != nil {
		return api.OpenResult{}, err
	}
	field, err := checkName("field name", req.Field)
	if err != nil {
		return api.OpenResult{}, err
	}
	fv, ok := r.Register(field)
	if !ok {
		return api.OpenResult{}, fmt.Errorf("%w: no field %q in record %q", ErrNotFound, field, req.Record)
	}
	m, refs, ok, err := parseManifest(fv.Siblings[0].Value)
	if err != nil {
		return api.OpenResult{}, fmt.Errorf("%w: %v", ErrBadRequest, err)
	}
	if !ok {
		return api.OpenResult{}, fmt.Errorf("%w: field %q holds a value, not an attachment", ErrBadRequest, field)
	}
	var key *crypto.SpaceKey
	_ = a.withRead(func() error {
		for id, k := range sp.keys {
			if id.String() == m.Epoch {
				key = k
			}
		}
		return nil
	})
	if key == nil {
		return api.OpenResult{}, fmt.Errorf("%w: %v (epoch %s)", ErrForbidden, crypto.ErrNoKey, m.Epoch)
	}
	info := a.attachmentInfo(sp.id, fv.Siblings[0].Value)
	if info.Held < info.Chunks {
		a.wantChunks(sp.id, refs)
		deadline := time.Now().Add(time.Duration(req.WaitMS) * time.Millisecond)
		nudged := time.Now()
		for info.Held < info.Chunks && time.Now().Before(deadline) {
			select {
			case <-ctx.Done():
				return api.OpenResult{}, ctx.Err()
			case <-time.After(100 * time.Millisecond):
			}
			if time.Since(nudged) > 5*time.Second {
				a.notify() // a peer pulls, and the round carries our wants
				nudged = time.Now()
			}
			info = a.attachmentInfo(sp.id, fv.Siblings[0].Value)
			if info.Held < info.Chunks && a.superseded(req, field, fv.Siblings[0].Value) {
				a.dropWants(sp.id, refs)
				return api.OpenResult{}, fmt.Errorf("%w: attachment %q of field %q was replaced meanwhile (a change that came since): its chunks are no longer held by peers that collected them (docs/design.md §7); open the field again for its current value",
					ErrNotHeld, m.Name, field)
			}
		}
		if info.Held < info.Chunks {
			return api.OpenResult{}, fmt.Errorf("%w: attachment %q not held yet: %d of %d chunks held; asked peers for the rest — try again",
				ErrNotHeld, m.Name, info.Held, info.Chunks)
		}
	}
	sealer := crypto.NewChunkSealer(sp.id, key)
	tmp, err := os.CreateTemp(filepath.Dir(req.Out), "."+filepath.Base(req.Out)+".part-*")
	if err != nil {
		return api.OpenResult{}, fmt.Errorf("%w: %v", ErrBadRequest, err)
	}
	defer os.Remove(tmp.Name())
	defer tmp.Close()
	whole := sha256.New()
	w := io.MultiWriter(tmp, whole)
	for i, ref := range refs {
		sealed, err := a.getChunk(sp.id, ref)
		if err != nil {
			return api.OpenResult{}, fmt.Errorf("chunk %d: %w", i, err)
		}
		plain, err := sealer.Open(ref, sealed)
		if err != nil || len(plain) != m.Chunks[i].Size {
			return api.OpenResult{}, fmt.Errorf("%w: chunk %d of %q does not open under its epoch key", errCorrupt, i, m.Name)
		}
		if _, err := w.Write(plain); err != nil {
			return api.OpenResult{}, err
		}
	}
	if hex.EncodeToString(whole.Sum(nil)) != m.SHA256 {
		return api.OpenResult{}, fmt.Errorf("%w: %q does not match its SHA-256 after assembly", errCorrupt, m.Name)
	}
	if err := tmp.Sync(); err != nil {
		return api.OpenResult{}, err
	}
	if err := tmp.Close(); err != nil {
		return api.OpenResult{}, err
	}
	if err := os.Rename(tmp.Name(), req.Out); err != nil {
		return api.OpenResult{}, err
	}
	a.dropWants(sp.id, refs)
	return api.OpenResult{Out: req.Out, Attachment: *info}, nil
}

// superseded reports whether field of the record no longer holds v (the
// manifest Open began with) as a value, winning or in conflict: its chunks
// may be collected everywhere (chunkgc.go).
func (a *Agent) superseded(req api.OpenRequest, field string, v []byte) bool {
	_, _, r, err := a.existingRecord(api.RecordRef{Space: req.Space, Record: req.Record})
	if err != nil {
		return true
	}
	fv, ok := r.Register(field)
	if !ok {
		return true
	}
	for _, s := range fv.Siblings {
		if bytes.Equal(s.Value, v) {
			return false
		}
	}
	return true
}

// ErrNotHeld: an attachment's chunks are not all held yet (they are being
// fetched). API code not_found.
var ErrNotHeld = fmt.Errorf("%w: not held", ErrNotFound)

func (a *Agent) wantChunks(space crypto.SpaceID, refs []crypto.ChunkRef) {
	st := a.attach()
	st.mu.Lock()
	w := st.wants[space]
	if w == nil {
		w = map[crypto.ChunkRef]bool{}
		st.wants[space] = w
	}
	for _, r := range refs {
		if held, _ := a.hasChunk(space, r); !held {
			w[r] = true
		}
	}
	st.mu.Unlock()
	a.notify()
}

func (a *Agent) dropWants(space crypto.SpaceID, refs []crypto.ChunkRef) {
	st := a.attach()
	st.mu.Lock()
	defer st.mu.Unlock()
	for _, r := range refs {
		delete(st.wants[space], r)
	}
	if len(st.wants[space]) == 0 {
		delete(st.wants, space)
	}
}

// --- fsync.ChunkStore ---

var _ fsync.ChunkStore = syncAdapter{}

func (s syncAdapter) ChunkRefs(space fsync.SpaceID) ([]fsync.ChunkRef, error) {
	prefix := append([]byte{pfxChunk}, space[:]...)
	var out []fsync.ChunkRef
	err := s.a.db.kv.ScanKeys(prefix, func(k []byte) error {
		if len(k) == len(prefix)+32 {
			var r fsync.ChunkRef
			copy(r[:], k[len(prefix):])
			out = append(out, r)
		}
		return nil
	})
	return out, err
}

func (s syncAdapter) WantsAllChunks() bool { return s.a.attachMode() == AttachAll }

func (s syncAdapter) ChunkWants(space fsync.SpaceID) []fsync.ChunkRef {
	st := s.a.attach()
	st.mu.Lock()
	defer st.mu.Unlock()
	var out []fsync.ChunkRef
	for r := range st.wants[crypto.SpaceID(space)] {
		out = append(out, fsync.ChunkRef(r))
	}
	slices.SortFunc(out, func(x, y fsync.ChunkRef) int { return bytes.Compare(x[:], y[:]) })
	return out
}

func (s syncAdapter) GetChunk(space fsync.SpaceID, ref fsync.ChunkRef) ([]byte, error) {
	v, err := s.a.getChunk(crypto.SpaceID(space), crypto.ChunkRef(ref))
	if errors.Is(err, errKVNotFound) {
		return nil, fsync.ErrNotFound
	}
	return v, err
}

func (s syncAdapter) PutChunk(from fsync.PeerID, space fsync.SpaceID, ref fsync.ChunkRef, data []byte) (bool, error) {
	a := s.a
	if len(data) > cdcMax+crypto.ChunkOverhead || !crypto.CheckChunk(crypto.ChunkRef(ref), data) {
		a.countChunkReject()
		return false, fsync.Reject("chunk", errors.New("chunk bytes do not match their ref"))
	}
	sid, cref := crypto.SpaceID(space), crypto.ChunkRef(ref)
	if a.erasedChunk(sid, cref) { // of an erased record (recerase.go)
		return false, fsync.Reject(RejectErased, errors.New("chunk of an erased record"))
	}
	if held, err := a.hasChunk(sid, cref); err != nil || held {
		return false, err
	}
	if err := a.checkDiskSpace(); err != nil {
		return false, err
	}
	if err := a.commitChunks(sid, []kvEntry{a.db.entry(chunkKey(sid, cref), data)}); err != nil {
		return false, err
	}
	st := a.attach()
	st.mu.Lock()
	delete(st.wants[sid], cref)
	st.mu.Unlock()
	return true, nil
}

func (a *Agent) countChunkReject() {
	a.statMu.Lock()
	defer a.statMu.Unlock()
	if a.rejected == nil {
		a.rejected = map[string]int{}
	}
	a.rejected["chunk"]++
}

// AttachStatus counts the chunks held (status.attachments).
func (a *Agent) AttachStatus() api.AttachStatus {
	out := api.AttachStatus{Mode: a.attachMode(), Collected: uint64(a.chunksCollected.Load())}
	_ = a.db.kv.ScanKeys([]byte{pfxChunk}, func(k []byte) error {
		out.Chunks++
		return nil
	})
	st := a.attach()
	st.mu.Lock()
	for _, w := range st.wants {
		out.Wanted += len(w)
	}
	st.mu.Unlock()
	if e := a.engine(); e != nil {
		c := e.Stats().Chunks
		out.SentChunks, out.SentBytes, out.ReceivedChunks, out.ReceivedBytes = c.Sent, c.BytesSent, c.Added, c.BytesIn
		out.Rejected, out.HeldBack = c.Rejected, c.HeldBack
	}
	return out
}

func init() {
	apiExtensions = append(apiExtensions, func(a *Agent, mux *http.ServeMux) {
		post(a, mux, api.PathRecordAttach, func(req api.AttachRequest) (any, error) { return a.Attach(req) })
		mux.HandleFunc("POST "+api.PathRecordOpen, func(w http.ResponseWriter, r *http.Request) {
			var req api.OpenRequest
			dec := json.NewDecoder(http.MaxBytesReader(w, r.Body, 1<<20))
			dec.DisallowUnknownFields()
			if err := dec.Decode(&req); err != nil {
				a.reply(w, nil, fmt.Errorf("%w: malformed JSON request: %v", ErrBadRequest, err))
				return
			}
			v, err := a.Open(r.Context(), req)
			a.reply(w, v, err)
		})
		mux.HandleFunc("GET "+api.PathAttachStatus, func(w http.ResponseWriter, r *http.Request) {
			a.reply(w, a.AttachStatus(), nil)
		})
	})
}
