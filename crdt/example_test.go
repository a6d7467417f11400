package crdt_test

import (
	"fmt"

	"fieldsync/crdt"
)

// Two officers edit the same field offline; after they exchange changes
// both see the conflict with both values, then one resolves it.
func Example_conflict() {
	var amina, ivan crdt.ReplicaID
	amina[0], ivan[0] = 1, 2
	a, b := crdt.NewSpace(), crdt.NewSpace()

	create := &crdt.Change{Author: amina, Seq: 1, HLC: crdt.Timestamp{Wall: 1000},
		Ops: []crdt.Op{crdt.NewPut("r1", "village", []byte("Halab"))}}
	a.Apply(create)
	b.Apply(create)

	// Offline: both overwrite the value they saw.
	ca := &crdt.Change{Author: amina, Seq: 2, HLC: crdt.Timestamp{Wall: 2000},
		Ops: []crdt.Op{a.Record("r1").Put("village", []byte("Aleppo"))}}
	cb := &crdt.Change{Author: ivan, Seq: 1, HLC: crdt.Timestamp{Wall: 3000},
		Ops: []crdt.Op{b.Record("r1").Put("village", []byte("حلب"))}}
	a.Apply(ca)
	b.Apply(cb)

	// They meet.
	a.Apply(cb)
	b.Apply(ca)
	for _, f := range a.Record("r1").Conflicts() {
		for i, s := range f.Siblings {
			fmt.Printf("%s #%d: %s (seq %d)\n", f.Name, i+1, s.Value, s.Dot.Seq)
		}
	}

	// Amina resolves exactly the two siblings she was shown.
	f, _ := a.Record("r1").Register("village")
	op, _ := a.Record("r1").Resolve("village", []crdt.Dot{f.Siblings[0].Dot, f.Siblings[1].Dot}, []byte("حلب"), "checked the map")
	res := &crdt.Change{Author: amina, Seq: 3, HLC: crdt.Timestamp{Wall: 4000}, Ops: []crdt.Op{op}}
	a.Apply(res)
	b.Apply(res)
	g, _ := b.Record("r1").Register("village")
	fmt.Printf("after resolve: %s, conflict %v\n", g.Value(), g.Conflict)
	// Output:
	// village #1: حلب (seq 1)
	// village #2: Aleppo (seq 2)
	// after resolve: حلب, conflict false
}
