package crypto

import (
	"bytes"
	"testing"
)

// A prepared envelope's ID is the ID of the envelope it becomes once signed,
// and signing it yields exactly what SealSegments does: the chain can name
// it before its signature exists.
func TestPreparedEnvelopeIDBeforeSignature(t *testing.T) {
	w := newWorld(t)
	h := Header{Kind: KindChange, Space: w.space, Seq: 3, Prev: [32]byte{7}, HLC: 42 << 16, BodyVersion: 2}
	segs := [][]byte{[]byte("record A ops"), []byte("record B ops")}
	p, err := PrepareSegments(h, segs, w.key, w.alice, detRand("nonce v2"))
	if err != nil {
		t.Fatal(err)
	}
	id := p.ID()
	env := p.Sign()
	if got := Hash(env); got != id {
		t.Fatalf("ID before signing %x, Hash after %x", id[:8], got[:8])
	}
	if _, _, err := Verify(env, w.alice.Public()); err != nil {
		t.Fatalf("prepared then signed envelope does not verify: %v", err)
	}
	sealed := must(SealSegments(h, segs, w.key, w.alice, detRand("nonce v2")))
	if !bytes.Equal(env, sealed) {
		t.Fatal("PrepareSegments+Sign differs from SealSegments")
	}
	if _, err := PrepareSegments(h, segs, w.key, nil, detRand("x")); err == nil {
		t.Fatal("prepared without an identity")
	}
}
