package agent

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"sort"
	"time"

	"fieldsync/agent/api"
	"fieldsync/crypto"
	fsync "fieldsync/sync"
)

// Partial envelopes (docs/sync.md "Resumable envelopes", docs/storage.md
// key space U): the prefix of a large envelope whose round was cut, kept so
// that the next round, with any peer holding the same envelope, sends only
// the rest. They are plain bytes as received, unverified: the engine checks
// the whole envelope against the announced hash, then Ingest verifies it as
// any other, and the prefix is dropped either way.

const pfxPartial = 'U' // U space author seq(8) 'm' -> meta; U space author seq(8) 'p' offset(4) -> bytes

// Bounds of the partial envelopes held (docs/storage.md): every envelope
// started reserves its whole length against them; the oldest are dropped
// to make room, and an envelope larger than a cap is received in memory.
const (
	maxPartialBytes      = 256 << 20
	maxPartialSpaceBytes = 96 << 20
	partialTTL           = 7 * 24 * time.Hour
)

const partialMetaSize = 4 + 32 + 4 + 8

var errPartialMismatch = errors.New("no partial envelope held with that length and hash")

type partialMeta struct {
	fsync.Partial
	updated int64 // unix nanoseconds of the last piece
}

func partialSlot(space fsync.SpaceID, author fsync.PeerID, seq uint64) []byte {
	k := make([]byte, 0, 1+16+16+8+1+4)
	k = append(k, pfxPartial)
	k = append(k, space[:]...)
	k = append(k, author[:]...)
	return binary.BigEndian.AppendUint64(k, seq)
}

func partialMetaKey(space fsync.SpaceID, author fsync.PeerID, seq uint64) []byte {
	return append(partialSlot(space, author, seq), 'm')
}

func partialPieceKey(space fsync.SpaceID, author fsync.PeerID, seq uint64, at uint32) []byte {
	return binary.BigEndian.AppendUint32(append(partialSlot(space, author, seq), 'p'), at)
}

func (m partialMeta) marshal() []byte {
	b := binary.BigEndian.AppendUint32(nil, m.Total)
	b = append(b, m.Hash[:]...)
	b = binary.BigEndian.AppendUint32(b, m.Have)
	return binary.BigEndian.AppendUint64(b, uint64(m.updated))
}

// readPartialMeta reads the meta at key (a meta key). A value that does not
// parse is reported corrupt.
func (a *Agent) readPartialMeta(key []byte) (partialMeta, error) {
	v, err := a.db.get(key)
	if err != nil {
		return partialMeta{}, err
	}
	if len(v) != partialMetaSize || len(key) != 1+16+16+8+1 {
		return partialMeta{}, fmt.Errorf("%w: partial envelope meta of %d bytes", errCorrupt, len(v))
	}
	var m partialMeta
	copy(m.Space[:], key[1:17])
	copy(m.Author[:], key[17:33])
	m.Seq = binary.BigEndian.Uint64(key[33:41])
	m.Total = binary.BigEndian.Uint32(v)
	copy(m.Hash[:], v[4:36])
	m.Have = binary.BigEndian.Uint32(v[36:40])
	m.updated = int64(binary.BigEndian.Uint64(v[40:48]))
	if m.Have > m.Total || m.Total > fsync.MaxEnvelope {
		return partialMeta{}, fmt.Errorf("%w: partial envelope meta out of bounds", errCorrupt)
	}
	return m, nil
}

// partialMetas lists the partial envelopes under prefix (U, or U space).
// Expired or unreadable ones are dropped.
func (a *Agent) partialMetas(prefix []byte) ([]partialMeta, error) {
	var keys [][]byte
	err := a.db.kv.ScanKeys(prefix, func(k []byte) error {
		if len(k) == 1+16+16+8+1 && k[len(k)-1] == 'm' {
			keys = append(keys, bytes.Clone(k))
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	var out []partialMeta
	for _, k := range keys {
		m, err := a.readPartialMeta(k)
		if errors.Is(err, errKVNotFound) {
			continue
		}
		if err != nil || time.Since(time.Unix(0, m.updated)) > partialTTL {
			if errors.Is(err, errCorrupt) {
				a.countCorrupt(k)
			} else if err != nil {
				return nil, err
			}
			if err := a.dropPartialSlot(k[:len(k)-1]); err != nil {
				return nil, err
			}
			continue
		}
		out = append(out, m)
	}
	return out, nil
}

// dropPartialSlot deletes a slot's meta and pieces.
func (a *Agent) dropPartialSlot(slot []byte) error {
	var del []kvEntry
	err := a.db.kv.ScanKeys(slot, func(k []byte) error {
		del = append(del, kvEntry{Key: bytes.Clone(k), Del: true})
		return nil
	})
	if err != nil || len(del) == 0 {
		return err
	}
	return a.db.kv.CommitGroups([][]kvEntry{del})[0]
}

// --- fsync.PartialStore ---

var _ fsync.PartialStore = syncAdapter{}

func (s syncAdapter) Partials(space fsync.SpaceID) ([]fsync.Partial, error) {
	a := s.a
	a.partialMu.Lock()
	defer a.partialMu.Unlock()
	ms, err := a.partialMetas(append([]byte{pfxPartial}, space[:]...))
	if err != nil {
		return nil, err
	}
	out := make([]fsync.Partial, 0, len(ms))
	for _, m := range ms {
		out = append(out, m.Partial)
	}
	return out, nil
}

func (s syncAdapter) BeginPartial(p fsync.Partial) (bool, error) {
	a := s.a
	if p.Total > maxPartialSpaceBytes || p.Total > fsync.MaxEnvelope {
		return false, nil
	}
	if err := a.checkDiskSpace(); err != nil {
		return false, nil // the envelope is received in memory; nothing kept
	}
	a.partialMu.Lock()
	defer a.partialMu.Unlock()
	if err := a.dropPartialSlot(partialSlot(p.Space, p.Author, p.Seq)); err != nil {
		return false, err
	}
	all, err := a.partialMetas([]byte{pfxPartial})
	if err != nil {
		return false, err
	}
	// Oldest first: they make room for the new one.
	sort.Slice(all, func(i, j int) bool { return all[i].updated < all[j].updated })
	var total, inSpace int64
	for _, m := range all {
		total += int64(m.Total)
		if m.Space == p.Space {
			inSpace += int64(m.Total)
		}
	}
	for _, m := range all {
		if total+int64(p.Total) <= maxPartialBytes && inSpace+int64(p.Total) <= maxPartialSpaceBytes {
			break
		}
		if m.Space != p.Space && total+int64(p.Total) <= maxPartialBytes {
			continue // only this space is over its cap
		}
		if err := a.dropPartialSlot(partialSlot(m.Space, m.Author, m.Seq)); err != nil {
			return false, err
		}
		total -= int64(m.Total)
		if m.Space == p.Space {
			inSpace -= int64(m.Total)
		}
	}
	meta := partialMeta{Partial: p, updated: time.Now().UnixNano()}
	meta.Have = 0
	k := partialMetaKey(p.Space, p.Author, p.Seq)
	if err := a.commitChunks(crypto.SpaceID(p.Space), []kvEntry{a.db.entry(k, meta.marshal())}); err != nil {
		return false, err
	}
	return true, nil
}

func (s syncAdapter) AppendPartial(p fsync.Partial, at uint32, data []byte) error {
	a := s.a
	if err := a.checkDiskSpace(); err != nil {
		return err
	}
	a.partialMu.Lock()
	defer a.partialMu.Unlock()
	mk := partialMetaKey(p.Space, p.Author, p.Seq)
	m, err := a.readPartialMeta(mk)
	if err != nil {
		return err
	}
	if m.Total != p.Total || m.Hash != p.Hash {
		return errPartialMismatch
	}
	if at > m.Have || uint64(at)+uint64(len(data)) > uint64(m.Total) {
		return fmt.Errorf("partial envelope: %d bytes at %d do not follow the %d held of %d", len(data), at, m.Have, m.Total)
	}
	var entries []kvEntry
	if at < m.Have {
		// Bytes held from at on are replaced: pieces starting there go, a
		// piece across at is cut short.
		slot := append(partialSlot(p.Space, p.Author, p.Seq), 'p')
		var keys [][]byte
		if err := a.db.kv.ScanKeys(slot, func(k []byte) error {
			keys = append(keys, bytes.Clone(k))
			return nil
		}); err != nil {
			return err
		}
		for _, k := range keys {
			if len(k) != len(slot)+4 {
				continue
			}
			start := binary.BigEndian.Uint32(k[len(slot):])
			if start >= at {
				entries = append(entries, kvEntry{Key: k, Del: true})
				continue
			}
			v, err := a.db.get(k)
			if err != nil {
				return err
			}
			if uint64(start)+uint64(len(v)) > uint64(at) {
				entries = append(entries, a.db.entry(k, v[:at-start]))
			}
		}
	}
	m.Have = at + uint32(len(data))
	m.updated = time.Now().UnixNano()
	entries = append(entries, a.db.entry(partialPieceKey(p.Space, p.Author, p.Seq, at), data), a.db.entry(mk, m.marshal()))
	return a.commitChunks(crypto.SpaceID(p.Space), entries)
}

func (s syncAdapter) ReadPartial(p fsync.Partial) ([]byte, error) {
	a := s.a
	a.partialMu.Lock()
	defer a.partialMu.Unlock()
	m, err := a.readPartialMeta(partialMetaKey(p.Space, p.Author, p.Seq))
	if errors.Is(err, errKVNotFound) || errors.Is(err, errCorrupt) {
		return nil, fsync.ErrNotFound
	}
	if err != nil {
		return nil, err
	}
	if m.Total != p.Total || m.Hash != p.Hash {
		return nil, fsync.ErrNotFound
	}
	slot := append(partialSlot(p.Space, p.Author, p.Seq), 'p')
	out := make([]byte, 0, m.Have)
	err = a.db.scan(slot, func(k, v []byte) error {
		if len(k) != len(slot)+4 || binary.BigEndian.Uint32(k[len(slot):]) != uint32(len(out)) || uint64(len(out))+uint64(len(v)) > uint64(m.Have) {
			return fmt.Errorf("%w: partial envelope pieces do not follow each other", errCorrupt)
		}
		out = append(out, v...)
		return nil
	}, nil)
	if errors.Is(err, errCorrupt) {
		// A piece lost or damaged at rest: the engine sees a short
		// envelope, drops it and fetches it again.
		return nil, fsync.ErrNotFound
	}
	if err != nil {
		return nil, err
	}
	return out, nil
}

func (s syncAdapter) DropPartial(space fsync.SpaceID, author fsync.PeerID, seq uint64) error {
	a := s.a
	a.partialMu.Lock()
	defer a.partialMu.Unlock()
	return a.dropPartialSlot(partialSlot(space, author, seq))
}

// PartialStatus counts the partial envelopes held (status.partial_envelopes).
func (a *Agent) PartialStatus() api.PartialStatus {
	a.partialMu.Lock()
	ms, _ := a.partialMetas([]byte{pfxPartial})
	a.partialMu.Unlock()
	var out api.PartialStatus
	for _, m := range ms {
		out.Held++
		out.HeldBytes += uint64(m.Have)
	}
	if e := a.engine(); e != nil {
		r := e.Stats().Resume
		out.Resumed, out.BytesSkipped, out.ResumedIn, out.Completed, out.Bad = r.Resumed, r.BytesSkipped, r.ResumedIn, r.Completed, r.Bad
	}
	return out
}
