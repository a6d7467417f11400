package crypto

import (
	"bytes"
	"crypto/rand"
	"errors"
	"testing"
	"time"
)

func TestErasureMarker(t *testing.T) {
	id, err := NewIdentity(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	other, _ := NewIdentity(rand.Reader)
	b, _ := NewBureau("OMN", rand.Reader)
	owner := b.Public().Fingerprint()
	space, nonce, err := NewSpaceIDFor(owner, rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	at := time.Date(2026, 12, 6, 10, 0, 0, 0, time.UTC)
	e, err := NewErasure(id, space, nonce, owner, at)
	if err != nil {
		t.Fatal(err)
	}
	blob := e.Marshal()
	if len(blob) != erasureSize || !IsErasure(blob) {
		t.Fatalf("marker of %d bytes, want %d", len(blob), erasureSize)
	}
	p, err := ParseErasure(blob)
	if err != nil {
		t.Fatal(err)
	}
	if p.Space != space || p.Owner != owner || p.Author != id.ID() || !p.IssuedAt.Equal(at) || !bytes.Equal(p.Marshal(), blob) {
		t.Fatalf("round trip: %+v", p)
	}
	if err := p.Verify(id.Public()); err != nil {
		t.Fatal(err)
	}
	if err := p.Verify(other.Public()); !errors.Is(err, ErrSignature) {
		t.Fatalf("verified against another device: %v", err)
	}
	// Every byte is covered: a flip anywhere fails to parse or to verify.
	for i := range blob {
		c := bytes.Clone(blob)
		c[i] ^= 1
		if q, err := ParseErasure(c); err == nil && q.Verify(id.Public()) == nil {
			t.Fatalf("flip at byte %d still verifies", i)
		}
	}
	// A space of another bureau cannot be named with this owner.
	b2, _ := NewBureau("KAZ", rand.Reader)
	if _, err := NewErasure(id, space, nonce, b2.Public().Fingerprint(), at); !errors.Is(err, ErrInvalid) {
		t.Fatalf("marker for a space not bound to its owner: %v", err)
	}
	// The signature domain is the marker's own: the same bytes signed as an
	// application message do not verify.
	forged := append(e.encode(), id.Sign(e.encode())...)
	if q, err := ParseErasure(forged); err != nil || q.Verify(id.Public()) == nil {
		t.Fatalf("a message signature verified as an erase marker (%v)", err)
	}
	for _, bad := range [][]byte{nil, blob[:10], append(bytes.Clone(blob), 0)} {
		if _, err := ParseErasure(bad); err == nil {
			t.Fatalf("parsed %d bytes", len(bad))
		}
	}
}
