package w1

import (
	"testing"

	"fieldsync/crdt"
)

// TestChangeLog checks the sender's log: refs name seqs first, first+1...
// (a ref does not store its seq), missing lists what the peer lacks (a
// suffix, shared, or scattered seqs, copied), trim drops the prefix the
// peer holds, and a seq out of turn is refused.
func TestChangeLog(t *testing.T) {
	a := &side{id: replica(0xa), space: crdt.NewSpace(), phys: startWall}
	b := &side{id: replica(0xb), space: crdt.NewSpace(), phys: startWall}
	var ops [1]crdt.Op
	seq, hlc := a.next()
	if err := a.commit(&crdt.Change{Author: a.id, Seq: seq, HLC: hlc, Ops: []crdt.Op{crdt.NewPut("r1", "f", []byte("0"))}}); err != nil {
		t.Fatal(err)
	}
	for i := 1; i < 10; i++ {
		if err := a.update("r1", "f", []byte{byte('a' + i)}, &ops); err != nil {
			t.Fatal(err)
		}
	}
	seqsOf := func(refs []logRef) []uint64 {
		var out []uint64
		for _, r := range refs {
			ch, err := crdt.UnmarshalChange(a.log.bytes(r))
			if err != nil {
				t.Fatal(err)
			}
			out = append(out, ch.Seq)
		}
		return out
	}
	same := func(got []uint64, want ...uint64) {
		t.Helper()
		if len(got) != len(want) {
			t.Fatalf("seqs %v, want %v", got, want)
		}
		for i := range got {
			if got[i] != want[i] {
				t.Fatalf("seqs %v, want %v", got, want)
			}
		}
	}
	same(seqsOf(missing(a, b)), 1, 2, 3, 4, 5, 6, 7, 8, 9, 10)
	// b holds 1..3 and 6: it lacks 4, 5 and 7..10.
	for _, seq := range []uint64{1, 2, 3, 6} {
		b.space.MarkSeen(crdt.Dot{Replica: a.id, Seq: seq})
	}
	same(seqsOf(missing(a, b)), 4, 5, 7, 8, 9, 10)
	a.trim(b)
	if a.log.first != 4 || len(a.log.refs) != 7 {
		t.Fatalf("after trim: first %d, %d refs; want 4, 7", a.log.first, len(a.log.refs))
	}
	same(seqsOf(missing(a, b)), 4, 5, 7, 8, 9, 10)
	same(seqsOf(a.log.refs), 4, 5, 6, 7, 8, 9, 10)
	if _, err := sync(a, b, Options{}); err != nil {
		t.Fatal(err)
	}
	a.trim(b)
	if len(a.log.refs) != 0 {
		t.Fatalf("%d refs left after the peer took everything", len(a.log.refs))
	}
	if err := a.update("r1", "f", []byte("k"), &ops); err != nil {
		t.Fatal(err)
	}
	if a.log.first != 11 || len(a.log.refs) != 1 {
		t.Fatalf("after a new change: first %d, %d refs; want 11, 1", a.log.first, len(a.log.refs))
	}
	ch := &crdt.Change{Author: a.id, Seq: 13, HLC: crdt.Timestamp{Wall: startWall + 100}, Ops: []crdt.Op{crdt.NewPut("r2", "f", []byte("x"))}}
	if err := a.log.append(ch); err == nil {
		t.Fatal("log took seq 13 after 11")
	}
}
