// Package crypto holds fieldsync's keys and formats: device identities,
// keystores, bureau keys, certificates, revocations, signed envelopes of every
// kind, key wrapping and the peer challenge. It is built on the standard
// library and golang.org/x/crypto only, and invents no primitive.
//
// See docs/crypto.md for every format byte by byte and the threat model.
package crypto
