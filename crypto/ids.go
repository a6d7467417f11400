package crypto

import (
	"bytes"
	"crypto/sha256"
	"encoding/base32"
	"fmt"
	"io"
	"strings"
)

// b32 is the text form of every 16-byte ID and fingerprint: lowercase,
// unpadded base32 (RFC 4648 alphabet), 26 characters.
var b32 = base32.NewEncoding("abcdefghijklmnopqrstuvwxyz234567").WithPadding(base32.NoPadding)

const idTextLen = 26

func encodeID(b [16]byte) string { return b32.EncodeToString(b[:]) }

// parseID decodes a 26-character ID, case-insensitively, and accepts only the
// canonical encoding (the two spare bits must be zero).
func parseID(what, s string) ([16]byte, error) {
	var id [16]byte
	if len(s) != idTextLen {
		return id, invalid(what, fmt.Sprintf("want %d characters, got %d", idTextLen, len(s)))
	}
	ls := strings.ToLower(s)
	n, err := b32.Decode(id[:], []byte(ls))
	if err != nil || n != 16 || encodeID(id) != ls {
		return [16]byte{}, invalid(what, "not lowercase base32")
	}
	return id, nil
}

// DeviceID names a device: the first 16 bytes of SHA-256 of its Ed25519
// public key. The zero value names no device. Raw bytes order ties.
type DeviceID [16]byte

// String returns the 26-character lowercase base32 form.
func (d DeviceID) String() string { return encodeID(d) }

// IsZero reports whether d is the zero ID.
func (d DeviceID) IsZero() bool { return d == DeviceID{} }

// Compare orders device IDs by their raw bytes (docs/design.md §2: the raw bytes
// order ties): -1, 0 or +1.
func (d DeviceID) Compare(o DeviceID) int { return bytes.Compare(d[:], o[:]) }

// ParseDeviceID parses the text form of a device ID (case-insensitive).
func ParseDeviceID(s string) (DeviceID, error) {
	id, err := parseID("device id", s)
	return DeviceID(id), err
}

// SpaceID names a space: 16 random bytes.
type SpaceID [16]byte

// NewSpaceID draws a new space ID from rand.
func NewSpaceID(rand io.Reader) (SpaceID, error) {
	var s SpaceID
	if _, err := io.ReadFull(rand, s[:]); err != nil {
		return SpaceID{}, fmt.Errorf("new space id: %v", err)
	}
	return s, nil
}

// SpaceIDFor is the ID of a space owned by the bureau with fingerprint
// owner: the first 16 bytes of SHA-256("fieldsync/space-id/v1\x00" ‖ owner ‖
// nonce). Binding the ID to its owner means no device of another bureau can
// claim the space with a routing record of its own (CheckRouting): it would
// need a nonce hashing to the same ID under its bureau, a second preimage.
func SpaceIDFor(owner string, nonce [16]byte) SpaceID {
	h := sha256.New()
	h.Write([]byte("fieldsync/space-id/v1\x00"))
	h.Write([]byte(owner))
	h.Write(nonce[:])
	var s SpaceID
	copy(s[:], h.Sum(nil))
	return s
}

// NewSpaceIDFor draws a nonce from rand and returns the space ID it gives
// for owner (SpaceIDFor) and the nonce, which every routing record carries.
func NewSpaceIDFor(owner string, rand io.Reader) (SpaceID, [16]byte, error) {
	var nonce [16]byte
	if _, err := io.ReadFull(rand, nonce[:]); err != nil {
		return SpaceID{}, nonce, fmt.Errorf("new space id: %v", err)
	}
	return SpaceIDFor(owner, nonce), nonce, nil
}

// String returns the 26-character lowercase base32 form.
func (s SpaceID) String() string { return encodeID(s) }

// ParseSpaceID parses the text form of a space ID (case-insensitive).
func ParseSpaceID(s string) (SpaceID, error) {
	id, err := parseID("space id", s)
	return SpaceID(id), err
}

// KeyID names an epoch key: the first 16 bytes of
// SHA-256("fieldsync epoch key id v1" || key).
type KeyID [16]byte

// String returns the 26-character lowercase base32 form.
func (k KeyID) String() string { return encodeID(k) }

// IsZero reports whether k is the zero ID.
func (k KeyID) IsZero() bool { return k == KeyID{} }

// ParseKeyID parses the text form of a key ID (case-insensitive).
func ParseKeyID(s string) (KeyID, error) {
	id, err := parseID("key id", s)
	return KeyID(id), err
}

func hash16(prefix string, b []byte) [16]byte {
	h := sha256.New()
	h.Write([]byte(prefix))
	h.Write(b)
	var sum [32]byte
	h.Sum(sum[:0])
	var out [16]byte
	copy(out[:], sum[:16])
	return out
}
