package crypto

import (
	"bytes"
	"crypto/ed25519"
	"crypto/hmac"
	"crypto/sha256"
	"fmt"
	"slices"
	"time"

	"fieldsync/crypto/internal/format"
)

// magicRecordErasure begins a record-erase marker.
const magicRecordErasure = "FSRE"

// ctxRecordErasure is the signature domain of record-erase markers.
var ctxRecordErasure = &ed25519.Options{Context: "fieldsync/record-erasure/v1"}

// MaxErasedSegments bounds the segments one record-erase marker names.
const MaxErasedSegments = 1 << 16

// maxRecordErasure is the largest record-erase marker.
const maxRecordErasure = recordErasureHead + segRefSize*MaxErasedSegments + 4 + 32*MaxErasedSegments + SignatureSize

// segRefSize is one SegmentRef's size: author (16), seq (8), index (2).
const segRefSize = 16 + 8 + 2

// recordErasureHead is the fixed part before the references: magic and
// version (5), space (16), nonce (16), owner (1 + 26), tag epoch (16), tag
// (32), author (16), issued at (8), count (4).
const recordErasureHead = 5 + 16 + 16 + 1 + idTextLen + 16 + 32 + 16 + 8 + 4

// SegmentRef names one segment of one version 2 envelope: (author, seq) in
// the marker's space, and the segment's index.
type SegmentRef struct {
	Author DeviceID
	Seq    uint64
	Index  uint16
}

func (r SegmentRef) compare(o SegmentRef) int {
	if c := bytes.Compare(r.Author[:], o.Author[:]); c != 0 {
		return c
	}
	if r.Seq != o.Seq {
		if r.Seq < o.Seq {
			return -1
		}
		return 1
	}
	return int(r.Index) - int(o.Index)
}

// RecordErasure is a record-erase marker: a device's signed statement that
// the segments it lists — every segment of one record, as the erasing device
// found them in its log — are erased (docs/crypto.md, "Record-erase
// marker"; docs/design.md §6, "Erasing one record"). It is clear and holds
// no case data: the record is named only by a keyed hash of its ID (Tag,
// keyed with a key derived from the epoch key TagEpoch), so that relays and
// replicas without the key can drop the segments by reference, and
// replicas with it can recognise the record.
//
// Binary: "FSRE" | 1 | space (16) | nonce (16) | owner fingerprint (u8 26 +
// ID text) | tag epoch (16) | tag (32) | author device (16) | issued at (i64
// Unix seconds) | u32 n (1 … 65536) | n × (author (16) | seq (u64) | segment
// index (u16)), strictly ascending | u32 m (0 … 65536) | m × chunk ref (32),
// strictly ascending | signature (64, Ed25519ctx
// "fieldsync/record-erasure/v1" over the bytes before it).
type RecordErasure struct {
	Space    SpaceID
	Nonce    [16]byte
	Owner    string // owning bureau fingerprint
	TagEpoch KeyID
	Tag      [32]byte
	Author   DeviceID
	IssuedAt time.Time
	Segments []SegmentRef // sorted, unique
	// Chunks are the attachment chunks only this record's manifests name
	// (the eraser checked the space's other records): every replica drops
	// them and takes them from no peer again. Sorted, unique; may be empty.
	Chunks []ChunkRef

	sig []byte
}

// RecordTag is the keyed hash that names a record in a record-erase marker:
// HMAC-SHA256(key = DeriveKey(epoch key, "record tag"),
// "fieldsync/record-tag/v1\x00" ‖ record ID).
func RecordTag(key *SpaceKey, record string) [32]byte {
	k := DeriveKey(&key.key, "record tag")
	defer clear(k[:])
	m := hmac.New(sha256.New, k[:])
	m.Write([]byte("fieldsync/record-tag/v1\x00"))
	m.Write([]byte(record))
	var out [32]byte
	m.Sum(out[:0])
	return out
}

func (e *RecordErasure) encode() []byte {
	b := make([]byte, 0, recordErasureHead+segRefSize*len(e.Segments))
	b = append(b, magicRecordErasure...)
	b = append(b, objectVersion)
	b = append(b, e.Space[:]...)
	b = append(b, e.Nonce[:]...)
	b = format.AppendStr8(b, e.Owner)
	b = append(b, e.TagEpoch[:]...)
	b = append(b, e.Tag[:]...)
	b = append(b, e.Author[:]...)
	b = appendTime(b, e.IssuedAt)
	b = format.AppendU32(b, uint32(len(e.Segments)))
	for _, r := range e.Segments {
		b = append(b, r.Author[:]...)
		b = format.AppendU64(b, r.Seq)
		b = append(b, byte(r.Index>>8), byte(r.Index))
	}
	b = format.AppendU32(b, uint32(len(e.Chunks)))
	for _, c := range e.Chunks {
		b = append(b, c[:]...)
	}
	return b
}

func (e *RecordErasure) check() error {
	if _, err := parseID("owner fingerprint", e.Owner); err != nil {
		return err
	}
	if SpaceIDFor(e.Owner, e.Nonce) != e.Space {
		return invalid("record-erase marker", "the space ID is not bound to the owning bureau by this nonce")
	}
	if e.Author.IsZero() {
		return invalid("record-erase marker", "no author")
	}
	if len(e.Segments) == 0 || len(e.Segments) > MaxErasedSegments {
		return invalid("record-erase marker", "want 1 to 65536 segments")
	}
	for i := 1; i < len(e.Segments); i++ {
		if e.Segments[i-1].compare(e.Segments[i]) >= 0 {
			return invalid("record-erase marker", "segments not sorted and unique")
		}
	}
	for _, r := range e.Segments {
		if r.Seq == 0 {
			return invalid("record-erase marker", "seq 0")
		}
	}
	if len(e.Chunks) > MaxErasedSegments {
		return invalid("record-erase marker", "more than 65536 chunks")
	}
	for i := 1; i < len(e.Chunks); i++ {
		if bytes.Compare(e.Chunks[i-1][:], e.Chunks[i][:]) >= 0 {
			return invalid("record-erase marker", "chunks not sorted and unique")
		}
	}
	return nil
}

// NewRecordErasure signs a record-erase marker by id at time at. The record
// is named by RecordTag(tagKey, record); segs are sorted here.
func NewRecordErasure(id *Identity, space SpaceID, nonce [16]byte, owner string, tagKey *SpaceKey, record string, segs []SegmentRef, chunks []ChunkRef, at time.Time) (*RecordErasure, error) {
	if !tagKey.usable() {
		return nil, fmt.Errorf("record-erase marker: %w", ErrNoKey)
	}
	e := &RecordErasure{Space: space, Nonce: nonce, Owner: owner, TagEpoch: tagKey.id, Tag: RecordTag(tagKey, record),
		Author: id.ID(), IssuedAt: time.Unix(at.Unix(), 0).UTC(), Segments: slices.Clone(segs)}
	slices.SortFunc(e.Segments, SegmentRef.compare)
	e.Segments = slices.Compact(e.Segments)
	e.Chunks = slices.Clone(chunks)
	slices.SortFunc(e.Chunks, func(x, y ChunkRef) int { return bytes.Compare(x[:], y[:]) })
	e.Chunks = slices.Compact(e.Chunks)
	if err := e.check(); err != nil {
		return nil, err
	}
	e.sig = signCtx(id.sign, e.encode(), ctxRecordErasure)
	return e, nil
}

// Marshal returns the signed binary form (nil for an unsigned marker).
func (e *RecordErasure) Marshal() []byte {
	if e == nil || e.sig == nil {
		return nil
	}
	return append(e.encode(), e.sig...)
}

// IsRecordErasure reports whether data begins as a record-erase marker does.
func IsRecordErasure(data []byte) bool { return bytes.HasPrefix(data, []byte(magicRecordErasure)) }

// ParseRecordErasure decodes a record-erase marker and checks its form (as
// ParseErasure, plus sorted unique references). It never panics.
func ParseRecordErasure(data []byte) (*RecordErasure, error) {
	if len(data) > maxRecordErasure {
		return nil, malformed("record-erase marker", ErrOversize, "")
	}
	rd := format.NewReader(data, "record-erase marker")
	rd.Magic(magicRecordErasure, objectVersion)
	e := &RecordErasure{}
	rd.CopyTo(e.Space[:])
	rd.CopyTo(e.Nonce[:])
	e.Owner = rd.Str(false, idTextLen)
	rd.CopyTo(e.TagEpoch[:])
	rd.CopyTo(e.Tag[:])
	rd.CopyTo(e.Author[:])
	e.IssuedAt = readTime(rd)
	n := int(rd.U32())
	if rd.Err() == nil && (n == 0 || n > MaxErasedSegments || n*segRefSize+4+SignatureSize > rd.Len()) {
		return nil, invalid("record-erase marker", "segment count does not match the length")
	}
	for i := 0; i < n && rd.Err() == nil; i++ {
		var r SegmentRef
		rd.CopyTo(r.Author[:])
		r.Seq = rd.U64()
		r.Index = rd.U16()
		e.Segments = append(e.Segments, r)
	}
	m := int(rd.U32())
	if rd.Err() == nil && (m > MaxErasedSegments || m*32+SignatureSize != rd.Len()) {
		return nil, invalid("record-erase marker", "chunk count does not match the length")
	}
	for i := 0; i < m && rd.Err() == nil; i++ {
		var c ChunkRef
		rd.CopyTo(c[:])
		e.Chunks = append(e.Chunks, c)
	}
	e.sig = bytes.Clone(rd.Bytes(SignatureSize))
	if err := rd.Done(); err != nil {
		return nil, err
	}
	if err := e.check(); err != nil {
		return nil, err
	}
	return e, nil
}

// Verify checks that the marker is signed by the device whose public keys
// are author (ErrSignature otherwise).
func (e *RecordErasure) Verify(author DevicePublic) error {
	if e == nil || e.sig == nil {
		return wrapf(ErrSignature, "record-erase marker is not signed")
	}
	if author.ID() != e.Author {
		return wrapf(ErrSignature, "record-erase marker of device %s checked against device %s", e.Author, author.ID())
	}
	if !verifyCtx(author.SignKey, e.encode(), e.sig, ctxRecordErasure) {
		return wrapf(ErrSignature, "record-erase marker in space %s", e.Space)
	}
	return nil
}

// ID is SHA-256 of the signed marker: how replicas key the markers they keep.
func (e *RecordErasure) ID() [32]byte { return sha256.Sum256(e.Marshal()) }
