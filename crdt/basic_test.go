package crdt

import (
	"bytes"
	"errors"
	"testing"
)

func rid(b byte) ReplicaID { var r ReplicaID; r[0] = b; return r }

func mustApply(t *testing.T, s *Space, ch *Change) {
	t.Helper()
	if err := s.Apply(ch); err != nil {
		t.Fatal(err)
	}
}

func enc(t *testing.T, s *Space) []byte {
	t.Helper()
	b, err := s.MarshalBinary()
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// TestOpLevelDots is the pitfall of docs/crdt.md "Dots": overwriting field
// X of change (A,1) before (A,1) arrives must not kill field Y of (A,1).
func TestOpLevelDots(t *testing.T) {
	A, B := rid(1), rid(2)
	a1 := &Change{Author: A, Seq: 1, HLC: Timestamp{Wall: 10}, Ops: []Op{
		NewPut("r", "x", []byte("ax")), NewPut("r", "y", []byte("ay"))}}
	src := NewSpace()
	mustApply(t, src, a1)
	b1 := &Change{Author: B, Seq: 1, HLC: Timestamp{Wall: 20}, Ops: []Op{src.Record("r").Put("x", []byte("bx"))}}
	in := NewSpace()
	mustApply(t, in, b1)
	mustApply(t, in, a1) // late
	ord := NewSpace()
	mustApply(t, ord, a1)
	mustApply(t, ord, b1)
	for _, s := range []*Space{in, ord} {
		r := s.Record("r")
		x, _ := r.Register("x")
		y, ok := r.Register("y")
		if len(x.Siblings) != 1 || string(x.Value()) != "bx" {
			t.Fatalf("x = %+v", x)
		}
		if !ok || string(y.Value()) != "ay" {
			t.Fatalf("y lost: %+v", y)
		}
	}
	if !bytes.Equal(enc(t, in), enc(t, ord)) {
		t.Fatal("orders disagree")
	}
	m := Merge(in, ord)
	if !bytes.Equal(enc(t, m), enc(t, ord)) {
		t.Fatal("merge disagrees")
	}
}

func TestConcurrentPutsAndResolve(t *testing.T) {
	A, B, C := rid(1), rid(2), rid(3)
	base := &Change{Author: A, Seq: 1, HLC: Timestamp{Wall: 10}, Ops: []Op{NewPut("r", "f", []byte("v0"))}}
	s := NewSpace()
	mustApply(t, s, base)
	pa := &Change{Author: A, Seq: 2, HLC: Timestamp{Wall: 20}, Ops: []Op{s.Record("r").Put("f", []byte("va"))}}
	pb := &Change{Author: B, Seq: 1, HLC: Timestamp{Wall: 20}, Ops: []Op{s.Record("r").Put("f", []byte("vb"))}}
	mustApply(t, s, pa)
	mustApply(t, s, pb)
	cs := s.Record("r").Conflicts()
	if len(cs) != 1 || len(cs[0].Siblings) != 2 {
		t.Fatalf("conflicts = %+v", cs)
	}
	// Equal HLC: higher replica bytes wins the display.
	if string(cs[0].Siblings[0].Value) != "vb" {
		t.Fatalf("winner %q", cs[0].Siblings[0].Value)
	}
	// Resolve naming only one sibling: the other stays.
	op, err := s.Record("r").Resolve("f", []Dot{cs[0].Siblings[1].Dot}, []byte("vc"), "checked")
	if err != nil {
		t.Fatal(err)
	}
	mustApply(t, s, &Change{Author: C, Seq: 1, HLC: Timestamp{Wall: 30}, Ops: []Op{op}})
	f, _ := s.Record("r").Register("f")
	if len(f.Siblings) != 2 || string(f.Value()) != "vc" || !f.Conflict {
		t.Fatalf("after partial resolve: %+v", f)
	}
	if _, err := s.Record("r").Resolve("f", []Dot{{Replica: A, Seq: 9}}, nil, ""); !errors.Is(err, ErrNotSibling) {
		t.Fatalf("resolve of a non-sibling: %v", err)
	}
}

// HoldsValue: a put's value is held until an op that saw it overwrites it;
// a note's until it is removed.
func TestHoldsValue(t *testing.T) {
	s := NewSpace()
	a := ReplicaID{1}
	r := NewRecord("r")
	put := r.Put("f", []byte("v1"))
	note := r.AddNote("n")
	ch1 := &Change{Author: a, Seq: 1, HLC: Timestamp{Wall: 1}, Ops: []Op{put, note}}
	if err := s.Apply(ch1); err != nil {
		t.Fatal(err)
	}
	d0, d1 := Dot{Replica: a, Seq: 1, Op: 0}, Dot{Replica: a, Seq: 1, Op: 1}
	if !s.Record("r").HoldsValue(d0) || !s.Record("r").HoldsValue(d1) {
		t.Fatal("fresh values not held")
	}
	cur := s.Record("r").Clone()
	rm, err := cur.NoteRemove(NoteID(d1))
	if err != nil {
		t.Fatal(err)
	}
	ch2 := &Change{Author: a, Seq: 2, HLC: Timestamp{Wall: 2}, Ops: []Op{cur.Put("f", []byte("v2")), rm}}
	if err := s.Apply(ch2); err != nil {
		t.Fatal(err)
	}
	if s.Record("r").HoldsValue(d0) || s.Record("r").HoldsValue(d1) || !s.Record("r").HoldsValue(Dot{Replica: a, Seq: 2}) {
		t.Fatal("overwritten or removed values still held, or the new one not")
	}
}
