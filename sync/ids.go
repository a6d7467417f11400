package sync

import (
	"bytes"
	"encoding/base32"
	"fmt"
	"sort"
	"strings"
)

var b32 = base32.StdEncoding.WithPadding(base32.NoPadding)

// PeerID names a device: the first 16 bytes of SHA-256 of its Ed25519 public
// key (crypto.DeviceID has the same bytes). It is also the memberlist node
// name, in its text form.
type PeerID [16]byte

// String returns the text form: lowercase unpadded base32, 26 characters.
func (p PeerID) String() string { return strings.ToLower(b32.EncodeToString(p[:])) }

// IsZero reports whether p is the zero ID.
func (p PeerID) IsZero() bool { return p == PeerID{} }

// Compare orders IDs by their raw bytes (docs/design.md §2: the raw bytes order ties).
func (p PeerID) Compare(q PeerID) int { return bytes.Compare(p[:], q[:]) }

// ParsePeerID parses the 26-character text form.
func ParsePeerID(s string) (PeerID, error) {
	var id PeerID
	b, err := parse16(s)
	if err != nil {
		return id, fmt.Errorf("parse peer id %q: %w", s, err)
	}
	copy(id[:], b)
	return id, nil
}

// SpaceID names a space (crypto.SpaceID has the same bytes).
type SpaceID [16]byte

// String returns the text form: lowercase unpadded base32, 26 characters.
func (s SpaceID) String() string { return strings.ToLower(b32.EncodeToString(s[:])) }

// Compare orders IDs by their raw bytes.
func (s SpaceID) Compare(t SpaceID) int { return bytes.Compare(s[:], t[:]) }

// ParseSpaceID parses the 26-character text form.
func ParseSpaceID(s string) (SpaceID, error) {
	var id SpaceID
	b, err := parse16(s)
	if err != nil {
		return id, fmt.Errorf("parse space id %q: %w", s, err)
	}
	copy(id[:], b)
	return id, nil
}

func parse16(s string) ([]byte, error) {
	if len(s) != 26 {
		return nil, fmt.Errorf("want 26 characters, got %d", len(s))
	}
	b, err := b32.DecodeString(strings.ToUpper(s))
	if err != nil || len(b) != 16 {
		return nil, fmt.Errorf("not base32")
	}
	return b, nil
}

// Vector is a version vector over one space: for each author, the highest seq
// of the contiguous prefix (1..seq) held. A missing author means 0. Logs are
// contiguous per (space, author) (docs/design.md §2), so this is the whole digest.
type Vector map[PeerID]uint64

// Clone returns a copy of v.
func (v Vector) Clone() Vector {
	c := make(Vector, len(v))
	for k, s := range v {
		c[k] = s
	}
	return c
}

// Equal reports whether v and w hold the same non-zero entries.
func (v Vector) Equal(w Vector) bool {
	for k, s := range v {
		if w[k] != s {
			return false
		}
	}
	for k, s := range w {
		if v[k] != s {
			return false
		}
	}
	return true
}

// Missing returns how many envelopes v holds that w lacks.
func (v Vector) Missing(w Vector) uint64 {
	var n uint64
	for k, s := range v {
		if t := w[k]; s > t {
			n += s - t
		}
	}
	return n
}

// Authors returns v's authors with a non-zero seq, in raw byte order.
func (v Vector) Authors() []PeerID {
	out := make([]PeerID, 0, len(v))
	for k, s := range v {
		if s > 0 {
			out = append(out, k)
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Compare(out[j]) < 0 })
	return out
}
