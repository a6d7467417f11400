package crypto

import (
	"bytes"
	"compress/flate"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fieldsync/crypto/internal/format"
	"fmt"
	"io"
	"sync"
)

// Cold envelopes (docs/format.md, "Cold envelope (version 1)"): a local
// storage form of a version 2 change envelope, never sent. AEAD sealing is
// deterministic given key, nonce, plaintext and additional data, so a
// device holding the epoch key can keep a segment as its nonce and
// plaintext and seal it again, byte for byte, when the envelope is read.
// What is kept: the envelope's SHA-256 (checked on thaw), its signature, per
// segment its nonce (sealed) or its hash (cut), and the DEFLATE-compressed
// signed header and segment plaintexts. The plaintexts are case data: the
// agent stores a cold envelope only inside its store-key sealing, as it
// stores record states (docs/storage.md, "Cold envelopes").

// ColdVersion1 is the first byte of a cold envelope (version 1). An
// envelope's first byte is its header version (1 or 2), never this.
const ColdVersion1 = 0xC1

const (
	coldFixed     = 1 + 32 + SignatureSize + 2 // version, SHA-256, signature, count
	coldMaxHeader = format.SignedHeader
)

// errCold names the cold form in every error it returns.
func errCold(detail string) error { return invalid("cold envelope", detail) }

// IsCold reports whether a stored value is a cold envelope of any version
// (first byte 0xC0 to 0xCF) rather than an envelope. ThawEnvelope knows
// version 1 only and names any other as an unknown version.
func IsCold(b []byte) bool { return len(b) > 0 && b[0]&0xF0 == 0xC0 }

// coldLevel is the DEFLATE level cold envelopes are written at: on W1's
// envelopes level 4 is as small as 9 (within 0.3%) and twice as fast.
const coldLevel = 4

var flateWriters = sync.Pool{New: func() any {
	w, _ := flate.NewWriter(nil, coldLevel)
	return w
}}

var flateReaders = sync.Pool{New: func() any { return flate.NewReader(bytes.NewReader(nil)) }}

// FreezeEnvelope returns the cold form of a version 2 change envelope,
// opening its sealed segments with keys. It checks that the cold form thaws
// (with the same keys) to env byte for byte, so it never returns a form
// that cannot be read back. Verify env first: FreezeEnvelope checks its
// structure, not its signature. ErrNoKey without the epoch key (when a
// segment is sealed); ErrUnknownVersion for a version 1 envelope.
func FreezeEnvelope(env []byte, keys Keyring) ([]byte, error) {
	h, err := ParseHeader(env)
	if err != nil {
		return nil, err
	}
	if h.Version != HeaderVersion2 || h.Kind != KindChange {
		return nil, malformed("envelope", ErrUnknownVersion, "only version 2 changes have a cold form")
	}
	infos, err := parseSegments(env[HeaderSize:HeaderSize+int(h.BodyLen)], nil)
	if err != nil {
		return nil, err
	}
	var k *SpaceKey
	if keys != nil {
		k, _ = keys.Key(h.Space, h.Epoch)
	}
	id := sha256.Sum256(env)
	out := make([]byte, 0, len(env)/2)
	out = append(out, ColdVersion1)
	out = append(out, id[:]...)
	out = append(out, env[len(env)-SignatureSize:]...)
	out = binary.BigEndian.AppendUint16(out, uint16(len(infos)))
	for _, s := range infos {
		if s.Erased {
			out = append(out, segErased)
		} else {
			out = append(out, segSealed)
		}
	}
	for _, s := range infos {
		if s.Erased {
			out = append(out, s.Hash[:]...)
		} else {
			out = append(out, s.sealed[:nonceSize]...)
		}
	}
	var plain bytes.Buffer
	plain.Write(env[:format.SignedHeader])
	for i, s := range infos {
		if s.Erased {
			continue
		}
		if !k.usable() {
			return nil, ErrNoKey
		}
		if k.id != h.Epoch {
			return nil, ErrAuth
		}
		pt, err := k.aead.Open(nil, s.sealed[:nonceSize], s.sealed[nonceSize:], segmentAD(env, len(infos), i))
		if err != nil {
			return nil, ErrAuth
		}
		plain.Write(binary.AppendUvarint(nil, uint64(len(pt))))
		plain.Write(pt)
		clear(pt)
	}
	buf := bytes.NewBuffer(out)
	w := flateWriters.Get().(*flate.Writer)
	w.Reset(buf)
	_, err = w.Write(plain.Bytes())
	if err == nil {
		err = w.Close()
	}
	flateWriters.Put(w)
	clear(plain.Bytes())
	if err != nil {
		return nil, fmt.Errorf("freeze envelope: %v", err)
	}
	cold := buf.Bytes()
	back, err := ThawEnvelope(cold, keys)
	if err != nil {
		return nil, fmt.Errorf("freeze envelope: the cold form does not thaw: %w", err)
	}
	if !bytes.Equal(back, env) {
		return nil, errCold("does not thaw to the envelope it was made from")
	}
	return cold, nil
}

// ThawEnvelope rebuilds the exact envelope bytes a cold envelope stands
// for: each segment kept as nonce and plaintext is sealed again under its
// epoch key (from keys), and the result's SHA-256 must be the one the cold
// form recorded. It never panics on any input; errors name what is wrong
// (ErrNoKey: the epoch key is not held; ErrInvalid, ErrTruncated,
// ErrUnknownVersion: a damaged cold form).
func ThawEnvelope(cold []byte, keys Keyring) ([]byte, error) {
	if len(cold) == 0 {
		return nil, truncated("cold envelope")
	}
	if cold[0] != ColdVersion1 {
		return nil, malformed("cold envelope", ErrUnknownVersion, fmt.Sprintf("version byte 0x%02x", cold[0]))
	}
	if len(cold) < coldFixed {
		return nil, truncated("cold envelope")
	}
	r := format.NewReader(cold[1:], "cold envelope")
	var id [32]byte
	r.CopyTo(id[:])
	sig := r.Bytes(SignatureSize)
	k := int(r.U16())
	if r.Err() == nil && k == 0 {
		return nil, errCold("no segment")
	}
	flags := r.Bytes(k)
	if err := r.Err(); err != nil {
		return nil, err
	}
	sealedN := 0
	for i, f := range flags {
		switch f {
		case segSealed:
			sealedN++
		case segErased:
		default:
			return nil, errCold(fmt.Sprintf("segment %d: unknown flag", i))
		}
	}
	// The nonces and hashes, in segment order.
	tags := make([][]byte, k)
	for i, f := range flags {
		if f == segSealed {
			tags[i] = r.Bytes(nonceSize)
		} else {
			tags[i] = r.Bytes(32)
		}
	}
	if err := r.Err(); err != nil {
		return nil, err
	}
	plain, err := inflate(cold[len(cold)-r.Len():])
	if err != nil {
		return nil, err
	}
	defer clear(plain)
	if len(plain) < coldMaxHeader {
		return nil, truncated("cold envelope header")
	}
	// The segments' plaintexts, each after its uvarint length.
	rest := plain[coldMaxHeader:]
	pts := make([][]byte, k)
	bodyLen := 2
	for i, f := range flags {
		if f != segSealed {
			bodyLen += minErasedSegment
			continue
		}
		n, used := binary.Uvarint(rest)
		if used <= 0 || n > uint64(len(rest)-used) {
			return nil, truncated(fmt.Sprintf("cold envelope segment %d", i))
		}
		pts[i] = rest[used : used+int(n)]
		rest = rest[used+int(n):]
		bodyLen += 1 + 4 + sealOverhead + int(n)
		if bodyLen > MaxBodySize {
			return nil, malformed("cold envelope", ErrOversize, "body")
		}
	}
	if len(rest) != 0 {
		return nil, errCold("trailing bytes")
	}
	out := make([]byte, 0, envOverhead+bodyLen)
	out = append(out, plain[:coldMaxHeader]...)
	out = binary.BigEndian.AppendUint32(out, uint32(bodyLen))
	h, err := decodeHeader(out)
	if err != nil {
		return nil, fmt.Errorf("cold envelope: %w", err)
	}
	if h.Version != HeaderVersion2 {
		return nil, errCold("not a version 2 envelope")
	}
	var key *SpaceKey
	if sealedN > 0 {
		if keys != nil {
			key, _ = keys.Key(h.Space, h.Epoch)
		}
		if !key.usable() {
			return nil, ErrNoKey
		}
		if key.id != h.Epoch {
			return nil, ErrAuth
		}
	}
	out = binary.BigEndian.AppendUint16(out, uint16(k))
	for i, f := range flags {
		if f != segSealed {
			out = append(out, segErased)
			out = append(out, tags[i]...)
			continue
		}
		out = append(out, segSealed)
		out = binary.BigEndian.AppendUint32(out, uint32(sealOverhead+len(pts[i])))
		out = append(out, tags[i]...)
		out = key.aead.Seal(out, tags[i], pts[i], segmentAD(out, k, i))
	}
	out = append(out, sig...)
	if sha256.Sum256(out) != id {
		return nil, errCold("rebuilt envelope differs from the one frozen (damaged cold form)")
	}
	return out, nil
}

// ColdContents returns what a cold envelope holds besides its nonces,
// hashes and signature, decompressed: the signed header and each sealed
// segment's length and plaintext. It is for forensic checks (that erased
// case data is nowhere in a store); ThawEnvelope is how cold envelopes are
// read.
func ColdContents(cold []byte) ([]byte, error) {
	if len(cold) < coldFixed || cold[0] != ColdVersion1 {
		return nil, errCold("not a version 1 cold envelope")
	}
	k := int(binary.BigEndian.Uint16(cold[coldFixed-2:]))
	if len(cold) < coldFixed+k {
		return nil, truncated("cold envelope")
	}
	off := coldFixed + k
	for _, f := range cold[coldFixed : coldFixed+k] {
		if f == segSealed {
			off += nonceSize
		} else {
			off += 32
		}
	}
	if off > len(cold) {
		return nil, truncated("cold envelope")
	}
	return inflate(cold[off:])
}

// inflate decompresses a cold envelope's DEFLATE stream, refusing more than
// an envelope's worth of plaintext.
func inflate(b []byte) ([]byte, error) {
	fr := flateReaders.Get().(io.ReadCloser)
	defer flateReaders.Put(fr)
	if err := fr.(flate.Resetter).Reset(bytes.NewReader(b), nil); err != nil {
		return nil, errCold(err.Error())
	}
	var out bytes.Buffer
	n, err := out.ReadFrom(io.LimitReader(fr, MaxEnvelopeSize+1))
	if err != nil {
		if errors.Is(err, io.ErrUnexpectedEOF) {
			return nil, truncated("cold envelope body")
		}
		return nil, errCold("compressed body: " + err.Error())
	}
	if n > MaxEnvelopeSize {
		return nil, malformed("cold envelope", ErrOversize, "body")
	}
	return out.Bytes(), nil
}
