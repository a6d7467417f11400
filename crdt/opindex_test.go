package crdt

import (
	"bytes"
	"errors"
	"testing"
)

// A change applied without one record's ops (the record erased from its
// envelope) must leave the other records exactly as the whole change does,
// and later changes that overwrite their dots must work the same on both.
func TestOpIndexPartialChange(t *testing.T) {
	A, B := rid(1), rid(2)
	whole := &Change{Author: A, Seq: 1, HLC: Timestamp{Wall: 10}, Ops: []Op{
		NewPut("a", "x", []byte("ax")), NewPut("secret", "x", []byte("CANARY")), NewPut("secret", "y", []byte("c2")), NewPut("c", "x", []byte("cx"))}}
	part := &Change{Author: A, Seq: 1, HLC: whole.HLC, Ops: []Op{whole.Ops[0], whole.Ops[3]}, OpIndex: []uint32{0, 3}}
	full, cut := NewSpace(), NewSpace()
	mustApply(t, full, whole)
	mustApply(t, cut, part)
	if cut.Record("secret") != nil {
		t.Fatal("the erased record exists")
	}
	// B overwrites c.x, having seen the whole change.
	b1 := &Change{Author: B, Seq: 1, HLC: Timestamp{Wall: 20}, Ops: []Op{full.Record("c").Put("x", []byte("bx"))}}
	if b1.Ops[0].Seen[0] != (Dot{Replica: A, Seq: 1, Op: 3}) {
		t.Fatalf("seen %v", b1.Ops[0].Seen)
	}
	mustApply(t, full, b1)
	mustApply(t, cut, b1)
	for _, id := range []RecordID{"a", "c"} {
		x, y := must(full.Record(id).MarshalBinary()), must(cut.Record(id).MarshalBinary())
		if !bytes.Equal(x, y) {
			t.Fatalf("record %s differs", id)
		}
	}
	if v, _ := cut.Record("c").Register("x"); len(v.Siblings) != 1 || string(v.Value()) != "bx" {
		t.Fatalf("c.x = %+v", v)
	}
	if _, err := part.MarshalBinary(); !errors.Is(err, ErrMalformed) && !errors.Is(err, ErrInvalidChange) {
		t.Fatalf("a partial change encodes: %v", err)
	}
	for _, bad := range [][]uint32{{0}, {3, 0}, {1, 1}, {0, MaxOpsPerChange}} {
		p := *part
		p.OpIndex = bad
		if err := p.Validate(); err == nil {
			t.Fatalf("op indexes %v accepted", bad)
		}
	}
}

func must[T any](v T, err error) T {
	if err != nil {
		panic(err)
	}
	return v
}
