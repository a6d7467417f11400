package crdt_test

import (
	"errors"
	"testing"

	"fieldsync/crdt"
)

func depReplica(b byte) crdt.ReplicaID {
	var r crdt.ReplicaID
	r[0] = b
	return r
}

// A change's dependencies survive encoding, bind the replicas its seen dots
// name, and CheckDeps refuses a seen dot above them.
func TestChangeDeps(t *testing.T) {
	a, b, c := depReplica(1), depReplica(2), depReplica(3)
	ch := &crdt.Change{Author: a, Seq: 5, HLC: crdt.Timestamp{Wall: 1000}, Ops: []crdt.Op{
		{Kind: crdt.OpPut, Record: "r", Field: "f", Value: []byte("v"), Seen: []crdt.Dot{{Replica: b, Seq: 3}, {Replica: c, Seq: 9, Op: 2}}},
	}, Deps: []crdt.Dep{{Replica: b, Seq: 4, Hash: [32]byte{7}}, {Replica: c, Seq: 9, Hash: [32]byte{8}}}}
	enc, err := ch.MarshalBinary()
	if err != nil {
		t.Fatal(err)
	}
	got, err := crdt.UnmarshalChange(enc)
	if err != nil {
		t.Fatal(err)
	}
	if len(got.Deps) != 2 || got.Deps[0] != ch.Deps[0] || got.Deps[1] != ch.Deps[1] {
		t.Fatalf("deps %+v, want %+v", got.Deps, ch.Deps)
	}
	if err := got.CheckDeps(); err != nil {
		t.Fatalf("CheckDeps: %v", err)
	}
	// A seen dot above its dependency: its author cannot have seen it.
	above := *ch
	above.Deps = []crdt.Dep{{Replica: b, Seq: 2}, {Replica: c, Seq: 9}}
	if err := above.CheckDeps(); err == nil {
		t.Fatal("a seen dot above its dependency passed CheckDeps")
	}
	// No dependency at all on a replica a seen dot names.
	none := *ch
	none.Deps = nil
	if err := none.CheckDeps(); err == nil {
		t.Fatal("a seen dot without a dependency passed CheckDeps")
	}
	// Malformed dependency lists are invalid changes.
	for name, deps := range map[string][]crdt.Dep{
		"on the author": {{Replica: a, Seq: 1}},
		"unsorted":      {{Replica: c, Seq: 9}, {Replica: b, Seq: 4}},
		"seq 0":         {{Replica: b, Seq: 0}},
		"unnamed":       {{Replica: depReplica(4), Seq: 1}},
	} {
		bad := *ch
		bad.Deps = deps
		if err := bad.Validate(); err == nil {
			t.Errorf("dependencies %s: valid", name)
		}
	}
	// Own seen dots need no dependency: the author's log is chained.
	own := &crdt.Change{Author: a, Seq: 5, Ops: []crdt.Op{{Kind: crdt.OpPut, Record: "r", Field: "f", Seen: []crdt.Dot{{Replica: a, Seq: 4}}}}}
	if err := own.CheckDeps(); err != nil {
		t.Fatalf("own dots: %v", err)
	}
	// Batches carry no dependencies.
	if _, err := crdt.EncodeChanges([]*crdt.Change{ch}, false); err == nil {
		t.Fatal("a change with dependencies went into a batch")
	}
}

// A version-1 change (no dependencies) still decodes; one that names another
// replica's dots then fails CheckDeps.
func TestChangeVersion1Decodes(t *testing.T) {
	a, b := depReplica(1), depReplica(2)
	ch := &crdt.Change{Author: a, Seq: 2, Ops: []crdt.Op{{Kind: crdt.OpPut, Record: "r", Field: "f", Value: []byte("x"), Seen: []crdt.Dot{{Replica: b, Seq: 1}}}}}
	enc, err := ch.MarshalBinary()
	if err != nil {
		t.Fatal(err)
	}
	// The version-2 encoding of a change without dependencies is the
	// version-1 encoding with a zero dependency count after the table:
	// author(16) seq(1) hlc(8) table(1+16).
	if enc[0] != 2 || enc[1+16+1+8+1+16] != 0 {
		t.Fatalf("unexpected encoding % x", enc[:48])
	}
	v1 := append([]byte{1}, enc[1:1+16+1+8+1+16]...)
	v1 = append(v1, enc[1+16+1+8+1+16+1:]...)
	got, err := crdt.UnmarshalChange(v1)
	if err != nil {
		t.Fatalf("version 1: %v", err)
	}
	if err := got.CheckDeps(); err == nil {
		t.Fatal("a version-1 change naming another replica's dot passed CheckDeps")
	}
	v9 := append([]byte{9}, enc[1:]...)
	if _, err := crdt.UnmarshalChange(v9); !errors.Is(err, crdt.ErrUnknownVersion) {
		t.Fatalf("version 9: %v, want ErrUnknownVersion", err)
	}
}

// Many partial dots (a change naming ops whose change has not arrived) are a
// set: inserting n of them is linear, not quadratic.
func BenchmarkApplyManyPartials(b *testing.B) {
	a, v := depReplica(1), depReplica(2)
	const n = 100_000
	seen := make([]crdt.Dot, n)
	for i := range seen {
		seen[i] = crdt.Dot{Replica: v, Seq: 1, Op: uint32(i)}
	}
	ch := &crdt.Change{Author: a, Seq: 1, Ops: []crdt.Op{{Kind: crdt.OpPut, Record: "r", Field: "f", Value: []byte("x"), Seen: seen}}}
	for b.Loop() {
		s := crdt.NewSpace()
		if err := s.Apply(ch); err != nil {
			b.Fatal(err)
		}
	}
}
