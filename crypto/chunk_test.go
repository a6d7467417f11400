package crypto

import (
	"bytes"
	"crypto/rand"
	"testing"
)

func TestChunkSealer(t *testing.T) {
	k1, err := NewSpaceKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	k2, _ := NewSpaceKey(rand.Reader)
	var sp, other SpaceID
	sp[0], other[0] = 1, 2
	s := NewChunkSealer(sp, k1)
	plain := []byte("passport page AB1234567")
	c1, r1 := s.Seal(plain)
	c2, r2 := NewChunkSealer(sp, k1).Seal(plain)
	if r1 != r2 || !bytes.Equal(c1, c2) {
		t.Fatal("same content, space and epoch: different chunks (no dedup)")
	}
	if _, r3 := NewChunkSealer(sp, k2).Seal(plain); r3 == r1 {
		t.Fatal("another epoch gave the same ref")
	}
	if _, r4 := NewChunkSealer(other, k1).Seal(plain); r4 == r1 {
		t.Fatal("another space gave the same ref")
	}
	got, err := s.Open(r1, c1)
	if err != nil || !bytes.Equal(got, plain) {
		t.Fatalf("open: %v", err)
	}
	bad := append([]byte(nil), c1...)
	bad[len(bad)-1] ^= 1
	if CheckChunk(r1, bad) {
		t.Fatal("a flipped byte still matches the ref")
	}
	if _, err := s.Open(r1, bad); err == nil {
		t.Fatal("opened a tampered chunk")
	}
	if _, err := NewChunkSealer(sp, k2).Open(r1, c1); err == nil {
		t.Fatal("opened under another epoch key")
	}
	if _, err := NewChunkSealer(other, k1).Open(r1, c1); err == nil {
		t.Fatal("opened as another space's chunk")
	}
	if _, err := s.Open(r1, c1[:10]); err == nil {
		t.Fatal("opened a truncated chunk")
	}
}
