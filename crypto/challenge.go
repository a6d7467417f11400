package crypto

import (
	"fieldsync/crypto/internal/format"
	"fmt"
	"io"
)

// NewNonce draws a fresh 32-byte challenge nonce.
func NewNonce(rand io.Reader) ([32]byte, error) {
	var n [32]byte
	if _, err := io.ReadFull(rand, n[:]); err != nil {
		return n, fmt.Errorf("new nonce: %v", err)
	}
	return n, nil
}

// Transcript is what both ends of one stream sign to prove possession of
// their device keys: both identities, both fresh nonces, and a binding to the
// stream. A signature over one transcript verifies for no other: not on
// another stream (other nonces or binding), not for the other side, not with
// the roles swapped.
type Transcript struct {
	Label     string // mesh label / protocol context
	Binding   []byte // channel binding, e.g. TLS exporter keying material of this stream (may be empty)
	Initiator DeviceID
	Responder DeviceID

	InitiatorNonce, ResponderNonce [32]byte
}

// Side is the end of a stream that signs.
type Side uint8

// The two ends of a stream.
const (
	SideInitiator Side = 1
	SideResponder Side = 2
)

// MaxChallengeField bounds Transcript.Label and Transcript.Binding.
const MaxChallengeField = 1024

// message encodes the signed transcript: side | u16 len | label | u16 len |
// binding | initiator | responder | initiator nonce | responder nonce.
func (t *Transcript) message(side Side) []byte {
	b := make([]byte, 0, 1+4+len(t.Label)+len(t.Binding)+32+64)
	b = append(b, byte(side))
	b = format.AppendStr16(b, t.Label)
	b = format.AppendU16(b, uint16(len(t.Binding)))
	b = append(b, t.Binding...)
	b = append(b, t.Initiator[:]...)
	b = append(b, t.Responder[:]...)
	b = append(b, t.InitiatorNonce[:]...)
	return append(b, t.ResponderNonce[:]...)
}

func (t *Transcript) check(side Side) error {
	switch {
	case side != SideInitiator && side != SideResponder:
		return invalid("challenge", "unknown side")
	case len(t.Label) > MaxChallengeField || len(t.Binding) > MaxChallengeField:
		return malformed("challenge", ErrOversize, "label or binding")
	case t.InitiatorNonce == [32]byte{} || t.ResponderNonce == [32]byte{}:
		return invalid("challenge", "zero nonce")
	case t.Initiator == t.Responder:
		return invalid("challenge", "both ends are the same device")
	}
	return nil
}

// SignChallenge signs t as side (Ed25519ctx "fieldsync/challenge/v1"). It
// returns nil, which VerifyChallenge refuses, when id is not the device t
// names for side or t is one VerifyChallenge would refuse (a zero nonce, an
// oversize label or binding, both ends the same device): a transcript partly
// made of a peer's input never makes it panic.
func SignChallenge(id *Identity, t Transcript, side Side) []byte {
	if id == nil || id.sign == nil || t.check(side) != nil {
		return nil
	}
	if (side == SideInitiator && t.Initiator != id.id) || (side == SideResponder && t.Responder != id.id) {
		return nil
	}
	return signCtx(id.sign, t.message(side), ctxChallenge)
}

// VerifyChallenge checks that sig is pub's signature of t as side, and that
// pub is the device t names for that side: ErrSignature otherwise (a replay
// from another stream, a reflected signature, another device). A transcript
// with a zero nonce or an oversize field is ErrMalformed.
func VerifyChallenge(pub DevicePublic, t Transcript, side Side, sig []byte) error {
	if err := t.check(side); err != nil {
		return err
	}
	want := t.Initiator
	if side == SideResponder {
		want = t.Responder
	}
	if pub.ID() != want {
		return wrapf(ErrSignature, "challenge signer is not the transcript's %v", side)
	}
	if !verifyCtx(pub.SignKey, t.message(side), sig, ctxChallenge) {
		return ErrSignature
	}
	return nil
}

// String returns "initiator" or "responder".
func (s Side) String() string {
	switch s {
	case SideInitiator:
		return "initiator"
	case SideResponder:
		return "responder"
	}
	return fmt.Sprintf("side(%d)", uint8(s))
}
