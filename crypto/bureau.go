package crypto

import (
	"bytes"
	"crypto/ed25519"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"fmt"
	"io"
	"slices"
	"strings"
	"sync"
)

// Bureau is a bureau's authority key. It lives in a passphrase-protected
// file (SealBureau), never on an agent. The zero value holds no key.
type Bureau struct {
	Name string // 2–16 characters of [A-Z0-9-], e.g. "OMN"
	priv ed25519.PrivateKey
}

// ValidBureauName reports whether name is 2–16 characters of [A-Z0-9-].
func ValidBureauName(name string) bool {
	if len(name) < 2 || len(name) > 16 {
		return false
	}
	for _, c := range []byte(name) {
		if !(c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-') {
			return false
		}
	}
	return true
}

// NewBureau makes a bureau key named name, from 32 bytes of rand (the
// Ed25519 seed).
func NewBureau(name string, rand io.Reader) (*Bureau, error) {
	if !ValidBureauName(name) {
		return nil, fmt.Errorf("new bureau: name %q: want 2–16 characters of A-Z, 0-9 and -", name)
	}
	var seed [32]byte
	defer clear(seed[:])
	if _, err := io.ReadFull(rand, seed[:]); err != nil {
		return nil, fmt.Errorf("new bureau: %v", err)
	}
	return &Bureau{Name: name, priv: ed25519.NewKeyFromSeed(seed[:])}, nil
}

// Public returns the bureau's public part.
func (b *Bureau) Public() BureauPublic {
	return BureauPublic{Name: b.Name, Key: bytes.Clone(b.priv.Public().(ed25519.PublicKey))}
}

// Zero wipes the bureau's private key (best effort).
func (b *Bureau) Zero() {
	if b != nil {
		clear(b.priv)
	}
}

// BureauPublic is a bureau's public key and name.
type BureauPublic struct {
	Name string
	Key  ed25519.PublicKey
}

// Fingerprint returns the lowercase base32 of the first 16 bytes of
// SHA-256(Key): 26 characters.
func (p BureauPublic) Fingerprint() string {
	sum := sha256.Sum256(p.Key)
	return encodeID([16]byte(sum[:16]))
}

const bureauPublicTag = "fieldsync-bureau-v1"

// Marshal encodes p as its file form (omn.pub), one line of text:
//
//	fieldsync-bureau-v1 NAME BASE64(KEY)\n
//
// with standard padded base64 of the 32-byte Ed25519 key.
func (p BureauPublic) Marshal() []byte {
	return []byte(bureauPublicTag + " " + p.Name + " " + base64.StdEncoding.EncodeToString(p.Key) + "\n")
}

// ParseBureauPublic decodes a bureau public file made by Marshal.
func ParseBureauPublic(data []byte) (BureauPublic, error) {
	if len(data) > 1024 {
		return BureauPublic{}, malformed("bureau public key", ErrOversize, "")
	}
	f := strings.Fields(string(data))
	if len(f) == 0 {
		return BureauPublic{}, truncated("bureau public key")
	}
	if f[0] != bureauPublicTag {
		return BureauPublic{}, malformed("bureau public key", ErrUnknownVersion, "")
	}
	if len(f) != 3 {
		return BureauPublic{}, invalid("bureau public key", "want 3 fields")
	}
	key, err := base64.StdEncoding.Strict().DecodeString(f[2])
	if err != nil || len(key) != ed25519.PublicKeySize {
		return BureauPublic{}, invalid("bureau public key", "key")
	}
	if !ValidBureauName(f[1]) {
		return BureauPublic{}, invalid("bureau public key", "name")
	}
	return BureauPublic{Name: f[1], Key: key}, nil
}

// TrustSet is the set of bureau keys a device trusts, by fingerprint. Trust
// is never transitive. The zero value (and a nil *TrustSet) is an empty set.
// It is safe for concurrent use.
type TrustSet struct {
	mu sync.RWMutex
	m  map[string]BureauPublic
}

// NewTrustSet returns a set trusting bureaus.
func NewTrustSet(bureaus ...BureauPublic) *TrustSet {
	t := &TrustSet{}
	for _, b := range bureaus {
		t.Add(b)
	}
	return t
}

// Add trusts b (idempotent).
func (t *TrustSet) Add(b BureauPublic) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.m == nil {
		t.m = make(map[string]BureauPublic)
	}
	b.Key = bytes.Clone(b.Key)
	t.m[b.Fingerprint()] = b
}

// Remove stops trusting the bureau with fingerprint fp.
func (t *TrustSet) Remove(fp string) {
	t.mu.Lock()
	defer t.mu.Unlock()
	delete(t.m, fp)
}

// Lookup finds a trusted bureau by fingerprint.
func (t *TrustSet) Lookup(fp string) (BureauPublic, bool) {
	if t == nil {
		return BureauPublic{}, false
	}
	t.mu.RLock()
	defer t.mu.RUnlock()
	b, ok := t.m[fp]
	return b, ok
}

// List returns the trusted bureaus sorted by fingerprint.
func (t *TrustSet) List() []BureauPublic {
	if t == nil {
		return nil
	}
	t.mu.RLock()
	defer t.mu.RUnlock()
	fps := make([]string, 0, len(t.m))
	for fp := range t.m {
		fps = append(fps, fp)
	}
	slices.Sort(fps)
	out := make([]BureauPublic, len(fps))
	for i, fp := range fps {
		out[i] = t.m[fp]
	}
	return out
}

// Role is a device's role, fixed by its certificate.
type Role uint8

// Roles.
const (
	RoleOfficer Role = 1 // writes in spaces, receives epoch keys
	RoleRelay   Role = 2 // stores and forwards; writes nothing in spaces, holds no space key
)

// String returns "officer" or "relay".
func (r Role) String() string {
	switch r {
	case RoleOfficer:
		return "officer"
	case RoleRelay:
		return "relay"
	}
	return fmt.Sprintf("role(%d)", uint8(r))
}

// ParseRole parses "officer" or "relay".
func ParseRole(s string) (Role, error) {
	switch s {
	case "officer":
		return RoleOfficer, nil
	case "relay":
		return RoleRelay, nil
	}
	return 0, fmt.Errorf("unknown role %q: want officer or relay", s)
}

func (r Role) valid() bool { return r == RoleOfficer || r == RoleRelay }

// NameCommitment commits to an officer's name without revealing it:
// HMAC-SHA256(key = salt, "fieldsync/name-commitment/v1\x00" || officer).
// With a random 32-byte salt it hides the name; the profile (sealed, inside
// spaces) carries name and salt to open it. The name is committed as given:
// normalise it (NFC) before.
func NameCommitment(officer string, salt [32]byte) [32]byte {
	m := hmac.New(sha256.New, salt[:])
	m.Write([]byte("fieldsync/name-commitment/v1\x00"))
	m.Write([]byte(officer))
	var out [32]byte
	m.Sum(out[:0])
	return out
}
