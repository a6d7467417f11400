// Package crypto holds fieldsync's keys and formats: device identities,
// keystores, bureau keys, certificates, revocations, signed envelopes of every
// kind, key wrapping and the peer challenge. It is built on the standard
// library and golang.org/x/crypto only, and invents no primitive.
//
// # Primitives
//
//   - Signatures: Ed25519ctx (RFC 8032) with one context string per object
//     type ("fieldsync/envelope/v1", "fieldsync/certificate/v1",
//     "fieldsync/request/v1", "fieldsync/revocation/v1",
//     "fieldsync/challenge/v1", "fieldsync/message/v1",
//     "fieldsync/bundle/v1", "fieldsync/erasure/v1"), so no signature can
//     be replayed as another kind of object. Messages are signed directly, not pre-hashed — except
//     bundle and want files (bundle.go), whose signature covers SHA-256 of
//     the whole file so that a file of any size is checked in one stream.
//   - Symmetric encryption: XChaCha20-Poly1305 with random 24-byte nonces.
//   - Key wrapping: ephemeral X25519, HKDF-SHA256, XChaCha20-Poly1305 (like
//     age's X25519 stanza).
//   - Passphrases: argon2id (DefaultKDFParams: RFC 9106's second option).
//
// # Envelopes
//
// Seal builds a signed envelope (clear header, body, signature); Verify checks
// it with no space key (what relays call); Open also decrypts it with a
// Keyring; CheckAuthor judges the author's certificate, role and revocation.
// FreezeEnvelope and ThawEnvelope turn a version 2 change into its cold
// form, a local storage form holding plaintexts that thaws to the exact
// sealed bytes (cold.go; docs/crypto.md, "Cold envelopes").
//
// # Errors
//
// Every error is errors.Is-able against the sentinels in errors.go.
// ErrMalformed always wraps its reason (ErrTruncated, ErrOversize,
// ErrUnknownVersion or ErrInvalid). Parsers never panic on any input.
// Misuse only a programmer can cause (a nil identity, an invalid Transcript
// passed to SignChallenge, a failing random source given to SealValue or
// SealName) panics.
//
// # Zero values and concurrency
//
// A zero TrustSet (or a nil *TrustSet) is empty; a zero SpaceKey holds no key
// and is refused by Seal and Open; a zero Identity or Bureau holds no key.
// Identities, space keys, certificates and revocations are safe for
// concurrent use once made (Verify methods do not write); TrustSet is safe for
// concurrent use.
//
// # Contract notes
//
// The API follows plan/crypto-api.md, unchanged. Additions: ErrInvalid (a
// fourth ErrMalformed reason), VerifyMessage (checks Identity.Sign),
// CheckRouting, ValidBureauName, ParseKeyID, DeviceID.Compare and IsZero,
// KeyID.IsZero, DevicePublic.Equal, Kind.String, Side.String,
// KeystoreKDFParams, Request.MarshalBinary, Certificate.ID, TrustSet.Remove,
// Routing.Releases, Bureau.Zero and the size limits (HeaderSize,
// SignatureSize, MaxBodySize, MaxOfficerName, MaxReleased, MaxSealedName,
// MaxChallengeField, MaxObjectJSON, MaxRevocationCutoffs, MaxKDF*).
// Choices the contract left open: Identity.Sign is Ed25519ctx with the
// context "fieldsync/message/v1" (not raw Ed25519); BureauPublic.Marshal is
// one line of text; Revocation.Marshal is binary only; SignChallenge returns
// nil (never panics) for a transcript VerifyChallenge would refuse.
//
// See docs/crypto.md for every format byte by byte and the threat model.
package crypto
