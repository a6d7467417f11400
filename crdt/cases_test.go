package crdt

import (
	"bytes"
	"fmt"
	"slices"
	"testing"
)

// Worked examples of docs/crdt.md, each checked in both delivery orders.

type replica struct {
	id  ReplicaID
	s   *Space
	seq uint64
}

func newReplica(b byte) *replica { return &replica{id: rid(b), s: NewSpace()} }

func (r *replica) write(t *testing.T, wall int64, ops ...Op) *Change {
	t.Helper()
	r.seq++
	ch := &Change{Author: r.id, Seq: r.seq, HLC: Timestamp{Wall: wall}, Ops: ops}
	mustApply(t, r.s, ch)
	return ch
}

func (r *replica) rec(id RecordID) *Record { return r.s.Record(id) }

// both applies changes to fresh spaces in the given order and reversed and
// checks they agree; it returns the first.
func both(t *testing.T, chs ...*Change) *Space {
	t.Helper()
	a, b := NewSpace(), NewSpace()
	for i := range chs {
		mustApply(t, a, chs[i])
		mustApply(t, b, chs[len(chs)-1-i])
	}
	if !bytes.Equal(enc(t, a), enc(t, b)) {
		t.Fatal("delivery orders disagree")
	}
	return a
}

func TestCaseSequentialNoConflict(t *testing.T) {
	A, B := newReplica(1), newReplica(2)
	c1 := A.write(t, 1, NewPut("r", "village", []byte("Halab")))
	mustApply(t, B.s, c1)
	c2 := B.write(t, 2, B.rec("r").Put("village", []byte("Aleppo")))
	s := both(t, c1, c2)
	f, _ := s.Record("r").Register("village")
	if len(f.Siblings) != 1 || string(f.Value()) != "Aleppo" || f.Conflict {
		t.Fatalf("%+v", f)
	}
}

func TestCaseResolveRacesLateWrite(t *testing.T) {
	A, B, C, O := newReplica(1), newReplica(2), newReplica(3), newReplica(4)
	c0 := A.write(t, 1, NewPut("r", "village", []byte("Halab")))
	for _, r := range []*replica{B, C, O} {
		mustApply(t, r.s, c0)
	}
	ca := A.write(t, 5, A.rec("r").Put("village", []byte("Aleppo")))
	cb := B.write(t, 7, B.rec("r").Put("village", []byte("حلب")))
	cc := C.write(t, 6, C.rec("r").Put("village", []byte("Halab2")))
	mustApply(t, O.s, ca)
	mustApply(t, O.s, cb)
	cs := O.rec("r").Conflicts()
	if len(cs) != 1 || string(cs[0].Siblings[0].Value) != "حلب" {
		t.Fatalf("%+v", cs)
	}
	op, err := O.rec("r").Resolve("village", []Dot{cs[0].Siblings[0].Dot, cs[0].Siblings[1].Dot}, []byte("حلب"), "checked passport")
	if err != nil {
		t.Fatal(err)
	}
	cr := O.write(t, 8, op)
	s := both(t, c0, ca, cb, cr, cc)
	f, _ := s.Record("r").Register("village")
	if len(f.Siblings) != 2 || !f.Conflict || string(f.Siblings[0].Value) != "حلب" || string(f.Siblings[1].Value) != "Halab2" {
		t.Fatalf("%+v", f)
	}
	// Without the late write, the resolve settles it.
	s = both(t, c0, ca, cb, cr)
	if f, _ := s.Record("r").Register("village"); len(f.Siblings) != 1 {
		t.Fatalf("%+v", f)
	}
}

func TestCaseAddWins(t *testing.T) {
	A, B := newReplica(1), newReplica(2)
	c0 := A.write(t, 1, Op{Kind: OpSetAdd, Record: "r", Field: "aliases", Value: []byte("Abu Ali")})
	mustApply(t, B.s, c0)
	rm := A.write(t, 2, A.rec("r").SetRemove("aliases", []byte("Abu Ali")))
	add := B.write(t, 2, B.rec("r").SetAdd("aliases", []byte("Abu Ali")))
	s := both(t, c0, rm, add)
	if sets := s.Record("r").Sets(); len(sets) != 1 || string(sets[0].Elements[0]) != "Abu Ali" {
		t.Fatalf("%+v", sets)
	}
	s = both(t, c0, rm)
	if sets := s.Record("r").Sets(); len(sets) != 0 {
		t.Fatalf("%+v", sets)
	}
}

func TestCaseDeleteVsEdit(t *testing.T) {
	A, B := newReplica(1), newReplica(2)
	c0 := A.write(t, 1, NewPut("r7", "village", []byte("Halab")), NoteAdd("r7", "seen at the market"))
	mustApply(t, B.s, c0)
	del := A.write(t, 2, A.rec("r7").Delete())
	edit := B.write(t, 2, B.rec("r7").Put("phone", []byte("0944")))
	s := both(t, c0, del, edit)
	r := s.Record("r7")
	if d, c := r.Deleted(); !d || !c {
		t.Fatalf("deleted=%v conflict=%v", d, c)
	}
	if _, ok := r.Register("village"); ok {
		t.Fatal("the delete saw village: it must be gone")
	}
	if f, ok := r.Register("phone"); !ok || string(f.Value()) != "0944" {
		t.Fatal("the concurrent edit was lost")
	}
	if n := r.Notes(); len(n) != 1 || !n[0].Removed || n[0].Text != "" {
		t.Fatalf("notes %+v", n)
	}
	cs := r.Conflicts()
	if len(cs) != 1 || !cs[0].Delete || cs[0].Siblings[0].Dot != del.Dot() {
		t.Fatalf("conflicts %+v", cs)
	}
	// Settle by writing again: the Put sees the marker, revives.
	C := newReplica(3)
	for _, ch := range []*Change{c0, del, edit} {
		mustApply(t, C.s, ch)
	}
	rev := C.write(t, 4, C.rec("r7").Put("phone", []byte("0955")))
	s = both(t, c0, del, edit, rev)
	if d, _ := s.Record("r7").Deleted(); d {
		t.Fatal("a put that saw the delete must revive")
	}
	if regs := s.Record("r7").Registers(); len(regs) != 1 || string(regs[0].Value()) != "0955" {
		t.Fatalf("%+v", regs)
	}
	// Or settle by deleting again.
	del2 := C.write(t, 5, C.rec("r7").Delete())
	s = both(t, c0, del, edit, rev, del2)
	if d, c := s.Record("r7").Deleted(); !d || c {
		t.Fatalf("deleted=%v conflict=%v", d, c)
	}
}

func TestCaseDeleteVsOverwrite(t *testing.T) {
	A, B := newReplica(1), newReplica(2)
	c0 := A.write(t, 1, NewPut("r7", "village", []byte("Halab")))
	mustApply(t, B.s, c0)
	del := A.write(t, 2, A.rec("r7").Delete())
	ow := B.write(t, 2, B.rec("r7").Put("village", []byte("Aleppo")))
	s := both(t, c0, del, ow)
	r := s.Record("r7")
	if d, c := r.Deleted(); !d || !c {
		t.Fatalf("deleted=%v conflict=%v", d, c)
	}
	if f, _ := r.Register("village"); len(f.Siblings) != 1 || string(f.Value()) != "Aleppo" {
		t.Fatalf("%+v", f)
	}
}

func TestCaseTwoDeletes(t *testing.T) {
	A, B := newReplica(1), newReplica(2)
	c0 := A.write(t, 1, NewPut("r", "f", []byte("v")))
	mustApply(t, B.s, c0)
	d1 := A.write(t, 2, A.rec("r").Delete())
	d2 := B.write(t, 2, B.rec("r").Delete())
	s := both(t, c0, d1, d2)
	if d, c := s.Record("r").Deleted(); !d || c {
		t.Fatalf("deleted=%v conflict=%v", d, c)
	}
}

func TestCaseNoteRemovalBeforeNote(t *testing.T) {
	A, B := newReplica(1), newReplica(2)
	add := A.write(t, 1, NoteAdd("r", "first"), NoteAdd("r", "second"))
	mustApply(t, B.s, add)
	op, err := B.rec("r").NoteRemove(Dot{Replica: A.id, Seq: 1, Op: 0})
	if err != nil {
		t.Fatal(err)
	}
	rm := B.write(t, 2, op)
	s := both(t, add, rm)
	n := s.Record("r").Notes()
	if len(n) != 2 || !n[0].Removed || n[0].Text != "" || n[1].Removed || n[1].Text != "second" {
		t.Fatalf("%+v", n)
	}
}

func TestChangeRules(t *testing.T) {
	A := rid(1)
	bad := []*Change{
		{Seq: 1, Ops: []Op{NewPut("r", "f", nil)}},
		{Author: A, Ops: []Op{NewPut("r", "f", nil)}},
		{Author: A, Seq: 1, Ops: []Op{NewPut("r", "f", nil), NewPut("r", "f", nil)}},
		{Author: A, Seq: 1, Ops: []Op{NewPut("r", "f", nil), {Kind: OpDelete, Record: "r"}}},
		{Author: A, Seq: 2, Ops: []Op{{Kind: OpPut, Record: "r", Field: "f", Seen: []Dot{{Replica: A, Seq: 2}}}}},
		{Author: A, Seq: 2, Ops: []Op{{Kind: OpPut, Record: "r", Field: "f", Seen: []Dot{{Replica: A, Seq: 1, Op: 1}, {Replica: A, Seq: 1}}}}},
		{Author: A, Seq: 1, Ops: []Op{{Kind: OpPut, Record: "", Field: "f"}}},
		{Author: A, Seq: 1, Ops: []Op{{Kind: 99, Record: "r"}}},
		{Author: A, Seq: 1, Ops: []Op{{Kind: OpResolve, Record: "r", Field: "f"}}},
	}
	for i, ch := range bad {
		if err := NewSpace().Apply(ch); err == nil {
			t.Errorf("change %d accepted", i)
		}
	}
	ok := &Change{Author: A, Seq: 1, Ops: []Op{NewPut("r", "f", nil), NewPut("r", "g", nil),
		{Kind: OpSetAdd, Record: "r", Field: "f", Value: []byte("a")}, {Kind: OpSetAdd, Record: "r", Field: "f", Value: []byte("b")},
		{Kind: OpDelete, Record: "q"}}}
	if err := NewSpace().Apply(ok); err != nil {
		t.Fatal(err)
	}
}

func TestApplyChangeIdempotent(t *testing.T) {
	A := rid(1)
	ctx := NewContext()
	store := map[RecordID]*Record{}
	load := func(id RecordID) (*Record, error) { return store[id], nil }
	ch := &Change{Author: A, Seq: 1, Ops: []Op{NewPut("r", "f", []byte("v")), NoteAdd("q", "n")}}
	out, err := ApplyChange(ctx, load, ch)
	if err != nil || len(out) != 2 {
		t.Fatalf("%v %v", out, err)
	}
	for id, r := range out {
		store[id] = r
	}
	out, err = ApplyChange(ctx, load, ch)
	if err != nil || len(out) != 0 {
		t.Fatalf("duplicate: %v %v", out, err)
	}
}

// TestDisplayOrder asserts both directions: the higher HLC wins whatever
// the replica; on equal HLCs the higher replica bytes win.
func TestDisplayOrder(t *testing.T) {
	lo, hi := rid(1), rid(2)
	for _, tc := range []struct {
		hlcLo, hlcHi int64
		want         ReplicaID
	}{{10, 20, hi}, {20, 10, lo}, {15, 15, hi}} {
		for _, order := range [][2]int{{0, 1}, {1, 0}} {
			chs := []*Change{
				{Author: lo, Seq: 1, HLC: Timestamp{Wall: tc.hlcLo}, Ops: []Op{NewPut("r", "f", []byte("lo"))}},
				{Author: hi, Seq: 1, HLC: Timestamp{Wall: tc.hlcHi}, Ops: []Op{NewPut("r", "f", []byte("hi"))}},
			}
			s := NewSpace()
			mustApply(t, s, chs[order[0]])
			mustApply(t, s, chs[order[1]])
			f, _ := s.Record("r").Register("f")
			if f.Siblings[0].Dot.Replica != tc.want || f.Siblings[1].Dot.Replica == tc.want {
				t.Errorf("hlc lo=%d hi=%d: winner %v", tc.hlcLo, tc.hlcHi, f.Siblings[0].Dot.Replica[0])
			}
		}
	}
}

func TestZeroValues(t *testing.T) {
	var s Space
	mustApply(t, &s, &Change{Author: rid(1), Seq: 1, Ops: []Op{NewPut("r", "f", []byte("v"))}})
	var s2 Space
	s2.MarkSeen(Dot{Replica: rid(2), Seq: 1})
	m := Merge(&s, &s2)
	if !m.Context.Contains(Dot{Replica: rid(2), Seq: 1}) || m.Record("r") == nil {
		t.Fatal("merge of zero-value spaces")
	}
	var c Context
	c.Add(Dot{Replica: rid(1), Seq: 2})
	if c.Contains(Dot{Replica: rid(1), Seq: 1}) || !c.Contains(Dot{Replica: rid(1), Seq: 2}) {
		t.Fatal("zero context")
	}
	if _, err := (&Space{}).MarshalBinary(); err != nil {
		t.Fatal(err)
	}
}

func TestChangeRulesLarge(t *testing.T) {
	A := rid(1)
	var ops []Op
	for i := 0; i < 40; i++ {
		ops = append(ops, NewPut(RecordID(fmt.Sprintf("r%d", i%5)), fmt.Sprintf("f%d", i), nil))
	}
	if err := NewSpace().Apply(&Change{Author: A, Seq: 1, Ops: ops}); err != nil {
		t.Fatal(err)
	}
	dup := append(slices.Clone(ops), NewPut("r3", "f3", nil))
	if err := NewSpace().Apply(&Change{Author: A, Seq: 1, Ops: dup}); err == nil {
		t.Fatal("duplicate field in a large change accepted")
	}
	del := append(slices.Clone(ops), Op{Kind: OpDelete, Record: "r2"})
	if err := NewSpace().Apply(&Change{Author: A, Seq: 1, Ops: del}); err == nil {
		t.Fatal("delete with other ops on its record accepted")
	}
	sets := append(slices.Clone(ops), Op{Kind: OpSetAdd, Record: "r2", Field: "s", Value: []byte("a")},
		Op{Kind: OpSetRemove, Record: "r2", Field: "s", Value: []byte("a")})
	if err := NewSpace().Apply(&Change{Author: A, Seq: 1, Ops: sets}); err == nil {
		t.Fatal("add and remove of one element in one change accepted")
	}
}

func TestCaseConcurrentResolves(t *testing.T) {
	A, B, C := newReplica(1), newReplica(2), newReplica(3)
	x := A.write(t, 1, NewPut("r", "f", []byte("X")))
	y := C.write(t, 2, NewPut("r", "f", []byte("Y")))
	for _, ch := range []*Change{x, y} {
		mustApply(t, A.s, ch)
		mustApply(t, B.s, ch)
	}
	dots := []Dot{x.Dot(), y.Dot()}
	opA, err := A.rec("r").Resolve("f", dots, []byte("X"), "a")
	if err != nil {
		t.Fatal(err)
	}
	opB, err := B.rec("r").Resolve("f", dots, []byte("Y'"), "b")
	if err != nil {
		t.Fatal(err)
	}
	ra := A.write(t, 3, opA)
	rb := B.write(t, 3, opB)
	s := both(t, x, y, ra, rb)
	f, _ := s.Record("r").Register("f")
	if len(f.Siblings) != 2 || f.Siblings[0].Dot != rb.Dot() && f.Siblings[1].Dot != rb.Dot() {
		t.Fatalf("%+v", f)
	}
	for _, sib := range f.Siblings {
		if sib.Dot == x.Dot() || sib.Dot == y.Dot() {
			t.Fatalf("a resolved sibling survived: %+v", f)
		}
	}
}
