package crypto

import (
	"bytes"
	"crypto/ed25519"
	"time"

	"fieldsync/crypto/internal/format"
)

// magicErasure begins an erase marker.
const magicErasure = "FSER"

// ctxErasure is the signature domain of erase markers (docs/crypto.md,
// "Signature domains").
var ctxErasure = &ed25519.Options{Context: "fieldsync/erasure/v1"}

// erasureSize is the exact size of a version 1 erase marker: magic and
// version (5), space (16), nonce (16), owner (1 + 26), author (16), issued
// at (8), signature (64).
const erasureSize = 5 + 16 + 16 + 1 + idTextLen + 16 + 8 + SignatureSize

// Erasure is an erase marker: a device's signed statement that a space is
// erased (docs/crypto.md, "Erase marker"). It is clear and carries no case
// data — the space ID, the nonce that binds the ID to its owning bureau, that
// bureau's fingerprint, the author device and a time — so that relays and
// every replica can check it without any space key. The reason for the
// erasure is not in it.
//
// Binary: "FSER" | 1 | space (16) | nonce (16) | owner fingerprint (u8
// length 26 + ID text) | author device (16) | issued at (i64 Unix seconds) |
// signature (64, Ed25519ctx "fieldsync/erasure/v1" over the bytes before it,
// by the author's device key).
//
// Who may erase is the receiver's rule, not this package's: an officer
// device of the owning bureau, not revoked (agent/erase.go). This package
// checks the form, that the space ID is the owner's (SpaceIDFor), and the
// signature against the author's device key (Verify).
type Erasure struct {
	Space    SpaceID
	Nonce    [16]byte
	Owner    string // owning bureau fingerprint
	Author   DeviceID
	IssuedAt time.Time // one-second precision

	sig []byte
}

func (e *Erasure) encode() []byte {
	b := make([]byte, 0, erasureSize)
	b = append(b, magicErasure...)
	b = append(b, objectVersion)
	b = append(b, e.Space[:]...)
	b = append(b, e.Nonce[:]...)
	b = format.AppendStr8(b, e.Owner)
	b = append(b, e.Author[:]...)
	b = appendTime(b, e.IssuedAt)
	return b
}

// NewErasure signs an erase marker of the space (its ID bound to owner by
// nonce) by id at time at. It fails if the space ID is not the owner's.
func NewErasure(id *Identity, space SpaceID, nonce [16]byte, owner string, at time.Time) (*Erasure, error) {
	if _, err := parseID("owner fingerprint", owner); err != nil {
		return nil, err
	}
	if SpaceIDFor(owner, nonce) != space {
		return nil, invalid("erase marker", "the space ID is not bound to the owning bureau by this nonce")
	}
	e := &Erasure{Space: space, Nonce: nonce, Owner: owner, Author: id.ID(), IssuedAt: time.Unix(at.Unix(), 0).UTC()}
	e.sig = signCtx(id.sign, e.encode(), ctxErasure)
	return e, nil
}

// Marshal returns the signed binary form (nil for an unsigned marker).
func (e *Erasure) Marshal() []byte {
	if e == nil || e.sig == nil {
		return nil
	}
	return append(e.encode(), e.sig...)
}

// IsErasure reports whether data begins as an erase marker does (the magic):
// how a mesh object or bundle item is told apart before it is parsed.
func IsErasure(data []byte) bool { return bytes.HasPrefix(data, []byte(magicErasure)) }

// ParseErasure decodes an erase marker and checks its form: canonical owner
// fingerprint, a space ID bound to that owner by the nonce (ErrInvalid
// otherwise). The signature needs the author's key: Verify.
func ParseErasure(data []byte) (*Erasure, error) {
	if len(data) > erasureSize {
		return nil, malformed("erase marker", ErrOversize, "")
	}
	rd := format.NewReader(data, "erase marker")
	rd.Magic(magicErasure, objectVersion)
	e := &Erasure{}
	rd.CopyTo(e.Space[:])
	rd.CopyTo(e.Nonce[:])
	e.Owner = rd.Str(false, idTextLen)
	rd.CopyTo(e.Author[:])
	e.IssuedAt = readTime(rd)
	e.sig = bytes.Clone(rd.Bytes(SignatureSize))
	if err := rd.Done(); err != nil {
		return nil, err
	}
	if _, err := parseID("owner fingerprint", e.Owner); err != nil {
		return nil, err
	}
	if SpaceIDFor(e.Owner, e.Nonce) != e.Space {
		return nil, invalid("erase marker", "the space ID is not bound to the owning bureau by this nonce")
	}
	if e.Author.IsZero() {
		return nil, invalid("erase marker", "no author")
	}
	return e, nil
}

// Verify checks that the marker is signed by the device whose public keys
// are author (ErrSignature otherwise, also when author is another device).
func (e *Erasure) Verify(author DevicePublic) error {
	if e == nil || e.sig == nil {
		return wrapf(ErrSignature, "erase marker is not signed")
	}
	if author.ID() != e.Author {
		return wrapf(ErrSignature, "erase marker of device %s checked against device %s", e.Author, author.ID())
	}
	if !verifyCtx(author.SignKey, e.encode(), e.sig, ctxErasure) {
		return wrapf(ErrSignature, "erase marker of space %s", e.Space)
	}
	return nil
}
