package crypto

import (
	"crypto/ed25519"
	"crypto/sha256"
	"encoding/binary"
	"fieldsync/crypto/internal/format"
	"fmt"
	"io"
)

// Envelope version 2: a change whose body is a list of segments, each sealed
// on its own under the epoch key, with a signature over the header and a
// commitment to the segments rather than over the body. Replacing a sealed
// segment by its hash (EraseSegments) keeps the signature, the envelope ID
// and so every hash chain valid: that is how one record is erased from the
// envelopes that carry it (docs/crypto.md §2 "Envelope version 2",
// docs/design.md §6 "Erasing one record").

// ctxEnvelopeV2 is the signature domain of version 2 envelopes.
var ctxEnvelopeV2 = &ed25519.Options{Context: "fieldsync/envelope/v2"}

// MaxSegments bounds the segments of one envelope (a u16 count).
const MaxSegments = 1<<16 - 1

const (
	segSealed = 0 // flag: u32 length, then the sealed segment (nonce ‖ ciphertext)
	segErased = 1 // flag: the 32-byte segment hash, nothing else

	minSealedSegment = 1 + 4 + sealOverhead
	minErasedSegment = 1 + 32
	minSegmentedBody = 2 + minErasedSegment // u16 count and one erased segment
)

// errSegmented is what Open and OpenVerified return for a version 2
// envelope: its plaintext is a list, read with OpenSegments.
var errSegmented = malformed("envelope", ErrUnknownVersion, "segmented (version 2) envelope: open it with OpenSegments")

// Segment is one segment of an opened envelope. A version 1 change opens as
// one segment that cannot be erased.
type Segment struct {
	Erased bool     // replaced by its hash: Plain is nil
	Hash   [32]byte // SegmentHash of the sealed bytes (zero for a version 1 body)
	Plain  []byte   // the decrypted segment (newly allocated), nil if erased
}

// SegmentInfo is what anyone (a relay) can see of a segment without a key.
type SegmentInfo struct {
	Erased bool
	Hash   [32]byte
	sealed []byte // the sealed bytes in the envelope (nil if erased)
}

// Sealed returns the segment's sealed bytes as they are in the envelope
// (nil if erased).
func (s SegmentInfo) Sealed() []byte { return s.sealed }

// SegmentHash is the hash that stands for a sealed segment once erased:
// SHA-256("fieldsync/segment/v2\x00" ‖ nonce ‖ ciphertext).
func SegmentHash(sealed []byte) [32]byte {
	h := sha256.New()
	h.Write([]byte("fieldsync/segment/v2\x00"))
	h.Write(sealed)
	var out [32]byte
	h.Sum(out[:0])
	return out
}

// parseSegments decodes a version 2 body (u16 count, then the segments) into
// out (appended). It checks structure only and never panics.
func parseSegments(body []byte, out []SegmentInfo) ([]SegmentInfo, error) {
	r := format.NewReader(body, "segmented body")
	k := int(r.U16())
	if r.Err() == nil && k == 0 {
		return nil, invalid("segmented body", "no segment")
	}
	if k*minErasedSegment > r.Len() {
		return nil, truncated("segmented body")
	}
	if out == nil {
		out = make([]SegmentInfo, 0, k)
	}
	for i := 0; i < k && r.Err() == nil; i++ {
		switch r.U8() {
		case segSealed:
			n := int(r.U32())
			if r.Err() == nil && n < sealOverhead {
				return nil, invalid("segmented body", fmt.Sprintf("segment %d shorter than nonce and tag", i))
			}
			b := r.Bytes(n)
			if b != nil {
				out = append(out, SegmentInfo{Hash: SegmentHash(b), sealed: b})
			}
		case segErased:
			var s SegmentInfo
			s.Erased = true
			r.CopyTo(s.Hash[:])
			out = append(out, s)
		default:
			if r.Err() == nil {
				return nil, invalid("segmented body", fmt.Sprintf("segment %d: unknown flag", i))
			}
		}
	}
	if err := r.Err(); err != nil {
		return nil, err
	}
	if r.Len() != 0 {
		return nil, invalid("segmented body", "trailing bytes")
	}
	return out, nil
}

// commitment is SHA-256("fieldsync/segments/v2\x00" ‖ u16 count ‖ the
// segments' hashes in order).
func commitment(segs []SegmentInfo) [32]byte {
	h := sha256.New()
	h.Write([]byte("fieldsync/segments/v2\x00"))
	h.Write(binary.BigEndian.AppendUint16(nil, uint16(len(segs))))
	for i := range segs {
		h.Write(segs[i].Hash[:])
	}
	var out [32]byte
	h.Sum(out[:0])
	return out
}

// signedPrefix is what a version 2 signature covers and its ID hashes:
// header bytes 0…100 (all but the body length, which erasure changes) ‖
// u16 count ‖ commitment.
func signedPrefix(hdr []byte, segs []SegmentInfo) []byte {
	b := make([]byte, 0, format.SignedHeader+2+32)
	b = append(b, hdr[:format.SignedHeader]...)
	b = binary.BigEndian.AppendUint16(b, uint16(len(segs)))
	c := commitment(segs)
	return append(b, c[:]...)
}

// signedV2 returns the signed message of a version 2 envelope that
// ParseHeader accepted.
func signedV2(env []byte) []byte {
	h, _ := decodeHeader(env)
	segs, err := parseSegments(env[HeaderSize:HeaderSize+int(h.BodyLen)], nil)
	if err != nil {
		return nil
	}
	return signedPrefix(env, segs)
}

// hashV2 is Hash of a version 2 envelope:
// SHA-256("fieldsync/envelope-id/v2\x00" ‖ signed message). Like version 1's
// it names the content, not the signature.
func hashV2(env []byte) ([32]byte, bool) {
	h, err := ParseHeader(env)
	if err != nil || h.Version != HeaderVersion2 {
		return [32]byte{}, false
	}
	msg := signedV2(env)
	if msg == nil {
		return [32]byte{}, false
	}
	s := sha256.New()
	s.Write([]byte("fieldsync/envelope-id/v2\x00"))
	s.Write(msg)
	var out [32]byte
	s.Sum(out[:0])
	return out, true
}

// segmentAD is segment i's additional data: header bytes 0…100 ‖ u16
// count ‖ u16 i, so a segment cannot be moved to another envelope or
// position.
func segmentAD(hdr []byte, k, i int) []byte {
	ad := make([]byte, 0, format.SignedHeader+4)
	ad = append(ad, hdr[:format.SignedHeader]...)
	ad = binary.BigEndian.AppendUint16(ad, uint16(k))
	return binary.BigEndian.AppendUint16(ad, uint16(i))
}

// SealSegments builds a signed version 2 change envelope whose body holds
// segs, each sealed on its own under key (random nonce, AD = header without
// body length ‖ count ‖ index). h.Kind must be KindChange; SealSegments sets
// h.Version, h.Author, h.Epoch and h.BodyLen. The signature is
// Ed25519ctx("fieldsync/envelope/v2") over the header without its body
// length, the count and the segments' commitment.
func SealSegments(h Header, segs [][]byte, key *SpaceKey, id *Identity, rand io.Reader) ([]byte, error) {
	u, err := PrepareSegments(h, segs, key, id, rand)
	if err != nil {
		return nil, err
	}
	return u.Sign(), nil
}

// Segments lists a version 2 envelope's segments (erased or not, and their
// hashes) without a key, checking structure only (call Verify for the
// signature). A version 1 envelope has none: it returns ErrUnknownVersion.
func Segments(env []byte) ([]SegmentInfo, error) {
	h, err := ParseHeader(env)
	if err != nil {
		return nil, err
	}
	if h.Version != HeaderVersion2 {
		return nil, malformed("envelope", ErrUnknownVersion, "version 1 envelopes have no segments")
	}
	return parseSegments(env[HeaderSize:HeaderSize+int(h.BodyLen)], nil)
}

// OpenSegments verifies nothing: like OpenVerified, call it only on bytes
// Verify accepted. It decrypts every segment that is not erased. A version 1
// change opens as one segment (Erased false, Hash zero) holding its whole
// plaintext; other kinds are refused (ErrInvalid). ErrNoKey if keys lacks
// the epoch key, ErrAuth if the AEAD refuses a segment.
func OpenSegments(env []byte, keys Keyring) (Header, []Segment, error) {
	h, err := ParseHeader(env)
	if err != nil {
		return Header{}, nil, err
	}
	if h.Kind != KindChange {
		return h, nil, invalid("envelope", "only changes have segments")
	}
	if h.Version != HeaderVersion2 {
		_, pt, err := OpenVerified(env, keys)
		if err != nil {
			return h, nil, err
		}
		return h, []Segment{{Plain: pt}}, nil
	}
	infos, err := parseSegments(env[HeaderSize:HeaderSize+int(h.BodyLen)], nil)
	if err != nil {
		return h, nil, err
	}
	var k *SpaceKey
	if keys != nil {
		k, _ = keys.Key(h.Space, h.Epoch)
	}
	out := make([]Segment, len(infos))
	for i, s := range infos {
		out[i] = Segment{Erased: s.Erased, Hash: s.Hash}
		if s.Erased {
			continue
		}
		if !k.usable() {
			return h, nil, ErrNoKey
		}
		if k.id != h.Epoch {
			return h, nil, ErrAuth
		}
		pt, err := k.aead.Open(nil, s.sealed[:nonceSize], s.sealed[nonceSize:], segmentAD(env, len(infos), i))
		if err != nil {
			return h, nil, ErrAuth
		}
		out[i].Plain = pt
	}
	return h, out, nil
}

// EraseSegments returns a copy of a version 2 envelope with the segments at
// the given indexes replaced by their hashes (already erased ones stay so).
// It needs no key: a relay erases by index. The result has the same
// signature and the same Hash, and verifies like the original. An index out
// of range is ErrInvalid; a version 1 envelope is ErrUnknownVersion (its
// body cannot be cut).
func EraseSegments(env []byte, idx ...int) ([]byte, error) {
	infos, err := Segments(env)
	if err != nil {
		return nil, err
	}
	drop := make([]bool, len(infos))
	for _, i := range idx {
		if i < 0 || i >= len(infos) {
			return nil, invalid("erase segments", fmt.Sprintf("segment %d of %d", i, len(infos)))
		}
		drop[i] = true
	}
	body := binary.BigEndian.AppendUint16(make([]byte, 0, len(env)), uint16(len(infos)))
	for i, s := range infos {
		if s.Erased || drop[i] {
			body = append(body, segErased)
			body = append(body, s.Hash[:]...)
			continue
		}
		body = append(body, segSealed)
		body = binary.BigEndian.AppendUint32(body, uint32(len(s.sealed)))
		body = append(body, s.sealed...)
	}
	out := make([]byte, 0, envOverhead+len(body))
	out = append(out, env[:format.SignedHeader]...)
	out = binary.BigEndian.AppendUint32(out, uint32(len(body)))
	out = append(out, body...)
	return append(out, env[len(env)-SignatureSize:]...), nil
}
