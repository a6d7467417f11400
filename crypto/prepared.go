package crypto

import (
	"crypto/sha256"
	"encoding/binary"
	"fmt"
	"io"
)

// PreparedEnvelope is a version 2 change envelope sealed but not yet signed.
// Its ID (Hash of the signed envelope) is known already, since the ID covers
// the signed message and not the signature (docs/crypto.md §2): the next
// envelope of the log can name it while this one is being signed. The agent
// builds and chains envelopes under its state lock and signs them outside it
// (docs/design.md §7, "Signing outside the write lock").
type PreparedEnvelope struct {
	out []byte // header and sealed segments
	msg []byte // the signed message (signedPrefix)
	id  *Identity
}

// PrepareSegments is SealSegments without the signature: everything is
// sealed and fixed, so ID is final; Sign completes it.
func PrepareSegments(h Header, segs [][]byte, key *SpaceKey, id *Identity, rand io.Reader) (*PreparedEnvelope, error) {
	if id == nil || id.sign == nil {
		return nil, fmt.Errorf("seal: no identity")
	}
	if h.Kind != KindChange {
		return nil, invalid("envelope header", "version 2 is for changes only")
	}
	if !key.usable() {
		return nil, fmt.Errorf("seal %v: %w", h.Kind, ErrNoKey)
	}
	if len(segs) == 0 || len(segs) > MaxSegments {
		return nil, invalid("segmented body", "want 1 to 65535 segments")
	}
	bodyLen := 2
	for _, s := range segs {
		bodyLen += 1 + 4 + sealOverhead + len(s)
		if bodyLen > MaxBodySize {
			return nil, malformed("envelope", ErrOversize, "body")
		}
	}
	h.Version = HeaderVersion2
	h.Author = id.id
	h.Epoch = key.id
	h.BodyLen = uint32(bodyLen)
	if err := h.check(); err != nil {
		return nil, err
	}
	out := make([]byte, 0, envOverhead+bodyLen)
	out = h.appendTo(out)
	out = binary.BigEndian.AppendUint16(out, uint16(len(segs)))
	infos := make([]SegmentInfo, len(segs))
	for i, s := range segs {
		out = append(out, segSealed)
		out = binary.BigEndian.AppendUint32(out, uint32(sealOverhead+len(s)))
		start := len(out)
		out = out[:start+nonceSize]
		if _, err := io.ReadFull(rand, out[start:]); err != nil {
			return nil, fmt.Errorf("seal: %v", err)
		}
		out = key.aead.Seal(out, out[start:start+nonceSize], s, segmentAD(out, len(segs), i))
		infos[i].Hash = SegmentHash(out[start:])
	}
	return &PreparedEnvelope{out: out, msg: signedPrefix(out, infos), id: id}, nil
}

// ID is the envelope's ID: Hash of the envelope Sign returns.
func (p *PreparedEnvelope) ID() [32]byte {
	s := sha256.New()
	s.Write([]byte("fieldsync/envelope-id/v2\x00"))
	s.Write(p.msg)
	var out [32]byte
	s.Sum(out[:0])
	return out
}

// Sign signs the envelope (Ed25519ctx "fieldsync/envelope/v2" over the
// header without its body length, the count and the segments' commitment)
// and returns it. Safe to call from any goroutine, once.
func (p *PreparedEnvelope) Sign() []byte {
	sig := signCtx(p.id.sign, p.msg, ctxEnvelopeV2)
	return append(p.out, sig...)
}
