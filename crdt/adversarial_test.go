package crdt_test

import (
	"bytes"
	"fmt"
	"testing"

	"fieldsync/crdt"

	"pgregory.net/rapid"
)

// genWildChange draws a valid change whose seen dots are arbitrary: they may
// name dots of other records, of other kinds, of notes, of changes never
// written, or of changes that arrive later. A faulty or hostile author can
// send such changes; convergence, and the agreement of apply and merge,
// must still hold.
func genWildChange(t *rapid.T, author crdt.ReplicaID, seq uint64, reps []crdt.ReplicaID) *crdt.Change {
	records := []crdt.RecordID{"a", "b"}
	n := rapid.IntRange(1, 3).Draw(t, "nops")
	var ops []crdt.Op
	used := map[string]bool{}
	for i := 0; i < n; i++ {
		rec := records[rapid.IntRange(0, 1).Draw(t, "rec")]
		kind := crdt.OpKind(rapid.IntRange(1, 7).Draw(t, "kind"))
		o := crdt.Op{Kind: kind, Record: rec}
		switch kind {
		case crdt.OpPut, crdt.OpResolve, crdt.OpSetAdd, crdt.OpSetRemove:
			o.Field = []string{"f", "g"}[rapid.IntRange(0, 1).Draw(t, "field")]
			o.Value = []byte{byte(rapid.IntRange(0, 2).Draw(t, "v"))}
		case crdt.OpNoteAdd:
			o.Value = []byte(fmt.Sprintf("n%d", i))
		}
		var seen []crdt.Dot
		for k := rapid.IntRange(0, 3).Draw(t, "nseen"); k > 0; k-- {
			d := crdt.Dot{Replica: reps[rapid.IntRange(0, len(reps)-1).Draw(t, "sr")],
				Seq: uint64(rapid.IntRange(1, 4).Draw(t, "ss")), Op: uint32(rapid.IntRange(0, 2).Draw(t, "so"))}
			if d.Replica == author && d.Seq >= seq {
				continue
			}
			seen = append(seen, d)
		}
		o.Seen = sortedUnique(seen)
		if (kind == crdt.OpResolve || kind == crdt.OpNoteRemove) && len(o.Seen) == 0 {
			continue
		}
		var key string
		switch kind {
		case crdt.OpPut, crdt.OpResolve:
			key = fmt.Sprint(rec, "/reg/", o.Field)
		case crdt.OpSetAdd, crdt.OpSetRemove:
			key = fmt.Sprint(rec, "/set/", o.Field, "/", o.Value)
		default:
			key = fmt.Sprint(i)
		}
		if used[key] || used["del"+string(rec)] || kind == crdt.OpDelete && used["any"+string(rec)] {
			continue
		}
		used[key], used["any"+string(rec)] = true, true
		if kind == crdt.OpDelete {
			used["del"+string(rec)] = true
		}
		ops = append(ops, o)
	}
	return &crdt.Change{Author: author, Seq: seq, HLC: crdt.Timestamp{Wall: int64(seq)}, Ops: ops}
}

func sortedUnique(d []crdt.Dot) []crdt.Dot {
	out := []crdt.Dot{}
	for _, x := range d {
		i := 0
		for i < len(out) && out[i].Compare(x) < 0 {
			i++
		}
		if i < len(out) && out[i] == x {
			continue
		}
		out = append(out[:i], append([]crdt.Dot{x}, out[i:]...)...)
	}
	if len(out) == 0 {
		return nil
	}
	return out
}

// TestAdversarialSeen: arbitrary (valid) changes, applied as random subsets
// in random orders: equal sets give equal bytes, and merging equals
// applying the union.
func TestAdversarialSeen(t *testing.T) {
	rapid.Check(t, func(rt *rapid.T) {
		reps := []crdt.ReplicaID{{1}, {2}, {3}}
		var all []*crdt.Change
		for _, r := range reps {
			for seq := uint64(1); seq <= 4; seq++ {
				if ch := genWildChange(rt, r, seq, reps); len(ch.Ops) > 0 {
					all = append(all, ch)
				}
			}
		}
		apply := func(chs []*crdt.Change) *crdt.Space {
			s := crdt.NewSpace()
			for _, c := range chs {
				if err := s.Apply(c); err != nil {
					rt.Fatal(err)
				}
			}
			return s
		}
		pick := func(label string) []*crdt.Change {
			var sub []*crdt.Change
			for _, c := range all {
				if rapid.Bool().Draw(rt, label) {
					sub = append(sub, c)
				}
			}
			return sub
		}
		x, y := pick("x"), pick("y")
		sx := apply(rapid.Permutation(x).Draw(rt, "ox"))
		sy := apply(rapid.Permutation(y).Draw(rt, "oy"))
		union := append(append([]*crdt.Change{}, x...), y...)
		want := encode(rt, apply(rapid.Permutation(union).Draw(rt, "ou")))
		if !bytes.Equal(encode(rt, crdt.Merge(sx, sy)), want) {
			rt.Fatal("merge disagrees with applying the union")
		}
		if !bytes.Equal(encode(rt, apply(rapid.Permutation(union).Draw(rt, "ou2"))), want) {
			rt.Fatal("two delivery orders disagree")
		}
		// The agent's path, record by record, agrees too.
		ctx := crdt.NewContext()
		store := map[crdt.RecordID][]byte{}
		for _, c := range rapid.Permutation(union).Draw(rt, "ou3") {
			out, err := crdt.ApplyChange(ctx, func(id crdt.RecordID) (*crdt.Record, error) {
				if b, ok := store[id]; ok {
					return crdt.UnmarshalRecord(b)
				}
				return nil, nil
			}, c)
			if err != nil {
				rt.Fatal(err)
			}
			for id, r := range out {
				store[id], _ = r.MarshalBinary()
			}
		}
		s := &crdt.Space{Context: ctx, Records: map[crdt.RecordID]*crdt.Record{}}
		for id, b := range store {
			s.Records[id], _ = crdt.UnmarshalRecord(b)
		}
		if !bytes.Equal(encode(rt, s), want) {
			rt.Fatal("ApplyChange path disagrees")
		}
	})
}
