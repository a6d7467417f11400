package bundle

import (
	"testing"

	"fieldsync/crypto"
)

// Left-out envelopes of one author are listed as runs per reason, and an
// author is blocked after its first one (the rest would follow a gap).
func TestSkipListRuns(t *testing.T) {
	var sp crypto.SpaceID
	var a, b crypto.DeviceID
	b[0] = 1
	s := newSkipList()
	if s.isBlocked(sp, a) || len(s.list()) != 0 || s.list() == nil {
		t.Fatal("a new list is empty (and lists as [], not null) and blocks no one")
	}
	s.add(sp, a, 3, ReasonSignature, "bad")
	s.add(sp, a, 4, ReasonGap, "follows")
	s.add(sp, a, 5, ReasonGap, "follows")
	s.add(sp, b, 1, ReasonUnknown, "who")
	got := s.list()
	want := []struct {
		author   crypto.DeviceID
		from, to uint64
		reason   string
	}{{a, 3, 3, ReasonSignature}, {a, 4, 5, ReasonGap}, {b, 1, 1, ReasonUnknown}}
	if len(got) != len(want) {
		t.Fatalf("runs %+v, want %d", got, len(want))
	}
	for i, w := range want {
		if g := got[i]; g.Author != w.author.String() || g.From != w.from || g.To != w.to || g.Reason != w.reason {
			t.Errorf("run %d = %+v, want %+v", i, g, w)
		}
	}
	if !s.isBlocked(sp, a) || !s.isBlocked(sp, b) {
		t.Error("authors with a left-out envelope are blocked")
	}
}

// Past maxListedSkips runs the rest are counted, a continuing run once.
func TestSkipListOmits(t *testing.T) {
	var sp crypto.SpaceID
	s := newSkipList()
	for i := range maxListedSkips {
		var d crypto.DeviceID
		d[0], d[1] = byte(i>>8), byte(i)
		s.add(sp, d, 1, ReasonSignature, "")
	}
	var late crypto.DeviceID
	late[2] = 1
	for seq := uint64(1); seq <= 3; seq++ {
		s.add(sp, late, seq, ReasonGap, "")
	}
	s.add(sp, late, 10, ReasonGap, "")
	if len(s.list()) != maxListedSkips || s.omitted != 2 {
		t.Fatalf("listed %d, omitted %d; want %d and 2 (seqs 1-3 and 10)", len(s.list()), s.omitted, maxListedSkips)
	}
}

func TestNoteListOmits(t *testing.T) {
	var n noteList
	for range maxObjectNotes + 2 {
		n.add("x")
	}
	l := n.list()
	if len(l) != maxObjectNotes+1 || l[maxObjectNotes] != "… and 2 more objects left out" {
		t.Fatalf("notes end %q (%d)", l[len(l)-1], len(l))
	}
}
