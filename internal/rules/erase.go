package rules

import (
	"bytes"
	"fmt"

	"fieldsync/crypto"
)

// MayErase decides whether the device of cert may erase a space owned by
// the bureau of fingerprint owner (docs/crypto.md, "Erase marker"): the rule
// that guards a space's release list — an officer device of the owning
// bureau — and, since erasing destroys data everywhere, a device with any
// revocation held is refused whatever its cut-offs (fail closed). It is
// judged by every receiver, relays included, on what each can check: the
// author's pinned certificate and revocation. nil means allowed; the error
// says why not.
func MayErase(cert *crypto.Certificate, rev *crypto.Revocation, owner string) error {
	switch {
	case cert == nil:
		return fmt.Errorf("%w: the author's certificate is not known here", crypto.ErrUntrusted)
	case cert.Role != crypto.RoleOfficer:
		return fmt.Errorf("%w: a %s device cannot erase a space", crypto.ErrRole, cert.Role)
	case cert.Bureau.Fingerprint() != owner:
		return fmt.Errorf("%w: only officer devices of the owning bureau (%s) may erase its space; device %s is of bureau %s", crypto.ErrRole, owner, cert.Device.ID(), cert.Bureau.Fingerprint())
	case rev != nil:
		return fmt.Errorf("%w: device %s is revoked", crypto.ErrRevoked, cert.Device.ID())
	}
	return nil
}

// ErasureReplaces reports whether erase marker e should replace old as a
// space's tombstone: two officers may erase the same space at once, and
// every replica must keep the same marker (or mesh digests never agree).
// The earlier issued wins, ties by the signed bytes.
func ErasureReplaces(e, old *crypto.Erasure) bool {
	if old == nil {
		return true
	}
	if !e.IssuedAt.Equal(old.IssuedAt) {
		return e.IssuedAt.Before(old.IssuedAt)
	}
	return bytes.Compare(e.Marshal(), old.Marshal()) < 0
}
