package crypto

import (
	"errors"
	"fieldsync/crypto/internal/format"
	"fmt"
)

// Errors returned by this package. They are sentinels: test them with
// errors.Is. Wrapped failures of golang.org/x/crypto are formatted with %v,
// never %w, so they do not become part of the API.
var (
	// ErrMalformed reports an input that does not decode. It is never
	// returned bare: it always wraps one of the reasons below, so an error
	// is both errors.Is(err, ErrMalformed) and errors.Is(err, ErrTruncated)
	// (or ErrOversize, ErrUnknownVersion, ErrInvalid).
	ErrMalformed = format.ErrMalformed
	// ErrTruncated: the input ends before its format says it should.
	ErrTruncated = format.ErrTruncated
	// ErrOversize: a length is above its documented limit.
	ErrOversize = format.ErrOversize
	// ErrUnknownVersion: a magic or version this code does not know.
	ErrUnknownVersion = format.ErrUnknownVersion
	// ErrInvalid: any other structural fault (unknown kind, trailing bytes,
	// non-canonical encoding, a field out of range).
	ErrInvalid = format.ErrInvalid

	// ErrSignature: not signed by the claimed key (or the claimed key is not
	// the one the object names).
	ErrSignature = errors.New("bad signature")
	// ErrAuth: an AEAD refused to open a ciphertext. Opaque whatever the
	// cause, like crypto/cipher's open error.
	ErrAuth = errors.New("message authentication failed")
	// ErrNoKey: this node holds no key for the envelope's epoch. Normal on
	// relays.
	ErrNoKey = errors.New("no key for this epoch")
	// ErrWrongRecipient: a key share addressed to another device.
	ErrWrongRecipient = errors.New("key share is for another device")
	// ErrWrongPassphrase: the passphrase (or key file) does not open this
	// keystore or bureau file. Distinct from ErrMalformed, which means the
	// file is corrupt or truncated.
	ErrWrongPassphrase = errors.New("wrong passphrase")
	// ErrExpired: a certificate used after its NotAfter.
	ErrExpired = errors.New("certificate expired")
	// ErrNotYetValid: a certificate used before its NotBefore.
	ErrNotYetValid = errors.New("certificate not yet valid")
	// ErrRevoked: a device revoked past its cut-off.
	ErrRevoked = errors.New("device revoked")
	// ErrUntrusted: signed by a bureau that is not in the trust set.
	ErrUntrusted = errors.New("untrusted bureau")
	// ErrRole: the device's role does not allow this (a relay authoring in a
	// space).
	ErrRole = errors.New("role not allowed")
)

func malformed(what string, reason error, detail string) error {
	return format.Malformed(what, reason, detail)
}

func truncated(what string) error { return format.Truncated(what) }

func invalid(what, detail string) error { return format.Invalid(what, detail) }

func wrapf(sentinel error, format string, args ...any) error {
	return fmt.Errorf("%w: %s", sentinel, fmt.Sprintf(format, args...))
}
