package rules

import (
	"bytes"
	"errors"

	"fieldsync/crypto"
)

// Forks (docs/design.md §5): evidence is a pair of envelopes of one author
// in one space, both signed by it, that cannot both be in one honest log.

// ForkPoint checks that two envelopes of one author's log, given by their
// headers and their hashes (crypto.Hash), prove a fork, and returns the seq
// from which the author is frozen in the space: the same seq with different
// contents, or consecutive seqs where the later does not chain to the
// earlier, freeze from the lower seq. Checking the signatures is the
// caller's part.
func ForkPoint(h1 crypto.Header, sum1 [32]byte, h2 crypto.Header, sum2 [32]byte) (uint64, error) {
	if h1.Seq > h2.Seq {
		h1, h2, sum1, sum2 = h2, h1, sum2, sum1
	}
	if h1.Space != h2.Space || h1.Author != h2.Author {
		return 0, errors.New("fork evidence: envelopes of different logs")
	}
	switch {
	case h1.Seq == h2.Seq && sum1 != sum2:
		return h1.Seq, nil
	case h2.Seq == h1.Seq+1 && h2.Prev != sum1:
		return h1.Seq, nil
	}
	return 0, errors.New("fork evidence: the envelopes are consistent")
}

// FreezePoint combines the freeze point held for an author in a space
// (0: not frozen) with the one new evidence proves: with several pieces of
// evidence the lowest seq wins. It reports whether the new evidence moved
// it. Over the pieces of evidence it is commutative and idempotent, so
// replicas that learn them in any order freeze at the same seq. A seq of 0
// proves nothing (no envelope has it).
func FreezePoint(held, seq uint64) (uint64, bool) {
	if seq == 0 || held != 0 && held <= seq {
		return held, false
	}
	return seq, true
}

// SameEnrollment reports whether c is of the same bureau (key and name) and
// for the same device keys (Ed25519 and X25519) as pinned.
func SameEnrollment(pinned, c *crypto.Certificate) bool {
	return bytes.Equal(pinned.Bureau.Key, c.Bureau.Key) && pinned.Bureau.Name == c.Bureau.Name &&
		bytes.Equal(pinned.Device.SignKey, c.Device.SignKey) && pinned.Device.AgreeKey == c.Device.AgreeKey
}

// Pin is what becomes of a certificate received for a device that already
// has a pinned one (docs/crypto.md §4, "Pinning and scoped trust").
type Pin int

const (
	// PinKeep: the pinned certificate stays; the other is ignored (an
	// older one of the pinned bureau for the same keys, or this device's
	// own from elsewhere).
	PinKeep Pin = iota
	// PinRenew: the certificate replaces the pinned one: a renewal by the
	// pinned bureau for the same keys, or the countersigned form of a
	// version 1 certificate held from before version 2.
	PinRenew
	// PinConflict: another bureau or other keys claim the device; the
	// certificate is kept as evidence, never used.
	PinConflict
)

// PinCertificate decides what becomes of certificate c for a device whose
// pinned certificate is pinned (own: the device is this replica's own,
// whose certificate comes only from its data directory). The first pin
// wins: only a renewal replaces it.
func PinCertificate(pinned, c *crypto.Certificate, own bool) Pin {
	switch {
	case !SameEnrollment(pinned, c):
		return PinConflict
	case own:
		return PinKeep
	case c.NotAfter.After(pinned.NotAfter), !pinned.Countersigned() && !c.NotAfter.Before(pinned.NotAfter):
		return PinRenew
	}
	return PinKeep
}
