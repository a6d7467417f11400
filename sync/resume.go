package sync

import (
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"sort"
)

// Resumable large envelopes (docs/sync.md "Resumable envelopes"). On a
// stream whose ALPN is fieldsync-sync/3 or fieldsync-watch/3, an envelope
// larger than ResumeThreshold travels in an ENVAT frame that names its
// length and SHA-256 and the offset it starts at. A receiver whose Store is
// a PartialStore writes what arrives to disk in pieces; a cut round leaves
// the prefix there, and the next round's summary phase announces it
// (PARTIAL), so a sender holding the same envelope (same length, same hash)
// sends only the rest. The envelope is verified (Ingest) only once whole,
// after its bytes were checked against the announced hash: a wrong prefix
// is dropped and the envelope fetched from zero.

// ResumeThreshold is the size above which an envelope is sent resumably on
// a /3 stream (and its received prefix kept when the round is cut).
const ResumeThreshold = 1 << 20

// MaxPartialsAnnounced bounds the partial envelopes one side announces in a
// round (PARTIAL entries); a peer that sends more is malformed.
const MaxPartialsAnnounced = 1024

// resumePiece is how many received bytes the engine gathers before it hands
// them to PartialStore.AppendPartial: a cut or a crash loses at most this
// much of what arrived (the rest of the piece is written when the stream
// ends in error).
const resumePiece = 1 << 20

const (
	partialEntrySize = 16 + 16 + 8 + 4 + 32 + 4
	envAtHeaderSize  = 16 + 16 + 8 + 4 + 32 + 4
	partialsPerFrame = MaxFrame / partialEntrySize
)

// Partial describes the prefix of one large envelope held by a receiver:
// the slot (Space, Author, Seq), the envelope's length and SHA-256 as its
// sender announced them, and how many of its first bytes are held. A
// different envelope at the same slot (a fork) has another hash and never
// mixes with it.
type Partial struct {
	Space  SpaceID
	Author PeerID
	Seq    uint64
	Total  uint32
	Hash   [32]byte
	Have   uint32
}

func (p Partial) key() envKey { return envKey{p.Space, p.Author, p.Seq} }

// matches reports whether q names the same envelope (slot, length, hash).
func (p Partial) matches(q Partial) bool {
	return p.key() == q.key() && p.Total == q.Total && p.Hash == q.Hash
}

// PartialStore is implemented by a Store that keeps the prefixes of large
// envelopes received in part (the agent keeps them sealed in Badger, with
// caps and an expiry: docs/storage.md). The engine calls it for one slot
// from one session at a time. Byte slices passed in belong to the caller.
type PartialStore interface {
	// Partials lists the partial envelopes held in space.
	Partials(space SpaceID) ([]Partial, error)
	// BeginPartial starts holding p's envelope (Have 0), replacing whatever
	// is held at its slot. ok=false: the store's caps leave no room (the
	// envelope is then received in memory, as on older streams).
	BeginPartial(p Partial) (ok bool, err error)
	// AppendPartial writes data at offset at of the partial that matches p
	// (slot, Total, Hash); at ≤ the bytes held, and bytes held from at on
	// are replaced. The piece should be durable when it returns.
	AppendPartial(p Partial, at uint32, data []byte) error
	// ReadPartial returns the held bytes (Have of them) of the partial that
	// matches p, or ErrNotFound.
	ReadPartial(p Partial) ([]byte, error)
	// DropPartial forgets whatever is held at the slot.
	DropPartial(space SpaceID, author PeerID, seq uint64) error
}

// ResumeStats counts resumable envelopes (docs/sync.md "Resumable envelopes").
type ResumeStats struct {
	Resumed      uint64 // envelope sends we started from a peer's held prefix
	BytesSkipped uint64 // the offsets those sends started at, summed (bytes not sent again)
	ResumedIn    uint64 // envelopes we received from our held prefix (started)
	Completed    uint64 // large envelopes completed from pieces held on disk
	Bad          uint64 // envelopes whose bytes did not hash as announced: dropped, fetched again from zero
	Discarded    uint64 // resumed envelopes whose prefix we no longer held: skipped this round
	PartsSent    uint64 // parts of envelopes sent within the session budget (ENVPAUSE): the rest waits
	PartsIn      uint64 // such parts received
}

func (e *Engine) partialStore() PartialStore {
	if e.chunkStore() == nil {
		return nil // /3 is /2 plus resumption
	}
	ps, _ := e.store.(PartialStore)
	return ps
}

// --- PARTIAL: k × (16 space · 16 author · u64 seq · u32 total · 32 hash · u32 have)

func encodePartials(ps []Partial) []byte {
	b := make([]byte, 0, len(ps)*partialEntrySize)
	for _, p := range ps {
		b = append(b, p.Space[:]...)
		b = append(b, p.Author[:]...)
		b = binary.BigEndian.AppendUint64(b, p.Seq)
		b = binary.BigEndian.AppendUint32(b, p.Total)
		b = append(b, p.Hash[:]...)
		b = binary.BigEndian.AppendUint32(b, p.Have)
	}
	return b
}

func decodePartials(p []byte) ([]Partial, error) {
	if len(p)%partialEntrySize != 0 {
		return nil, malformed("partial list of %d bytes is not a multiple of %d", len(p), partialEntrySize)
	}
	d := dec{b: p}
	out := make([]Partial, 0, len(p)/partialEntrySize)
	for len(d.b) > 0 && d.err == nil {
		var q Partial
		q.Space = d.id16()
		q.Author = d.id16()
		q.Seq = d.u64()
		q.Total = d.u32()
		q.Hash = d.id32()
		q.Have = d.u32()
		if d.err != nil {
			break
		}
		if q.Seq == 0 || q.Total == 0 || q.Total > MaxEnvelope || q.Have == 0 || q.Have >= q.Total {
			return nil, malformed("partial envelope entry out of bounds (seq %d, %d of %d bytes held; at most %d)", q.Seq, q.Have, q.Total, MaxEnvelope)
		}
		out = append(out, q)
	}
	return out, d.err
}

// --- ENVAT: 16 space · 16 author · u64 seq · u32 total · 32 sha256 · u32 offset · first bytes
// (from offset on). ENVCONT frames carry the rest, up to total.

type envAtHead struct {
	Partial        // Have unused
	Offset  uint32 // where the bytes of this frame start
}

func (h envAtHead) encode() []byte {
	b := make([]byte, 0, envAtHeaderSize)
	b = append(b, h.Space[:]...)
	b = append(b, h.Author[:]...)
	b = binary.BigEndian.AppendUint64(b, h.Seq)
	b = binary.BigEndian.AppendUint32(b, h.Total)
	b = append(b, h.Hash[:]...)
	return binary.BigEndian.AppendUint32(b, h.Offset)
}

func decodeEnvAt(p []byte) (envAtHead, []byte, error) {
	d := dec{b: p}
	var h envAtHead
	h.Space = d.id16()
	h.Author = d.id16()
	h.Seq = d.u64()
	h.Total = d.u32()
	h.Hash = d.id32()
	h.Offset = d.u32()
	if d.err != nil {
		return h, nil, d.err
	}
	switch {
	case h.Seq == 0:
		return h, nil, malformed("envelope seq 0")
	case h.Total == 0 || h.Total > MaxEnvelope:
		return h, nil, malformed("resumable envelope of %d bytes (1 to %d allowed)", h.Total, MaxEnvelope)
	case h.Offset >= h.Total:
		return h, nil, malformed("resume offset %d beyond the envelope's %d bytes", h.Offset, h.Total)
	case uint64(len(d.b)) > uint64(h.Total-h.Offset):
		return h, nil, malformed("chunk longer than the envelope's remaining %d bytes", h.Total-h.Offset)
	}
	return h, d.b, nil
}

// announcePartials lists, after the summary, the partial envelopes held in
// the spaces listed to the peer (the ones it is entitled to), and drops
// those the log already holds (mine: our heads).
func (s *session) announcePartials(mine map[SpaceID]Vector) ([]Partial, error) {
	ps := s.e.partialStore()
	if ps == nil {
		return nil, nil
	}
	spaces := make([]SpaceID, 0, len(mine))
	for sp := range mine {
		spaces = append(spaces, sp)
	}
	sort.Slice(spaces, func(i, j int) bool { return spaces[i].Compare(spaces[j]) < 0 })
	var out []Partial
	for _, sp := range spaces {
		held, err := ps.Partials(sp)
		if err != nil {
			return nil, err
		}
		for _, p := range held {
			if p.Seq <= mine[sp][p.Author] {
				// Arrived whole (from another peer, or by a bundle); a
				// session writing it now drops it when it completes.
				if s.e.slotBusy(p.key()) {
					continue
				}
				if err := ps.DropPartial(p.Space, p.Author, p.Seq); err != nil {
					return nil, err
				}
				continue
			}
			if p.Have == 0 || p.Have >= p.Total || p.Total > MaxEnvelope || len(out) >= MaxPartialsAnnounced {
				continue
			}
			out = append(out, p)
		}
	}
	return out, nil
}

// readPartials takes one PARTIAL frame of the peer's into s.theirPartials.
func (s *session) readPartials(p []byte) error {
	if !s.resume {
		return malformed("partial envelopes on a stream without resumption")
	}
	ps, err := decodePartials(p)
	if err != nil {
		return err
	}
	if s.theirPartials == nil {
		s.theirPartials = map[envKey]Partial{}
	}
	for _, q := range ps {
		if len(s.theirPartials) >= MaxPartialsAnnounced {
			return malformed("more than %d partial envelopes announced", MaxPartialsAnnounced)
		}
		s.theirPartials[q.key()] = q
	}
	return nil
}

// resumeFrom returns where a large envelope's send starts on this stream
// (the peer's announced prefix of exactly this envelope, else 0) and its
// hash. ok=false: send it as a plain ENV.
func (s *session) resumeFrom(env Envelope) (offset uint32, hash [32]byte, ok bool) {
	if !s.resume || len(env.Data) <= ResumeThreshold || len(env.Data) > MaxEnvelope {
		return 0, hash, false
	}
	k := envKey{env.Space, env.Author, env.Seq}
	if s.sendHashKey == k && s.sendHashLen == len(env.Data) {
		hash = s.sendHash
	} else {
		hash = sha256.Sum256(env.Data)
		s.sendHashKey, s.sendHashLen, s.sendHash = k, len(env.Data), hash
	}
	if q, held := s.theirPartials[k]; held && q.Total == uint32(len(env.Data)) && q.Hash == hash && q.Have < q.Total {
		offset = q.Have
	}
	return offset, hash, true
}

// wireLen is what sending env costs this round (the budget counts it).
func (s *session) wireLen(env Envelope) int {
	off, _, _ := s.resumeFrom(env)
	return len(env.Data) - int(off)
}

// budgetPart returns how many bytes of env to send this round when the
// session budget cannot take all that is left of it (n bytes) and it is
// resumable on this stream: what the budget leaves (at least LargeEnvelope in
// a round that has sent nothing yet, so every round makes progress); 0: the
// usual rules apply (it fits, no session budget, the daily budget holds it,
// or too little room is left).
func (s *session) budgetPart(env Envelope, n int) int {
	if !s.resume || n <= 0 {
		return 0
	}
	if _, _, ok := s.resumeFrom(env); !ok {
		return 0
	}
	room := s.budget.room()
	if room < 0 || int64(n) <= room {
		return 0
	}
	if len(env.Data) > LargeEnvelope && s.e.dailySpent() {
		return 0
	}
	part := room
	if s.budget.sent == 0 {
		part = max(room, LargeEnvelope)
	} else if room < LargeEnvelope {
		return 0
	}
	if part >= int64(n) {
		return 0
	}
	return int(part)
}

// sendEnvelopePart sends the next part bytes of a resumable envelope, then
// ENVPAUSE: the receiver keeps them, the rest waits for a later round.
func (s *session) sendEnvelopePart(env Envelope, part int) error {
	offset, hash, _ := s.resumeFrom(env)
	return s.sendEnvelopeAt(env, offset, hash, part)
}

// sendEnvelopeAt sends a large envelope from offset on, in an ENVAT frame and
// ENVCONT frames: all of the rest, or (limit > 0) limit bytes of it followed
// by ENVPAUSE.
func (s *session) sendEnvelopeAt(env Envelope, offset uint32, hash [32]byte, limit int) error {
	if !s.shrunkOut {
		// What a cut loses is what was in flight: keep it small
		// (ChunkSocketBuffer, as the chunk phase does).
		s.shrunkOut = true
		if tc := tcpOf(s.raw); tc != nil {
			_ = tc.SetWriteBuffer(ChunkSocketBuffer)
		}
	}
	if offset > 0 {
		s.e.mu.Lock()
		s.e.stats.Resume.Resumed++
		s.e.stats.Resume.BytesSkipped += uint64(offset)
		s.e.mu.Unlock()
	}
	data := env.Data[offset:]
	paused := limit > 0 && limit < len(data)
	if paused {
		data = data[:limit]
	}
	if s.e.sendTamper != nil {
		offset, data = s.e.sendTamper(env, offset, data)
	}
	h := envAtHead{Partial: Partial{Space: env.Space, Author: env.Author, Seq: env.Seq, Total: uint32(len(env.Data)), Hash: hash}, Offset: offset}
	if err := s.writeFramed(frameEnvAt, h.encode(), data); err != nil {
		return err
	}
	if paused {
		return s.write(frameEnvPause)
	}
	s.sent.Add(1)
	return nil
}

// largeRecv is a resumable envelope being received: in memory (mem), to
// the PartialStore (persist: piece gathers bytes from pieceAt on), or
// discarded (a resumed envelope whose prefix we no longer hold).
type largeRecv struct {
	h       envAtHead
	got     uint32 // bytes of the envelope received so far, from 0 (held prefix included)
	persist bool
	discard bool
	mem     []byte
	piece   []byte
	pieceAt uint32
}

// claimSlot marks a slot as being written by one session; false if another
// session writes it now.
func (e *Engine) claimSlot(k envKey) bool {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.resuming[k] {
		return false
	}
	if e.resuming == nil {
		e.resuming = map[envKey]bool{}
	}
	e.resuming[k] = true
	return true
}

func (e *Engine) slotBusy(k envKey) bool {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.resuming[k]
}

func (e *Engine) releaseSlot(k envKey) {
	e.mu.Lock()
	delete(e.resuming, k)
	e.mu.Unlock()
}

// startLarge begins receiving an ENVAT envelope.
func (s *session) startLarge(h envAtHead, first []byte, skipped bool) (*largeRecv, error) {
	e := s.e
	if !s.resume {
		return nil, malformed("resumable envelope on a stream without resumption")
	}
	if !s.shrunkIn {
		s.shrunkIn = true
		if tc := tcpOf(s.raw); tc != nil {
			_ = tc.SetReadBuffer(ChunkSocketBuffer)
		}
	}
	lr := &largeRecv{h: h, got: h.Offset}
	ps := e.partialStore()
	k := h.key()
	switch {
	case skipped:
		lr.discard = true
	case h.Offset == 0 && (ps == nil || h.Total <= ResumeThreshold || !e.claimSlot(k)):
		lr.mem = make([]byte, 0, min(h.Total, MaxFrame))
	case h.Offset == 0:
		ok, err := ps.BeginPartial(Partial{Space: h.Space, Author: h.Author, Seq: h.Seq, Total: h.Total, Hash: h.Hash})
		if err != nil || !ok {
			e.releaseSlot(k)
			if err != nil {
				return nil, fmt.Errorf("begin partial envelope: %w", err)
			}
			lr.mem = make([]byte, 0, min(h.Total, MaxFrame))
			break
		}
		lr.persist = true
	default:
		// Resumed: the offset must be within the prefix we hold of exactly
		// this envelope. If we no longer hold one (it arrived whole from
		// another peer meanwhile, or expired), the bytes are skipped and the
		// next round sorts it out.
		var held *Partial
		if ps != nil {
			list, err := ps.Partials(h.Space)
			if err != nil {
				return nil, err
			}
			for i := range list {
				if list[i].matches(h.Partial) {
					held = &list[i]
				}
			}
		}
		if held != nil && h.Offset > held.Have {
			return nil, malformed("resume offset %d beyond the %d bytes we hold of that envelope", h.Offset, held.Have)
		}
		if held == nil || !e.claimSlot(k) {
			lr.discard = true
			e.mu.Lock()
			e.stats.Resume.Discarded++
			e.mu.Unlock()
			break
		}
		lr.persist = true
		e.mu.Lock()
		e.stats.Resume.ResumedIn++
		e.mu.Unlock()
	}
	lr.pieceAt = h.Offset
	return lr, s.addLarge(lr, first)
}

// addLarge takes the next bytes of a resumable envelope.
func (s *session) addLarge(lr *largeRecv, p []byte) error {
	if uint64(lr.got)+uint64(len(p)) > uint64(lr.h.Total) {
		return malformed("envelope longer than announced")
	}
	lr.got += uint32(len(p))
	switch {
	case lr.discard:
	case lr.persist:
		for len(p) > 0 {
			n := min(len(p), resumePiece-len(lr.piece))
			lr.piece = append(lr.piece, p[:n]...)
			p = p[n:]
			if len(lr.piece) >= resumePiece {
				if err := s.flushPiece(lr); err != nil {
					return err
				}
			}
		}
	default:
		lr.mem = append(lr.mem, p...)
	}
	return nil
}

func (s *session) flushPiece(lr *largeRecv) error {
	if !lr.persist || len(lr.piece) == 0 {
		return nil
	}
	if err := s.e.partialStore().AppendPartial(lr.h.Partial, lr.pieceAt, lr.piece); err != nil {
		return fmt.Errorf("store part of an envelope: %w", err)
	}
	lr.pieceAt += uint32(len(lr.piece))
	lr.piece = lr.piece[:0]
	return nil
}

// pauseLarge ends the current resumable envelope for this round (ENVPAUSE):
// what arrived is kept for the next.
func (s *session) pauseLarge(lr *largeRecv) error {
	e := s.e
	e.mu.Lock()
	e.stats.Resume.PartsIn++
	e.mu.Unlock()
	if !lr.persist {
		return nil // in memory (or skipped): nothing to keep
	}
	defer e.releaseSlot(lr.h.key())
	return s.flushPiece(lr)
}

// abandonLarge runs when the stream ends inside a resumable envelope: what
// arrived is written (best effort) and the slot released.
func (s *session) abandonLarge(lr *largeRecv) {
	if lr == nil || !lr.persist {
		return
	}
	_ = s.flushPiece(lr)
	s.e.releaseSlot(lr.h.key())
}

// finishLarge returns a complete resumable envelope's bytes, checked
// against the announced hash; nil: nothing to deliver (discarded, or its
// bytes did not match and were dropped).
func (s *session) finishLarge(lr *largeRecv) ([]byte, error) {
	e := s.e
	h := lr.h
	if lr.discard {
		return nil, nil
	}
	data := lr.mem
	if lr.persist {
		defer e.releaseSlot(h.key())
		if err := s.flushPiece(lr); err != nil {
			return nil, err
		}
		ps := e.partialStore()
		var err error
		data, err = ps.ReadPartial(Partial{Space: h.Space, Author: h.Author, Seq: h.Seq, Total: h.Total, Hash: h.Hash, Have: h.Total})
		if err != nil && !errors.Is(err, ErrNotFound) {
			return nil, fmt.Errorf("read partial envelope: %w", err)
		}
		// Whatever happens next, the prefix has served: a good envelope is
		// ingested now, a bad one is fetched again from zero.
		if derr := ps.DropPartial(h.Space, h.Author, h.Seq); derr != nil {
			return nil, fmt.Errorf("drop partial envelope: %w", derr)
		}
		e.mu.Lock()
		e.stats.Resume.Completed++
		e.mu.Unlock()
	}
	if uint32(len(data)) != h.Total || sha256.Sum256(data) != h.Hash {
		e.mu.Lock()
		e.stats.Resume.Bad++
		e.mu.Unlock()
		e.countReject("resume")
		s.rejected.Add(1)
		e.logw.limited("resume-bad", slog.LevelWarn, "a large envelope's bytes do not match the length and hash its sender announced; dropped, it will be fetched again from the start",
			"peer", s.peer.ID.String(), "space", h.Space.String(), "author", h.Author.String(), "seq", h.Seq, "offset", h.Offset)
		return nil, nil
	}
	return data, nil
}
