package rules

import (
	"bytes"

	"fieldsync/crypto"
)

// RevocationReplaces reports whether revocation r replaces old, both of one
// device: the later issued wins, a tie goes to the larger encoding, so every
// replica keeps the same one whatever order they came in. Anything
// replaces nil; nothing replaces itself (or an identical copy).
func RevocationReplaces(r, old *crypto.Revocation) bool {
	if old == nil {
		return r != nil
	}
	if r == nil {
		return false
	}
	if !r.IssuedAt.Equal(old.IssuedAt) {
		return r.IssuedAt.After(old.IssuedAt)
	}
	return bytes.Compare(r.Marshal(), old.Marshal()) > 0
}

// ChooseRevocation returns the one of two revocations of a device that
// stands (RevocationReplaces): commutative, associative and idempotent, so
// replicas that receive the same revocations in any order keep the same.
func ChooseRevocation(a, b *crypto.Revocation) *crypto.Revocation {
	if RevocationReplaces(b, a) {
		return b
	}
	return a
}

// CutFrom returns the first seq of the revoked device's log in a space
// that the revocation makes invalid, and whether a log that reaches head
// holds any such seq (envelopes with seq ≤ the space's cut-off stay
// valid). A nil revocation cuts nothing.
func CutFrom(r *crypto.Revocation, space crypto.SpaceID, head uint64) (from uint64, due bool) {
	cut := r.Cutoff(space)
	if head <= cut {
		return 0, false
	}
	return cut + 1, true
}
