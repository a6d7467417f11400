package crdt

import (
	"testing"
	"unsafe"
)

// TestLayoutSizes pins the compact layout (docs/crdt.md, "Memory layout"):
// a register sibling is 40 bytes and a record header 48, so a record with
// up to 8 registers and room for one more sibling is one 408-byte
// allocation (the allocator's 416-byte class).
func TestLayoutSizes(t *testing.T) {
	if n := unsafe.Sizeof(regEntry{}); n != 40 {
		t.Errorf("regEntry is %d bytes, want 40", n)
	}
	if n := unsafe.Sizeof(Record{}); n != 48 {
		t.Errorf("Record is %d bytes, want 48", n)
	}
	if n := unsafe.Sizeof(recordBlock9{}); n != 408 {
		t.Errorf("recordBlock9 is %d bytes, want 408", n)
	}
	if n := unsafe.Sizeof(recordBlock5{}); n != 248 {
		t.Errorf("recordBlock5 is %d bytes, want 248", n)
	}
}

// TestRegEntryRoundTrip checks that a sibling gives back the name, dot,
// HLC and value it was made with: nil stays nil, empty stays empty and not
// nil, and the bytes are the ones given, not a copy.
func TestRegEntryRoundTrip(t *testing.T) {
	var a ReplicaID
	a[0], a[15] = 1, 2
	d := Dot{Replica: a, Seq: 1<<40 + 3, Op: 1<<20 - 1}
	name := "given_name"
	buf := []byte("أمينة market #0042 and more")
	for _, v := range [][]byte{nil, {}, buf[:5], buf} {
		e := newRegEntry(makeKey(name, a), d, 77, v)
		if got := e.dotOf(); got != d || !e.is(d) {
			t.Fatalf("dot %v, want %v", got, d)
		}
		if e.is(Dot{Replica: a, Seq: d.Seq, Op: 0}) || e.is(Dot{Replica: ReplicaID{}, Seq: d.Seq, Op: d.Op}) {
			t.Fatal("is matches another dot")
		}
		if e.hlc != 77 || e.fieldName() != name {
			t.Fatalf("hlc %d name %q", e.hlc, e.fieldName())
		}
		got := e.value()
		if (got == nil) != (v == nil) || string(got) != string(v) {
			t.Fatalf("value %q (nil %v), want %q (nil %v)", got, got == nil, v, v == nil)
		}
		if len(v) > 0 && &got[0] != &v[0] {
			t.Fatal("value copied, want the bytes given")
		}
		if cap(got) != len(v) {
			t.Fatalf("value capacity %d, want %d (a caller's append must not reach beyond it)", cap(got), len(v))
		}
		o := newRegEntry(makeKey(name, ReplicaID{9}), Dot{Replica: ReplicaID{9}, Seq: 1}, 1, nil)
		if !e.sameName(&o) || e.key == o.key {
			t.Fatal("two authors of one register: want the same name, different keys")
		}
		o = newRegEntry(makeKey("village", a), d, 1, nil)
		if e.sameName(&o) {
			t.Fatal("two registers of one author: want different names")
		}
	}
}

// TestInterning checks that equal (name, author) pairs share one handle,
// whatever string or array they came from, and that the context's cache
// of handles never answers for another pair.
func TestInterning(t *testing.T) {
	n1 := string([]byte("village"))
	n2 := string([]byte("village"))
	var a, b ReplicaID
	a[3], b[3] = 9, 9
	if makeKey(n1, a) != makeKey(n2, b) {
		t.Fatal("equal pairs, different handles")
	}
	if makeKey(n1, a) == makeKey("district", a) {
		t.Fatal("different names, one handle")
	}
	b[4] = 1
	if makeKey(n1, a) == makeKey(n1, b) {
		t.Fatal("different replicas, one handle")
	}
	// More pairs than the cache holds, asked in a shuffled order, twice.
	var c Context
	names := []string{"a", "b", "c", "d", "e", "f", "g", "h", "i", "j", "k"}
	for round := 0; round < 2; round++ {
		for i := range 3 * len(names) {
			n := names[(i*7)%len(names)]
			r := a
			if i%3 == 0 {
				r = b
			}
			h := c.key(n, r)
			if h != makeKey(n, r) || h.Value().name != n || h.Value().rep != r {
				t.Fatalf("context key(%q, %v) = %+v", n, r, h.Value())
			}
		}
	}
}

// TestRecordExtra checks that sets, delete markers and notes live in the
// extra part only while the record has any: a record that had some and
// lost them all is laid out (and encoded) as one that never had any.
func TestRecordExtra(t *testing.T) {
	var a ReplicaID
	a[0] = 1
	s := NewSpace()
	seq := uint64(0)
	apply := func(ops ...Op) {
		t.Helper()
		seq++
		if err := s.Apply(&Change{Author: a, Seq: seq, HLC: Timestamp{Wall: int64(1000 + seq)}, Ops: ops}); err != nil {
			t.Fatal(err)
		}
	}
	apply(NewPut("r1", "f", []byte("v")))
	r := s.Record("r1")
	if r.x != nil {
		t.Fatal("a record with registers only has an extra part")
	}
	before, _ := r.MarshalBinary()
	apply(r.SetAdd("tags", []byte("t")))
	if r.x == nil || len(r.Sets()) != 1 {
		t.Fatal("set element not stored")
	}
	apply(r.SetRemove("tags", []byte("t")))
	if r.x != nil {
		t.Fatal("extra part kept after its last set element went")
	}
	apply(r.Delete())
	if del, _ := r.Deleted(); !del || r.x == nil {
		t.Fatal("delete marker not stored")
	}
	apply(r.Put("f", []byte("v")))
	if del, _ := r.Deleted(); del || r.x != nil {
		t.Fatal("extra part kept after the put that revived the record")
	}
	after, _ := r.MarshalBinary()
	if len(after) == 0 || len(before) == 0 {
		t.Fatal("empty encoding")
	}
	c := r.Clone()
	cb, _ := c.MarshalBinary()
	if string(cb) != string(after) || c.x != nil {
		t.Fatal("clone differs")
	}
}
