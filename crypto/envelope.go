package crypto

import (
	"crypto/cipher"
	"crypto/ed25519"
	"crypto/sha256"
	"fieldsync/crypto/internal/format"
	"fmt"
	"io"

	"golang.org/x/crypto/chacha20poly1305"
)

// Kind is an envelope kind.
type Kind uint8

// Envelope kinds. Every kind belongs to one space's log and takes the next
// seq of its author there.
const (
	KindChange   Kind = 1 // body: XChaCha20-Poly1305 ciphertext of a change, under the epoch key
	KindKeyShare Kind = 2 // body: an epoch key wrapped to one device (WrapKey), in clear
	KindProfile  Kind = 3 // body: a sealed Profile (the officer's name), under the epoch key
	KindRouting  Kind = 4 // body: a Routing record, in clear
)

// String returns the kind's name.
func (k Kind) String() string {
	switch k {
	case KindChange:
		return "change"
	case KindKeyShare:
		return "key share"
	case KindProfile:
		return "profile"
	case KindRouting:
		return "routing"
	}
	return fmt.Sprintf("kind(%d)", uint8(k))
}

func (k Kind) valid() bool { return k >= KindChange && k <= KindRouting }

// sealed reports whether the kind's body is encrypted under the epoch key.
func (k Kind) sealed() bool { return k == KindChange || k == KindProfile }

// HeaderVersion is the envelope header format version that Seal writes;
// Verify accepts it and HeaderVersion2 (SealSegments, segments.go).
const HeaderVersion = format.HeaderVersion

// HeaderVersion2 is the segmented change envelope (SealSegments): its body
// is a list of segments sealed one by one, and the signature covers a
// commitment to them, so a segment can be erased (replaced by its hash)
// without breaking the signature or the author's hash chain
// (docs/crypto.md §2, "Envelope version 2").
const HeaderVersion2 = format.HeaderVersion2

// MaxEnvelopeSize bounds a whole envelope: a change is at most 32 MiB, plus
// header, nonce, tag and signature.
const MaxEnvelopeSize = 33 << 20

// Envelope layout sizes (docs/crypto.md has the byte-by-byte table).
const (
	HeaderSize    = format.HeaderSize                            // clear header (104)
	SignatureSize = ed25519.SignatureSize                        // 64
	MaxBodySize   = MaxEnvelopeSize - HeaderSize - SignatureSize // stored body
	sealOverhead  = nonceSize + tagSize                          // 40
	maxPlainBody  = MaxBodySize - sealOverhead                   // change/profile plaintext
	envOverhead   = HeaderSize + SignatureSize                   // 168
	_             = uint32(MaxBodySize)                          // fits the BodyLen field
)

// Header is an envelope's clear header. Everything in it is visible to relays
// and to anyone holding the envelope; it is signed, and for sealed kinds it is
// also the AEAD's additional data.
type Header struct {
	Version     uint8    // set by Seal to HeaderVersion
	Kind        Kind     // what the body is
	BodyVersion uint8    // version of the body's own format (agent stores+forwards newer ones)
	Space       SpaceID  // the space whose log this envelope is in
	Author      DeviceID // set by Seal from the signing identity
	Seq         uint64   // contiguous from 1 per (space, author); every kind takes the next seq
	Epoch       KeyID    // change/profile: the key that sealed the body; key share: the key wrapped; routing: the key that sealed the name (or zero)
	HLC         uint64   // packed hybrid logical clock (opaque here)
	Prev        [32]byte // Hash of the author's previous envelope in this space; zero for seq 1
	BodyLen     uint32   // length of the stored body; set by Seal
}

func (h *Header) appendTo(b []byte) []byte {
	return format.AppendHeader(b, &format.Header{
		Version: h.Version, Kind: uint8(h.Kind), BodyVersion: h.BodyVersion, Space: h.Space, Author: h.Author,
		Seq: h.Seq, Epoch: h.Epoch, HLC: h.HLC, Prev: h.Prev, BodyLen: h.BodyLen,
	})
}

// check validates the fields every envelope must get right.
func (h *Header) check() error {
	if !h.Kind.valid() {
		return invalid("envelope header", "unknown kind")
	}
	if h.Seq == 0 {
		return invalid("envelope header", "seq 0")
	}
	if (h.Seq == 1) != (h.Prev == [32]byte{}) {
		return invalid("envelope header", "prev must be zero exactly for seq 1")
	}
	if h.Kind.sealed() || h.Kind == KindKeyShare {
		if h.Epoch.IsZero() {
			return invalid("envelope header", "zero epoch")
		}
	}
	return nil
}

func decodeHeader(b []byte) (Header, error) {
	var f format.Header
	if err := format.DecodeHeader(b, &f); err != nil {
		return Header{}, err
	}
	h := Header{
		Version: f.Version, Kind: Kind(f.Kind), BodyVersion: f.BodyVersion, Space: f.Space, Author: f.Author,
		Seq: f.Seq, Epoch: f.Epoch, HLC: f.HLC, Prev: f.Prev, BodyLen: f.BodyLen,
	}
	if err := h.check(); err != nil {
		return h, err
	}
	if h.BodyLen > MaxBodySize {
		return h, malformed("envelope", ErrOversize, "body length")
	}
	if h.Version == HeaderVersion2 {
		if h.Kind != KindChange {
			return h, invalid("envelope header", "version 2 is for changes only")
		}
		if h.BodyLen < minSegmentedBody {
			return h, invalid("envelope", "segmented body shorter than one segment")
		}
		return h, nil
	}
	if h.Kind.sealed() && h.BodyLen < sealOverhead {
		return h, invalid("envelope", "sealed body shorter than nonce and tag")
	}
	return h, nil
}

// ParseHeader decodes an envelope's header and checks that the envelope's
// length agrees with it, without checking the signature. It never panics.
func ParseHeader(env []byte) (Header, error) {
	if len(env) > MaxEnvelopeSize {
		return Header{}, malformed("envelope", ErrOversize, "")
	}
	h, err := decodeHeader(env)
	if err != nil {
		return h, err
	}
	want := envOverhead + int(h.BodyLen)
	switch {
	case len(env) < want:
		return h, truncated("envelope")
	case len(env) > want:
		return h, invalid("envelope", "trailing bytes")
	}
	if h.Version == HeaderVersion2 {
		if _, err := parseSegments(env[HeaderSize:HeaderSize+int(h.BodyLen)], nil); err != nil {
			return h, err
		}
	}
	return h, nil
}

// SpaceKey is one epoch's symmetric key for a space. The zero value holds no
// key: Seal and Open refuse it.
type SpaceKey struct {
	key  [32]byte
	id   KeyID
	aead cipher.AEAD
}

// NewSpaceKey draws a new epoch key from rand.
func NewSpaceKey(rand io.Reader) (*SpaceKey, error) {
	var b [32]byte
	defer clear(b[:])
	if _, err := io.ReadFull(rand, b[:]); err != nil {
		return nil, fmt.Errorf("new space key: %v", err)
	}
	return SpaceKeyFromBytes(b[:])
}

// SpaceKeyFromBytes makes a SpaceKey from its 32 bytes (copied).
func SpaceKeyFromBytes(b []byte) (*SpaceKey, error) {
	if len(b) != 32 {
		return nil, invalid("space key", "want 32 bytes")
	}
	k := &SpaceKey{}
	copy(k.key[:], b)
	k.id = keyID(&k.key)
	aead, err := chacha20poly1305.NewX(k.key[:])
	if err != nil {
		return nil, fmt.Errorf("space key: %v", err)
	}
	k.aead = aead
	return k, nil
}

func keyID(k *[32]byte) KeyID { return KeyID(hash16("fieldsync epoch key id v1", k[:])) }

// ID returns the key's epoch ID.
func (k *SpaceKey) ID() KeyID { return k.id }

// Bytes returns a copy of the key's 32 bytes (to store it; wipe it after).
func (k *SpaceKey) Bytes() []byte { return append([]byte(nil), k.key[:]...) }

func (k *SpaceKey) usable() bool { return k != nil && k.aead != nil }

// Keyring finds epoch keys. It is shaped like age's Identity: an epoch is
// named by its key ID. Implementations must be safe for the concurrency their
// caller uses; Open only calls Key.
type Keyring interface {
	Key(space SpaceID, epoch KeyID) (*SpaceKey, bool)
}

// Seal builds a signed envelope. For KindChange and KindProfile, key is
// required and the body is encrypted (XChaCha20-Poly1305, random nonce, the
// encoded header as additional data); h.Epoch is set from key. For
// KindKeyShare and KindRouting, key is nil and body is stored as is (it must
// parse as a key share, with h.Epoch zero or equal to its epoch, or as a
// routing record for h.Space). Seal sets h.Version, h.Author and h.BodyLen.
// The signature is Ed25519ctx("fieldsync/envelope/v1") over header || body.
func Seal(h Header, body []byte, key *SpaceKey, id *Identity, rand io.Reader) ([]byte, error) {
	return seal(h, body, key, id, rand, false)
}

func seal(h Header, body []byte, key *SpaceKey, id *Identity, rand io.Reader, corrupt bool) ([]byte, error) {
	if id == nil || id.sign == nil {
		return nil, fmt.Errorf("seal: no identity")
	}
	h.Version = HeaderVersion
	h.Author = id.id
	bodyLen := len(body)
	switch h.Kind {
	case KindChange, KindProfile:
		if !key.usable() {
			return nil, fmt.Errorf("seal %v: %w", h.Kind, ErrNoKey)
		}
		if len(body) > maxPlainBody {
			return nil, malformed("envelope", ErrOversize, "body")
		}
		h.Epoch = key.id
		bodyLen += sealOverhead
	case KindKeyShare:
		ks, err := ParseKeyShare(body)
		if err != nil {
			return nil, fmt.Errorf("seal key share: %w", err)
		}
		if !h.Epoch.IsZero() && h.Epoch != ks.Epoch {
			return nil, invalid("envelope header", "epoch differs from the key share's")
		}
		h.Epoch = ks.Epoch
	case KindRouting:
		r, err := ParseRouting(body)
		if err != nil {
			return nil, fmt.Errorf("seal routing: %w", err)
		}
		if r.Space != h.Space {
			return nil, invalid("envelope", "routing record is for another space")
		}
	default:
		return nil, invalid("envelope header", "unknown kind")
	}
	if bodyLen > MaxBodySize {
		return nil, malformed("envelope", ErrOversize, "body")
	}
	h.BodyLen = uint32(bodyLen)
	if err := h.check(); err != nil {
		return nil, err
	}
	out := make([]byte, 0, envOverhead+bodyLen)
	out = h.appendTo(out)
	if h.Kind.sealed() {
		out = out[:HeaderSize+nonceSize]
		if _, err := io.ReadFull(rand, out[HeaderSize:]); err != nil {
			return nil, fmt.Errorf("seal: %v", err)
		}
		// The nonce is read in place: XChaCha20-Poly1305 consumes it before
		// writing the ciphertext, which goes after it.
		out = key.aead.Seal(out, out[HeaderSize:HeaderSize+nonceSize], body, out[:HeaderSize])
		if corrupt { // tests only: a validly signed envelope whose AEAD fails
			out[len(out)-1] ^= 1
		}
	} else {
		out = append(out, body...)
	}
	sig := signCtx(id.sign, out, ctxEnvelope)
	return append(out, sig...), nil
}

// Verify checks an envelope's structure and its author's signature, with no
// space key: it is what relays call. author must be the device the header
// names (else ErrSignature). It returns the header and the stored body (a
// sub-slice of env: ciphertext for change and profile, clear for key share
// and routing, whose structure it also checks — unless the body's first byte,
// its version, is newer than this code knows: such an envelope is returned
// as verified, so that it is stored and forwarded, and ParseKeyShare or
// ParseRouting report ErrUnknownVersion for it). It does not judge the
// author's certificate: see CheckAuthor.
func Verify(env []byte, author DevicePublic) (Header, []byte, error) {
	h, err := ParseHeader(env)
	if err != nil {
		return Header{}, nil, err
	}
	if author.ID() != h.Author {
		return Header{}, nil, wrapf(ErrSignature, "envelope author is not the given device")
	}
	n := HeaderSize + int(h.BodyLen)
	if h.Version == HeaderVersion2 {
		if !verifyCtx(author.SignKey, signedV2(env), env[n:], ctxEnvelopeV2) {
			return Header{}, nil, ErrSignature
		}
		return h, env[HeaderSize:n:n], nil
	}
	if !verifyCtx(author.SignKey, env[:n], env[n:], ctxEnvelope) {
		return Header{}, nil, ErrSignature
	}
	body := env[HeaderSize:n:n]
	if len(body) > 0 && body[0] > maxClearBodyVersion(h.Kind) {
		// A newer body format (docs/design.md §5 "Versions"): signed and stored,
		// forwarded, parsed once this code is upgraded.
		return h, body, nil
	}
	switch h.Kind {
	case KindKeyShare:
		ks, err := ParseKeyShare(body)
		if err != nil {
			return Header{}, nil, err
		}
		if ks.Epoch != h.Epoch {
			return Header{}, nil, invalid("envelope", "key share epoch differs from the header's")
		}
	case KindRouting:
		r, err := ParseRouting(body)
		if err != nil {
			return Header{}, nil, err
		}
		if r.Space != h.Space {
			return Header{}, nil, invalid("envelope", "routing record is for another space")
		}
	}
	return h, body, nil
}

// maxClearBodyVersion is the newest version of a clear body (key share,
// routing) whose structure Verify checks; 255 for sealed kinds, whose body
// Verify cannot read.
func maxClearBodyVersion(k Kind) byte {
	switch k {
	case KindKeyShare:
		return keyShareVersion
	case KindRouting:
		return routingVersion2
	}
	return 255
}

// Open verifies an envelope (as Verify) and, for change and profile, decrypts
// its body with the epoch key from keys: ErrNoKey if keys has none (or keys is
// nil), ErrAuth if the AEAD refuses. For key share and routing it returns the
// clear body, as Verify does. The returned plaintext is newly allocated.
func Open(env []byte, author DevicePublic, keys Keyring) (Header, []byte, error) {
	h, body, err := Verify(env, author)
	if err != nil || !h.Kind.sealed() {
		return h, body, err
	}
	if h.Version == HeaderVersion2 {
		return h, nil, errSegmented
	}
	return decrypt(env, h, body, keys)
}

// OpenVerified decrypts an envelope whose signature the caller has already
// checked with Verify (for the same bytes): verifying an Ed25519 signature
// costs far more than decrypting, and an agent receiving an envelope
// verifies it before storing, then opens it to apply. The AEAD still
// authenticates the body and the header. Never call it on unverified bytes:
// the author would then be unproven.
func OpenVerified(env []byte, keys Keyring) (Header, []byte, error) {
	h, err := ParseHeader(env)
	if err != nil {
		return Header{}, nil, err
	}
	if h.Version == HeaderVersion2 {
		return h, nil, errSegmented
	}
	n := HeaderSize + int(h.BodyLen)
	body := env[HeaderSize:n:n]
	if !h.Kind.sealed() {
		return h, body, nil
	}
	return decrypt(env, h, body, keys)
}

func decrypt(env []byte, h Header, body []byte, keys Keyring) (Header, []byte, error) {
	if keys == nil {
		return h, nil, ErrNoKey
	}
	k, ok := keys.Key(h.Space, h.Epoch)
	if !ok || !k.usable() {
		return h, nil, ErrNoKey
	}
	if k.id != h.Epoch {
		return h, nil, ErrAuth
	}
	pt, err := k.aead.Open(nil, body[:nonceSize], body[nonceSize:], env[:HeaderSize])
	if err != nil {
		return h, nil, ErrAuth
	}
	return h, pt, nil
}

// Hash returns an envelope's ID and chain link: SHA-256 of
// "fieldsync/envelope-id/v1\x00" || header || body, i.e. of everything the
// signature covers (not of the signature, so the ID names the content). It is
// meaningful for envelopes that parse; for shorter input it hashes all of it.
//
// For a version 2 envelope (segmented) it is the ID of docs/crypto.md §2
// "Envelope version 2": a hash of the signed header and the segments'
// commitment, the same before and after segments are erased.
func Hash(env []byte) [32]byte {
	if len(env) > 0 && env[0] == HeaderVersion2 {
		if id, ok := hashV2(env); ok {
			return id
		}
	}
	signed := env
	if len(env) >= envOverhead {
		signed = env[:len(env)-SignatureSize]
	}
	h := sha256.New()
	h.Write([]byte("fieldsync/envelope-id/v1\x00"))
	h.Write(signed)
	var out [32]byte
	h.Sum(out[:0])
	return out
}
