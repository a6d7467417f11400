package crypto

import (
	"bytes"
	"crypto/ecdh"
	"fmt"
	"io"
	"slices"

	"golang.org/x/crypto/chacha20poly1305"
)

// Key share body layout, version 1 (113 bytes):
//
//	0   1  version (1)
//	1  16  recipient device ID
//	17 16  epoch key ID of the wrapped key
//	33 32  ephemeral X25519 public key
//	65 48  XChaCha20-Poly1305(wrap key, zero nonce, space key, AD = bytes 0..65)
//
// Version 2 (113 + 1 + 16n bytes) is version 1's layout followed by the
// epochs the wrapped one replaces (docs/crdt.md, "Epochs"):
//
//	113 1   n, 1 ≤ n ≤ MaxReplaces
//	114 16n epoch key IDs, sorted, unique, none equal to bytes 17..33
//
// A share whose list is empty is written as version 1, which agents before
// version 2 also read.
const (
	keyShareVersion1 = 1
	keyShareVersion  = 2 // the newest version this code reads and writes
	keyShareSize     = 1 + 16 + 16 + 32 + 32 + tagSize
	keyShareAD       = 65
)

// MaxReplaces bounds the list of epochs a key share says its epoch
// replaces.
const MaxReplaces = 64

// KeyShare is the clear part of a key share body, which relays may read.
type KeyShare struct {
	Recipient DeviceID
	Epoch     KeyID
	// Replaces lists the epochs the wrapped epoch replaces (sorted, unique;
	// empty for a version 1 share).
	Replaces []KeyID
}

// WrapKey wraps key to one device, in the spirit of age's X25519 stanza: an
// ephemeral X25519 key agreement with the recipient's AgreeKey, HKDF-SHA256
// (salt = ephemeral public || recipient public, info binding the space, the
// recipient device ID and the epoch key ID) and XChaCha20-Poly1305. The
// result is the body of a KindKeyShare envelope (version 1: it names no
// replaced epoch).
func WrapKey(key *SpaceKey, space SpaceID, to DevicePublic, rand io.Reader) ([]byte, error) {
	return WrapKeyReplacing(key, space, to, nil, rand)
}

// WrapKeyReplacing is WrapKey for an epoch that replaces the given epochs:
// the list (sorted and deduplicated here; at most MaxReplaces, never the
// wrapped epoch itself) follows the wrapped key, as body version 2. With an
// empty list it writes version 1.
func WrapKeyReplacing(key *SpaceKey, space SpaceID, to DevicePublic, replaces []KeyID, rand io.Reader) ([]byte, error) {
	if !key.usable() {
		return nil, fmt.Errorf("wrap key: %w", ErrNoKey)
	}
	list := slices.Clone(replaces)
	slices.SortFunc(list, func(x, y KeyID) int { return bytes.Compare(x[:], y[:]) })
	list = slices.Compact(list)
	if len(list) > MaxReplaces {
		return nil, fmt.Errorf("wrap key: %w", malformed("key share", ErrOversize, fmt.Sprintf("%d replaced epochs (at most %d)", len(list), MaxReplaces)))
	}
	if slices.Contains(list, key.id) {
		return nil, fmt.Errorf("wrap key: %w", invalid("key share", "an epoch cannot replace itself"))
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
	version := byte(keyShareVersion1)
	if len(list) > 0 {
		version = keyShareVersion
	}
	out := make([]byte, 0, keyShareSize+1+16*len(list))
	out = append(out, version)
	out = append(out, rid[:]...)
	out = append(out, key.id[:]...)
	out = append(out, eph.PublicKey().Bytes()...)
	wk := wrapKey(shared, out[33:65], to.AgreeKey[:], space, rid, key.id)
	defer clear(wk[:])
	aead, _ := chacha20poly1305.NewX(wk[:])
	var nonce [nonceSize]byte // the wrap key is used once
	out = aead.Seal(out, nonce[:], key.key[:], out[:keyShareAD])
	if len(list) > 0 {
		out = append(out, byte(len(list)))
		for _, id := range list {
			out = append(out, id[:]...)
		}
	}
	return out, nil
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

// ParseKeyShare decodes the clear part of a key share body (its recipient,
// its epoch and, version 2, the epochs it replaces) and checks its length
// and list: sorted, unique, 1 to MaxReplaces entries, never its own epoch.
func ParseKeyShare(body []byte) (KeyShare, error) {
	var ks KeyShare
	if len(body) < 1 {
		return ks, truncated("key share")
	}
	if body[0] != keyShareVersion1 && body[0] != keyShareVersion {
		return ks, malformed("key share", ErrUnknownVersion, fmt.Sprintf("version %d", body[0]))
	}
	if len(body) < keyShareSize {
		return ks, truncated("key share")
	}
	copy(ks.Recipient[:], body[1:17])
	copy(ks.Epoch[:], body[17:33])
	if body[0] == keyShareVersion1 {
		if len(body) > keyShareSize {
			return KeyShare{}, invalid("key share", "trailing bytes")
		}
		return ks, nil
	}
	rest := body[keyShareSize:]
	if len(rest) < 1 {
		return KeyShare{}, truncated("key share")
	}
	n := int(rest[0])
	switch {
	case n == 0:
		return KeyShare{}, invalid("key share", "version 2 with no replaced epoch (written as version 1)")
	case n > MaxReplaces:
		return KeyShare{}, malformed("key share", ErrOversize, fmt.Sprintf("%d replaced epochs (at most %d)", n, MaxReplaces))
	case len(rest) < 1+16*n:
		return KeyShare{}, truncated("key share")
	case len(rest) > 1+16*n:
		return KeyShare{}, invalid("key share", "trailing bytes")
	}
	ks.Replaces = make([]KeyID, n)
	for i := range n {
		copy(ks.Replaces[i][:], rest[1+16*i:])
		if ks.Replaces[i] == ks.Epoch {
			return KeyShare{}, invalid("key share", "an epoch cannot replace itself")
		}
		if i > 0 && bytes.Compare(ks.Replaces[i-1][:], ks.Replaces[i][:]) >= 0 {
			return KeyShare{}, invalid("key share", "replaced epochs not sorted and unique")
		}
	}
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
	pt, err := aead.Open(nil, nonce[:], body[keyShareAD:keyShareSize], body[:keyShareAD])
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
