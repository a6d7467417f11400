package crypto

import (
	"crypto/ecdh"
	"fmt"
	"io"

	"golang.org/x/crypto/chacha20poly1305"
)

// Key share body layout (113 bytes):
//
//	0   1  version (1)
//	1  16  recipient device ID
//	17 16  epoch key ID of the wrapped key
//	33 32  ephemeral X25519 public key
//	65 48  XChaCha20-Poly1305(wrap key, zero nonce, space key, AD = bytes 0..65)
const (
	keyShareVersion = 1
	keyShareSize    = 1 + 16 + 16 + 32 + 32 + tagSize
	keyShareAD      = 65
)

// KeyShare is the clear part of a key share body, which relays may read.
type KeyShare struct {
	Recipient DeviceID
	Epoch     KeyID
}

// WrapKey wraps key to one device, in the spirit of age's X25519 stanza: an
// ephemeral X25519 key agreement with the recipient's AgreeKey, HKDF-SHA256
// (salt = ephemeral public || recipient public, info binding the space, the
// recipient device ID and the epoch key ID) and XChaCha20-Poly1305. The
// result is the body of a KindKeyShare envelope.
func WrapKey(key *SpaceKey, space SpaceID, to DevicePublic, rand io.Reader) ([]byte, error) {
	if !key.usable() {
		return nil, fmt.Errorf("wrap key: %w", ErrNoKey)
	}
	var e [32]byte
	defer clear(e[:])
	if _, err := io.ReadFull(rand, e[:]); err != nil {
		return nil, fmt.Errorf("wrap key: %v", err)
	}
	eph, err := ecdh.X25519().NewPrivateKey(e[:])
	if err != nil {
		return nil, fmt.Errorf("wrap key: %v", err)
	}
	recipient, err := ecdh.X25519().NewPublicKey(to.AgreeKey[:])
	if err != nil {
		return nil, fmt.Errorf("wrap key: recipient key: %v", err)
	}
	shared, err := eph.ECDH(recipient)
	if err != nil {
		return nil, fmt.Errorf("wrap key: recipient key: %v", err)
	}
	defer clear(shared)
	rid := to.ID()
	out := make([]byte, 0, keyShareSize)
	out = append(out, keyShareVersion)
	out = append(out, rid[:]...)
	out = append(out, key.id[:]...)
	out = append(out, eph.PublicKey().Bytes()...)
	wk := wrapKey(shared, out[33:65], to.AgreeKey[:], space, rid, key.id)
	defer clear(wk[:])
	aead, _ := chacha20poly1305.NewX(wk[:])
	var nonce [nonceSize]byte // the wrap key is used once
	return aead.Seal(out, nonce[:], key.key[:], out[:keyShareAD]), nil
}

func wrapKey(shared, ephPub, recipientPub []byte, space SpaceID, rid DeviceID, epoch KeyID) [32]byte {
	salt := make([]byte, 0, 64)
	salt = append(salt, ephPub...)
	salt = append(salt, recipientPub...)
	info := make([]byte, 0, 64)
	info = append(info, "fieldsync/keyshare/v1\x00"...)
	info = append(info, space[:]...)
	info = append(info, rid[:]...)
	info = append(info, epoch[:]...)
	return hkdf32(shared, salt, string(info))
}

// ParseKeyShare decodes the clear part of a key share body (its recipient
// and epoch) and checks its length.
func ParseKeyShare(body []byte) (KeyShare, error) {
	var ks KeyShare
	if len(body) < 1 {
		return ks, truncated("key share")
	}
	if body[0] != keyShareVersion {
		return ks, malformed("key share", ErrUnknownVersion, fmt.Sprintf("version %d", body[0]))
	}
	if len(body) < keyShareSize {
		return ks, truncated("key share")
	}
	if len(body) > keyShareSize {
		return ks, invalid("key share", "trailing bytes")
	}
	copy(ks.Recipient[:], body[1:17])
	copy(ks.Epoch[:], body[17:33])
	return ks, nil
}

// UnwrapKey opens a key share addressed to id for space: ErrWrongRecipient
// if it names another device, ErrAuth if it does not open (tampered, or wrapped
// for another space), ErrMalformed if it does not parse.
func UnwrapKey(body []byte, space SpaceID, id *Identity) (*SpaceKey, error) {
	ks, err := ParseKeyShare(body)
	if err != nil {
		return nil, err
	}
	if ks.Recipient != id.id {
		return nil, ErrWrongRecipient
	}
	ephPub, err := ecdh.X25519().NewPublicKey(body[33:65])
	if err != nil {
		return nil, ErrAuth
	}
	shared, err := id.agree.ECDH(ephPub)
	if err != nil { // low-order point
		return nil, ErrAuth
	}
	defer clear(shared)
	wk := wrapKey(shared, body[33:65], id.pub.AgreeKey[:], space, ks.Recipient, ks.Epoch)
	defer clear(wk[:])
	aead, _ := chacha20poly1305.NewX(wk[:])
	var nonce [nonceSize]byte
	pt, err := aead.Open(nil, nonce[:], body[keyShareAD:], body[:keyShareAD])
	if err != nil {
		return nil, ErrAuth
	}
	defer clear(pt)
	k, err := SpaceKeyFromBytes(pt)
	if err != nil || k.id != ks.Epoch {
		return nil, ErrAuth
	}
	return k, nil
}
