package sync

import (
	"crypto/ed25519"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"fmt"
	"math/big"
	"time"
)

// ErrUnauthenticated is returned when a peer fails the stream challenge.
var ErrUnauthenticated = errors.New("sync: peer not authenticated")

// Role is a device's role (values match crypto.Role).
type Role uint8

// Roles.
const (
	RoleOfficer Role = 1
	RoleRelay   Role = 2
)

func (r Role) String() string {
	switch r {
	case RoleOfficer:
		return "officer"
	case RoleRelay:
		return "relay"
	}
	return fmt.Sprintf("role(%d)", uint8(r))
}

// Peer is an authenticated peer: what Authenticator.VerifyPeer learned from
// its certificate.
type Peer struct {
	ID     PeerID
	Bureau string // fingerprint of the bureau that enrolled it
	Role   Role
	// SignKey is the device's Ed25519 key from its certificate. When set,
	// sync also checks that the peer's TLS certificate carries this key.
	SignKey ed25519.PublicKey
}

// Side says which end of a stream signs (values match crypto.Side).
type Side uint8

// Sides.
const (
	SideInitiator Side = 1
	SideResponder Side = 2
)

// Transcript is what both ends of a sync stream sign to prove possession of
// their device keys on that stream. Its fields match crypto.Transcript.
type Transcript struct {
	Label          string // the mesh label
	Binding        []byte // TLS exporter keying material of this stream
	Initiator      PeerID
	Responder      PeerID
	InitiatorNonce [32]byte
	ResponderNonce [32]byte
}

// Authenticator is the device identity and trust policy that package agent
// supplies (backed by crypto and the store).
//
// Concurrency: all methods may be called from several goroutines at once;
// none may block on the network.
type Authenticator interface {
	// LocalID returns this device's ID.
	LocalID() PeerID

	// TLSCertificate returns the TLS certificate of this device: a
	// self-signed x509 certificate over its Ed25519 device key (see
	// SelfSignedTLS). Called once by New.
	TLSCertificate() (tls.Certificate, error)

	// Certificate returns this device's certificate blob (crypto's compact
	// signed form), presented to every peer. Empty for an unenrolled device
	// (then no peer will serve it any space).
	Certificate() []byte

	// SignChallenge signs t for side (crypto.SignChallenge).
	SignChallenge(t Transcript, side Side) ([]byte, error)

	// VerifyPeer parses and verifies a peer's certificate blob (trusted
	// bureau, validity, not revoked) and its challenge signature over t for
	// side, and returns who it is. Any failure is an error (wrapping a
	// *RejectError for counting, if it likes).
	VerifyPeer(cert []byte, t Transcript, side Side, sig []byte) (Peer, error)

	// Entitled reports whether peer may receive space's envelopes (by the
	// space's routing record: a device of a released bureau; relays of
	// those bureaus included).
	Entitled(peer Peer, space SpaceID) bool

	// MeshObjects returns the mesh-wide, bureau-signed objects this node
	// holds (device certificates, revocations), each as an opaque blob. They
	// go to every authenticated peer.
	MeshObjects() ([][]byte, error)

	// IngestMeshObject verifies and stores one mesh-wide object from an
	// authenticated peer; idempotent (a known object returns false, nil); a
	// rejection wraps a *RejectError.
	IngestMeshObject(from Peer, obj []byte) (added bool, err error)
}

// SelfSignedTLS returns a TLS certificate for an Ed25519 device key: a
// self-signed x509 certificate (valid 1970–9999, since trust comes from the
// fieldsync certificate and the challenge, not from x509).
func SelfSignedTLS(key ed25519.PrivateKey) (tls.Certificate, error) {
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1),
		Subject:      pkix.Name{CommonName: "fieldsync device"},
		NotBefore:    time.Unix(0, 0),
		NotAfter:     time.Date(9999, 12, 31, 0, 0, 0, 0, time.UTC),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
	if err != nil {
		return tls.Certificate{}, fmt.Errorf("self-signed tls certificate: %w", err)
	}
	leaf, err := x509.ParseCertificate(der)
	if err != nil {
		return tls.Certificate{}, fmt.Errorf("self-signed tls certificate: %w", err)
	}
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key, Leaf: leaf}, nil
}
