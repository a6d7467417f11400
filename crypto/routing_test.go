package crypto

import (
	"errors"
	"testing"
)

// TestRoutingSupersedes: a routing record naming the records it replaces
// round-trips as version 2 in one canonical encoding; one naming none stays
// version 1; non-canonical lists are refused.
func TestRoutingSupersedes(t *testing.T) {
	owner := BureauPublic{Key: make([]byte, 32)}.Fingerprint()
	r := Routing{Space: SpaceID{7}, Owner: owner, SealedName: []byte("sealed"),
		Supersedes: []RoutingRef{{Author: DeviceID{2}, Seq: 9}, {Author: DeviceID{1}, Seq: 4}, {Author: DeviceID{2}, Seq: 9}}}
	b := r.Marshal()
	if b[0] != routingVersion2 {
		t.Fatalf("version %d, want 2", b[0])
	}
	got, err := ParseRouting(b)
	if err != nil {
		t.Fatal(err)
	}
	if len(got.Supersedes) != 2 || got.Supersedes[0] != (RoutingRef{Author: DeviceID{1}, Seq: 4}) || got.Supersedes[1] != (RoutingRef{Author: DeviceID{2}, Seq: 9}) {
		t.Fatalf("supersedes = %+v", got.Supersedes)
	}
	if string(got.Marshal()) != string(b) {
		t.Fatal("not canonical: re-encoding differs")
	}
	if v2 := (Routing{Space: SpaceID{7}, Owner: owner}).Marshal(); v2[0] != routingVersion2 {
		t.Fatalf("a record superseding nothing is version %d", v2[0])
	}
	// Swap the two refs: no longer sorted.
	bad := append([]byte(nil), b...)
	n := len(bad)
	copy(bad[n-48:n-24], b[n-24:])
	copy(bad[n-24:], b[n-48:n-24])
	if _, err := ParseRouting(bad); !errors.Is(err, ErrMalformed) {
		t.Fatalf("unsorted supersedes: %v", err)
	}
}

// TestRoutingBindsOwner: a routing record passes CheckRouting only when the
// space ID is the one made for its owner with its nonce — so a device of
// another bureau cannot claim a space — and a version 1 record never does.
func TestRoutingBindsOwner(t *testing.T) {
	w := newWorld(t)
	r := Routing{Space: w.space, Nonce: w.nonce, Owner: w.bureau.Public().Fingerprint()}
	h := Header{Kind: KindRouting, Space: w.space, Author: w.alice.ID(), Seq: 1}
	if err := CheckRouting(h, r, w.aliceCert); err != nil {
		t.Fatal(err)
	}
	// KAZ's device claims OMN's space, with any nonce: refused.
	claim := Routing{Space: w.space, Nonce: w.nonce, Owner: w.other.Public().Fingerprint()}
	if err := CheckRouting(h, claim, w.foreignCert); !errors.Is(err, ErrMalformed) {
		t.Fatalf("foreign claim: %v", err)
	}
	bad := r
	bad.Nonce[0] ^= 1
	if err := CheckRouting(h, bad, w.aliceCert); !errors.Is(err, ErrMalformed) {
		t.Fatalf("wrong nonce: %v", err)
	}
	// A version 1 record (no nonce) parses but never passes.
	v1 := r.Marshal()
	v1[0] = routingVersion1
	v1 = v1[:len(v1)-17] // drop nonce and the empty supersedes count
	p, err := ParseRouting(v1)
	if err != nil {
		t.Fatal(err)
	}
	if err := CheckRouting(h, p, w.aliceCert); !errors.Is(err, ErrMalformed) {
		t.Fatalf("version 1: %v", err)
	}
}
