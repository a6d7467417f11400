package crdt

import (
	"testing"
	"unsafe"
)

// TestLayoutSizes pins the compact layout (docs/crdt.md, "Memory layout"):
// a register sibling and a record header are 48 bytes each, so a record
// with up to 8 registers and room for one more sibling is one 480-byte
// allocation.
func TestLayoutSizes(t *testing.T) {
	if n := unsafe.Sizeof(regEntry{}); n != 48 {
		t.Errorf("regEntry is %d bytes, want 48", n)
	}
	if n := unsafe.Sizeof(Record{}); n != 48 {
		t.Errorf("Record is %d bytes, want 48", n)
	}
	if n := unsafe.Sizeof(recordBlock9{}); n != 480 {
		t.Errorf("recordBlock9 is %d bytes, want 480", n)
	}
	if n := unsafe.Sizeof(recordBlock5{}); n != 288 {
		t.Errorf("recordBlock5 is %d bytes, want 288", n)
	}
}

// TestRegEntryRoundTrip checks that a sibling gives back the dot, HLC and
// value it was made with: nil stays nil, empty stays empty and not nil,
// and the bytes are shared, not copied.
func TestRegEntryRoundTrip(t *testing.T) {
	var a ReplicaID
	a[0], a[15] = 1, 2
	d := Dot{Replica: a, Seq: 1<<40 + 3, Op: 1<<20 - 1}
	name := "given_name"
	buf := []byte("أمينة market #0042 and more")
	for _, v := range [][]byte{nil, {}, buf[:5], buf} {
		e := newRegEntry(uniqueName(name), repHandle(a), d, 77, v)
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
			t.Fatal("value copied, want shared")
		}
		if cap(got) != len(v) {
			t.Fatalf("value capacity %d, want %d (a caller's append must not reach beyond it)", cap(got), len(v))
		}
	}
}

// TestInterning checks that equal names and replica IDs share one handle,
// whatever string or array they came from.
func TestInterning(t *testing.T) {
	n1 := string([]byte("village"))
	n2 := string([]byte("village"))
	if uniqueName(n1) != uniqueName(n2) {
		t.Fatal("equal names, different handles")
	}
	if uniqueName(n1) == uniqueName("district") {
		t.Fatal("different names, one handle")
	}
	var a, b ReplicaID
	a[3], b[3] = 9, 9
	if repHandle(a) != repHandle(b) || repHandle(a).Value() != b {
		t.Fatal("equal replicas, different handles")
	}
	b[4] = 1
	if repHandle(a) == repHandle(b) {
		t.Fatal("different replicas, one handle")
	}
	var c Context
	if c.handle(a) != repHandle(a) || c.handle(b) != repHandle(b) || c.handle(a) != repHandle(a) {
		t.Fatal("context's handle cache returned another replica's handle")
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
