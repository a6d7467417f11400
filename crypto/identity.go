package crypto

import (
	"crypto/ecdh"
	"crypto/ed25519"
	"crypto/sha256"
	"crypto/subtle"
	"fmt"
	"io"
)

// Signature domains. Every signature this package makes is Ed25519ctx
// (RFC 8032 §5.1, pure Ed25519 with a context string), one context per object
// type, so a signature over one kind of object never verifies as another,
// and none verifies as a plain Ed25519 signature (as used by TLS with the same
// key). The message is signed directly, not pre-hashed: no copy is needed to
// prepend a domain, and Ed25519's collision resilience is kept.
var (
	ctxEnvelope    = &ed25519.Options{Context: "fieldsync/envelope/v1"}
	ctxCertificate = &ed25519.Options{Context: "fieldsync/certificate/v1"}
	ctxRequest     = &ed25519.Options{Context: "fieldsync/request/v1"}
	ctxRevocation  = &ed25519.Options{Context: "fieldsync/revocation/v1"}
	ctxChallenge   = &ed25519.Options{Context: "fieldsync/challenge/v1"}
	ctxMessage     = &ed25519.Options{Context: "fieldsync/message/v1"}
)

func signCtx(priv ed25519.PrivateKey, msg []byte, ctx *ed25519.Options) []byte {
	sig, err := priv.Sign(nil, msg, ctx)
	if err != nil {
		// Only a malformed private key or FIPS-140-only mode get here;
		// both are programmer errors.
		panic("fieldsync/crypto: ed25519 sign: " + err.Error())
	}
	return sig
}

func verifyCtx(pub ed25519.PublicKey, msg, sig []byte, ctx *ed25519.Options) bool {
	if len(pub) != ed25519.PublicKeySize || len(sig) != ed25519.SignatureSize {
		return false
	}
	return ed25519.VerifyWithOptions(pub, msg, sig, ctx) == nil
}

// Identity is a device's private keys: an Ed25519 signing key and an X25519
// key-agreement key. Make one with NewIdentity or get it from a Keystore. The
// zero value holds no key and its methods panic, as a nil key would.
type Identity struct {
	sign  ed25519.PrivateKey
	agree *ecdh.PrivateKey
	pub   DevicePublic
	id    DeviceID
}

// NewIdentity draws a new device identity from rand: 32 bytes of Ed25519
// seed, then 32 bytes of X25519 private key, read in that order (so a seeded
// reader gives a reproducible identity).
func NewIdentity(rand io.Reader) (*Identity, error) {
	var seed, x [32]byte
	defer clear(seed[:])
	defer clear(x[:])
	if _, err := io.ReadFull(rand, seed[:]); err != nil {
		return nil, fmt.Errorf("new identity: %v", err)
	}
	if _, err := io.ReadFull(rand, x[:]); err != nil {
		return nil, fmt.Errorf("new identity: %v", err)
	}
	return identityFromKeys(seed[:], x[:])
}

func identityFromKeys(edSeed, x []byte) (*Identity, error) {
	if len(edSeed) != ed25519.SeedSize || len(x) != 32 {
		return nil, invalid("identity", "key length")
	}
	agree, err := ecdh.X25519().NewPrivateKey(x)
	if err != nil {
		return nil, invalid("identity", "x25519 key")
	}
	id := &Identity{sign: ed25519.NewKeyFromSeed(edSeed), agree: agree}
	id.pub.SignKey = id.sign.Public().(ed25519.PublicKey)
	copy(id.pub.AgreeKey[:], agree.PublicKey().Bytes())
	id.id = id.pub.ID()
	return id, nil
}

// Public returns the device's public keys.
func (id *Identity) Public() DevicePublic {
	p := id.pub
	p.SignKey = append(ed25519.PublicKey(nil), id.pub.SignKey...)
	return p
}

// ID returns the device ID.
func (id *Identity) ID() DeviceID { return id.id }

// Sign signs an application message with the device key, as Ed25519ctx with
// the context "fieldsync/message/v1": such a signature can never be taken for
// an envelope, certificate request or challenge signature. Check it with
// VerifyMessage.
func (id *Identity) Sign(msg []byte) []byte { return signCtx(id.sign, msg, ctxMessage) }

// Ed25519 returns the device's Ed25519 private key, for TLS certificates.
// TLS signs with pure Ed25519, a different domain from every signature this
// package makes.
func (id *Identity) Ed25519() ed25519.PrivateKey { return id.sign }

// zero wipes the private keys (best effort: the X25519 key inside
// crypto/ecdh cannot be reached).
func (id *Identity) zero() {
	if id == nil {
		return
	}
	clear(id.sign)
	id.agree = nil
}

// DevicePublic is a device's public keys.
type DevicePublic struct {
	SignKey  ed25519.PublicKey // 32 bytes
	AgreeKey [32]byte          // X25519
}

// ID returns the device ID: the first 16 bytes of SHA-256 of SignKey.
func (p DevicePublic) ID() DeviceID {
	sum := sha256.Sum256(p.SignKey)
	var d DeviceID
	copy(d[:], sum[:16])
	return d
}

// Equal reports whether p and q are the same keys.
func (p DevicePublic) Equal(q DevicePublic) bool {
	return subtle.ConstantTimeCompare(p.SignKey, q.SignKey) == 1 && p.AgreeKey == q.AgreeKey
}

// VerifyMessage checks a signature made by Identity.Sign.
func VerifyMessage(pub DevicePublic, msg, sig []byte) error {
	if !verifyCtx(pub.SignKey, msg, sig, ctxMessage) {
		return ErrSignature
	}
	return nil
}
