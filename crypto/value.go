package crypto

import (
	"crypto/hkdf"
	"crypto/sha256"
	"fmt"
	"io"

	"golang.org/x/crypto/chacha20poly1305"
)

const (
	nonceSize = chacha20poly1305.NonceSizeX // 24
	tagSize   = chacha20poly1305.Overhead   // 16
)

// SealValue encrypts plaintext under key with XChaCha20-Poly1305 and a random
// 24-byte nonce, which it prepends: the result is nonce || ciphertext || tag,
// 40 bytes longer than plaintext. ad is authenticated, not stored. rand must
// not fail (crypto/rand.Reader never does); if it does, SealValue panics.
func SealValue(key *[32]byte, ad, plaintext []byte, rand io.Reader) []byte {
	out := make([]byte, nonceSize, nonceSize+len(plaintext)+tagSize)
	if _, err := io.ReadFull(rand, out); err != nil {
		panic("fieldsync/crypto: SealValue: random source failed: " + err.Error())
	}
	return sealX(key, out, plaintext, ad)
}

// sealX appends the XChaCha20-Poly1305 seal of pt to dst, whose last
// nonceSize bytes are the nonce.
func sealX(key *[32]byte, dst, pt, ad []byte) []byte {
	aead, err := chacha20poly1305.NewX(key[:])
	if err != nil {
		panic("fieldsync/crypto: " + err.Error())
	}
	var nonce [nonceSize]byte
	copy(nonce[:], dst[len(dst)-nonceSize:])
	return aead.Seal(dst, nonce[:], pt, ad)
}

// OpenValue opens a value made by SealValue with the same key and ad. Any
// change to sealed or ad, a wrong key or a short input gives ErrAuth.
func OpenValue(key *[32]byte, ad, sealed []byte) ([]byte, error) {
	if len(sealed) < nonceSize+tagSize {
		return nil, ErrAuth
	}
	aead, err := chacha20poly1305.NewX(key[:])
	if err != nil {
		panic("fieldsync/crypto: " + err.Error())
	}
	pt, err := aead.Open(nil, sealed[:nonceSize], sealed[nonceSize:], ad)
	if err != nil {
		return nil, ErrAuth
	}
	return pt, nil
}

// DeriveKey derives a 32-byte subkey of master for one purpose:
// HKDF-SHA256 with no salt and info "fieldsync/derive/v1\x00" || label.
// Distinct labels give independent keys.
func DeriveKey(master *[32]byte, label string) [32]byte {
	return hkdf32(master[:], nil, "fieldsync/derive/v1\x00"+label)
}

func hkdf32(secret, salt []byte, info string) [32]byte {
	k, err := hkdf.Key(sha256.New, secret, salt, info, 32)
	if err != nil {
		panic(fmt.Sprintf("fieldsync/crypto: hkdf: %v", err))
	}
	var out [32]byte
	copy(out[:], k)
	clear(k)
	return out
}
