package crypto

import (
	"bytes"
	"encoding/binary"
	"errors"
	"testing"
)

func (w *world) sealSegs(t testing.TB, seq uint64, prev [32]byte, segs ...string) []byte {
	t.Helper()
	bs := make([][]byte, len(segs))
	for i, s := range segs {
		bs[i] = []byte(s)
	}
	h := Header{Kind: KindChange, Space: w.space, Seq: seq, Prev: prev, HLC: 42 << 16, BodyVersion: 2}
	return must(SealSegments(h, bs, w.key, w.alice, detRand("nonce v2")))
}

func plains(t *testing.T, env []byte, keys Keyring) []string {
	t.Helper()
	_, segs, err := OpenSegments(env, keys)
	if err != nil {
		t.Fatal(err)
	}
	out := make([]string, len(segs))
	for i, s := range segs {
		if s.Erased {
			out[i] = "<erased>"
		} else {
			out[i] = string(s.Plain)
		}
	}
	return out
}

func TestSegmentsRoundTripAndErase(t *testing.T) {
	w := newWorld(t)
	pub := w.alice.Public()
	env := w.sealSegs(t, 1, [32]byte{}, "record A ops", "CANARY-record-B", "record C ops")
	h, _, err := Verify(env, pub)
	if err != nil || h.Version != HeaderVersion2 || h.Kind != KindChange || h.Epoch != w.key.ID() {
		t.Fatalf("verify: %v %+v", err, h)
	}
	if got := plains(t, env, w.keys); got[0] != "record A ops" || got[1] != "CANARY-record-B" || got[2] != "record C ops" {
		t.Fatalf("segments %q", got)
	}
	id := Hash(env)
	next := w.seal(t, KindChange, 2, id, []byte("next change"))

	er := must(EraseSegments(env, 1))
	if bytes.Contains(er, []byte("CANARY")) {
		t.Fatal("plaintext in envelope (test is wrong: bodies are sealed)")
	}
	infos := must(Segments(env))
	sealedB := infos[1].sealed
	if !bytes.Contains(env, sealedB) || bytes.Contains(er, sealedB) {
		t.Fatal("the erased segment's sealed bytes are still in the envelope")
	}
	if len(er) >= len(env) {
		t.Fatal("erasure did not shrink the envelope")
	}
	if _, _, err := Verify(er, pub); err != nil {
		t.Fatalf("erased envelope no longer verifies: %v", err)
	}
	if Hash(er) != id {
		t.Fatal("erasure changed the envelope ID: the chain breaks")
	}
	if nh := must(ParseHeader(next)); nh.Prev != Hash(er) {
		t.Fatal("next envelope's prev no longer matches")
	}
	if got := plains(t, er, w.keys); got[0] != "record A ops" || got[1] != "<erased>" || got[2] != "record C ops" {
		t.Fatalf("after erasure %q", got)
	}
	// Idempotent, and erasing more keeps the ID.
	if again := must(EraseSegments(er, 1)); !bytes.Equal(again, er) {
		t.Fatal("erasing twice differs")
	}
	all := must(EraseSegments(er, 0, 2))
	if _, _, err := Verify(all, pub); err != nil || Hash(all) != id {
		t.Fatalf("all erased: %v", err)
	}
	if _, err := EraseSegments(env, 3); !errors.Is(err, ErrInvalid) {
		t.Fatalf("index out of range: %v", err)
	}
	// Open and OpenVerified refuse a segmented envelope with a clear error.
	if _, _, err := Open(env, pub, w.keys); !errors.Is(err, ErrUnknownVersion) {
		t.Fatalf("Open v2: %v", err)
	}
	if _, _, err := OpenVerified(env, w.keys); !errors.Is(err, ErrUnknownVersion) {
		t.Fatalf("OpenVerified v2: %v", err)
	}
	if _, _, err := OpenSegments(env, nil); !errors.Is(err, ErrNoKey) {
		t.Fatalf("no key: %v", err)
	}
	// Fully erased: no key needed.
	if _, _, err := OpenSegments(all, nil); err != nil {
		t.Fatalf("fully erased needs no key: %v", err)
	}
}

func TestSegmentsV1StillWorks(t *testing.T) {
	w := newWorld(t)
	env := w.seal(t, KindChange, 1, [32]byte{}, []byte("v1 change"))
	if got := plains(t, env, w.keys); len(got) != 1 || got[0] != "v1 change" {
		t.Fatalf("v1 as segments %q", got)
	}
	if _, err := Segments(env); !errors.Is(err, ErrUnknownVersion) {
		t.Fatalf("v1 segments: %v", err)
	}
	if _, err := EraseSegments(env, 0); !errors.Is(err, ErrUnknownVersion) {
		t.Fatalf("v1 erase: %v", err)
	}
	prof := w.seal(t, KindProfile, 2, Hash(env), Profile{Officer: "x"}.Marshal())
	if _, _, err := OpenSegments(prof, w.keys); !errors.Is(err, ErrInvalid) {
		t.Fatalf("profile as segments: %v", err)
	}
}

// Every way of altering a segmented envelope other than erasing a segment
// fails the signature or the AEAD.
func TestSegmentsTamper(t *testing.T) {
	w := newWorld(t)
	pub := w.alice.Public()
	env := w.sealSegs(t, 1, [32]byte{}, "aaaa", "bbbb", "cccc")
	infos := must(Segments(env))
	segOff := func(i int) int { // offset of segment i's flag
		o := HeaderSize + 2
		for j := 0; j < i; j++ {
			o += 1 + 4 + len(infos[j].sealed)
		}
		return o
	}
	check := func(name string, bad []byte) {
		t.Helper()
		if _, _, err := Verify(bad, pub); err == nil {
			t.Fatalf("%s: verifies", name)
		} else {
			typedErr(t, err)
		}
	}
	// A flipped byte in a sealed segment.
	b := bytes.Clone(env)
	b[segOff(1)+5+30] ^= 1
	check("flipped segment byte", b)
	// A segment "erased" to a wrong hash.
	er := must(EraseSegments(env, 1))
	b = bytes.Clone(er)
	b[segOff(1)+1] ^= 1
	check("wrong erased hash", b)
	// Header fields (seq, epoch, prev, space) are signed.
	for _, off := range []int{36 + 7, 44, 60, 4} {
		b = bytes.Clone(env)
		b[off] ^= 1
		if _, _, err := Verify(b, pub); err == nil {
			t.Fatalf("header byte %d not signed", off)
		}
	}
	// The body length must match.
	b = bytes.Clone(env)
	binary.BigEndian.PutUint32(b[100:], binary.BigEndian.Uint32(b[100:])+1)
	check("body length", b)
	// Dropping a segment (count and length fixed up) changes the commitment.
	b = append([]byte(nil), env[:HeaderSize]...)
	body := binary.BigEndian.AppendUint16(nil, 2)
	body = append(body, env[segOff(0):segOff(2)]...)
	binary.BigEndian.PutUint32(b[100:], uint32(len(body)))
	b = append(append(b, body...), env[len(env)-SignatureSize:]...)
	check("dropped segment", b)
	// Swapping two segments: same length, different commitment.
	b = append([]byte(nil), env[:segOff(0)]...)
	b = append(b, env[segOff(1):segOff(2)]...)
	b = append(b, env[segOff(0):segOff(1)]...)
	b = append(b, env[segOff(2):]...)
	check("swapped segments", b)
	// A segment moved to another envelope of the same author (re-signed by
	// the author, so only the AEAD's additional data can catch it).
	other := w.sealSegs(t, 1, [32]byte{}, "xxxx", "yyyy", "zzzz")
	oi := must(Segments(other))
	var segs [][]byte
	_ = segs
	moved := bytes.Clone(env)
	copy(moved[segOff(0)+5:], oi[1].sealed) // other's segment 1 into position 0
	// re-sign as the author would
	mi := must(Segments(moved))
	moved = append(moved[:len(moved)-SignatureSize], signCtx(w.alice.sign, signedPrefix(moved, mi), ctxEnvelopeV2)...)
	if _, _, err := Verify(moved, pub); err != nil {
		t.Fatalf("re-signed envelope: %v", err)
	}
	if _, _, err := OpenSegments(moved, w.keys); !errors.Is(err, ErrAuth) {
		t.Fatalf("moved segment opens: %v", err)
	}
	// A v1 signature (other context) over the same bytes does not verify.
	b = bytes.Clone(env)
	copy(b[len(b)-SignatureSize:], signCtx(w.alice.sign, signedPrefix(env, infos), ctxEnvelope))
	check("v1 context", b)
	// Another author's key.
	if _, _, err := Verify(env, w.bob.Public()); !errors.Is(err, ErrSignature) {
		t.Fatalf("other author: %v", err)
	}
}

func TestSegmentsMalformed(t *testing.T) {
	w := newWorld(t)
	env := w.sealSegs(t, 1, [32]byte{}, "aaaa")
	for name, mut := range map[string]func([]byte) []byte{
		"zero count": func(b []byte) []byte { b[HeaderSize], b[HeaderSize+1] = 0, 0; return b },
		"bad flag":   func(b []byte) []byte { b[HeaderSize+2] = 7; return b },
		"count 2":    func(b []byte) []byte { b[HeaderSize+1] = 2; return b },
		"short seg":  func(b []byte) []byte { binary.BigEndian.PutUint32(b[HeaderSize+3:], 3); return b },
		"huge seg":   func(b []byte) []byte { binary.BigEndian.PutUint32(b[HeaderSize+3:], 1<<31); return b },
		"kind":       func(b []byte) []byte { b[1] = byte(KindProfile); return b },
		"truncated":  func(b []byte) []byte { return b[:len(b)-1] },
		"header":     func(b []byte) []byte { return b[:50] },
	} {
		b := mut(bytes.Clone(env))
		if _, err := ParseHeader(b); err == nil {
			t.Fatalf("%s: parses", name)
		} else {
			typedErr(t, err)
		}
		if _, _, err := OpenSegments(b, w.keys); err == nil {
			t.Fatalf("%s: opens", name)
		}
		if _, err := EraseSegments(b, 0); err == nil {
			t.Fatalf("%s: erases", name)
		}
		_ = Hash(b)
	}
}

func TestRecordErasure(t *testing.T) {
	w := newWorld(t)
	owner := w.bureau.Public().Fingerprint()
	refs := []SegmentRef{{Author: w.alice.ID(), Seq: 5, Index: 1}, {Author: w.alice.ID(), Seq: 2, Index: 0}, {Author: w.alice.ID(), Seq: 5, Index: 1}}
	e, err := NewRecordErasure(w.alice, w.space, w.nonce, owner, w.key, "CANARY-record", refs, []ChunkRef{{9}, {3}, {9}}, t0)
	if err != nil {
		t.Fatal(err)
	}
	if len(e.Chunks) != 2 || e.Chunks[0] != (ChunkRef{3}) {
		t.Fatalf("chunks not sorted and unique: %v", e.Chunks)
	}
	if len(e.Segments) != 2 || e.Segments[0].Seq != 2 {
		t.Fatalf("segments not sorted and unique: %+v", e.Segments)
	}
	b := e.Marshal()
	if bytes.Contains(b, []byte("CANARY")) {
		t.Fatal("the marker names the record in clear")
	}
	if !IsRecordErasure(b) || IsErasure(b) {
		t.Fatal("magic")
	}
	p, err := ParseRecordErasure(b)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(p.Marshal(), b) || p.Tag != RecordTag(w.key, "CANARY-record") || p.TagEpoch != w.key.ID() {
		t.Fatal("round trip")
	}
	if err := p.Verify(w.alice.Public()); err != nil {
		t.Fatal(err)
	}
	if err := p.Verify(w.bob.Public()); !errors.Is(err, ErrSignature) {
		t.Fatalf("other device: %v", err)
	}
	bad := bytes.Clone(b)
	bad[len(bad)-64-4-64-1] ^= 1 // the last segment index
	if p, err := ParseRecordErasure(bad); err == nil && p.Verify(w.alice.Public()) == nil {
		t.Fatal("altered marker verifies")
	}
	for n := 0; n < len(b); n++ {
		if _, err := ParseRecordErasure(b[:n]); err == nil {
			t.Fatalf("prefix %d parses", n)
		} else {
			typedErr(t, err)
		}
	}
	other := must(NewSpaceKey(detRand("epoch 2")))
	if RecordTag(other, "CANARY-record") == p.Tag {
		t.Fatal("the tag does not depend on the key")
	}
	if _, err := NewRecordErasure(w.alice, SpaceID{1}, w.nonce, owner, w.key, "r", refs, nil, t0); !errors.Is(err, ErrInvalid) {
		t.Fatalf("space not bound: %v", err)
	}
	if _, err := NewRecordErasure(w.alice, w.space, w.nonce, owner, w.key, "r", nil, nil, t0); !errors.Is(err, ErrInvalid) {
		t.Fatalf("no segment: %v", err)
	}
}
