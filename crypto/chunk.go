package crypto

import (
	"bytes"
	"crypto/hmac"
	"crypto/sha256"
	"errors"
	"fmt"

	"golang.org/x/crypto/chacha20poly1305"
)

// Attachment chunks (docs/crypto.md, "Attachment chunks"). A chunk of an
// attached file is sealed deterministically under keys derived from one
// epoch key of its space, so the same content in the same space and epoch
// gives the same bytes (deduplicated) while nobody without the epoch key can
// confirm a guessed file:
//
//	mac   = HKDF(epoch key, "fieldsync chunk id v1")
//	enc   = HKDF(epoch key, "fieldsync chunk key v1")
//	nonce = HMAC-SHA-256(mac, plaintext)[:24]            (synthetic IV)
//	chunk = nonce ‖ XChaCha20-Poly1305(enc, nonce, plaintext, AD)
//	AD    = "fieldsync chunk v1" ‖ space ID ‖ epoch key ID
//	ref   = SHA-256(chunk)
//
// The ref names the chunk in stores, on the wire and in manifests. Anyone,
// relays included, checks a chunk against its ref by hashing; a key holder
// also checks that the nonce is the MAC of what it opened.

// ChunkRef names a sealed chunk: SHA-256 of its sealed bytes.
type ChunkRef [32]byte

// ChunkOverhead is what sealing adds to a chunk's plaintext.
const ChunkOverhead = 24 + chacha20poly1305.Overhead

// ErrChunk is returned for a chunk that does not match its ref or does not
// open under its epoch key.
var ErrChunk = errors.New("crypto: chunk does not match its reference")

// ChunkSealer seals and opens the chunks of one space under one epoch key.
type ChunkSealer struct {
	mac []byte
	ad  []byte
	enc [32]byte
}

// NewChunkSealer derives the chunk keys of one space and epoch.
func NewChunkSealer(space SpaceID, key *SpaceKey) *ChunkSealer {
	mac := hkdf32(key.key[:], nil, "fieldsync chunk id v1")
	ad := append([]byte("fieldsync chunk v1"), space[:]...)
	id := key.ID()
	ad = append(ad, id[:]...)
	return &ChunkSealer{mac: mac[:], ad: ad, enc: hkdf32(key.key[:], nil, "fieldsync chunk key v1")}
}

// Seal returns the sealed chunk and its ref.
func (c *ChunkSealer) Seal(plain []byte) ([]byte, ChunkRef) {
	m := hmac.New(sha256.New, c.mac)
	m.Write(plain)
	nonce := m.Sum(nil)[:24]
	aead, err := chacha20poly1305.NewX(c.enc[:])
	if err != nil {
		panic(fmt.Sprintf("fieldsync/crypto: chunk aead: %v", err))
	}
	out := make([]byte, 24, 24+len(plain)+chacha20poly1305.Overhead)
	copy(out, nonce)
	out = aead.Seal(out, nonce, plain, c.ad)
	return out, sha256.Sum256(out)
}

// Open checks a sealed chunk against its ref and returns its plaintext.
func (c *ChunkSealer) Open(ref ChunkRef, sealed []byte) ([]byte, error) {
	if !CheckChunk(ref, sealed) || len(sealed) < ChunkOverhead {
		return nil, ErrChunk
	}
	aead, err := chacha20poly1305.NewX(c.enc[:])
	if err != nil {
		return nil, err
	}
	nonce := sealed[:24]
	plain, err := aead.Open(nil, nonce, sealed[24:], c.ad)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrChunk, err)
	}
	m := hmac.New(sha256.New, c.mac)
	m.Write(plain)
	if !bytes.Equal(m.Sum(nil)[:24], nonce) {
		return nil, ErrChunk
	}
	return plain, nil
}

// CheckChunk reports whether sealed is the chunk ref names (anyone can
// check it; no key needed).
func CheckChunk(ref ChunkRef, sealed []byte) bool {
	return sha256.Sum256(sealed) == ref
}
