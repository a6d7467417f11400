package crdt_test

import (
	"bytes"
	"testing"

	"fieldsync/crdt"
)

// TestUTF8RoundTrip: Arabic, Cyrillic and mixed-direction values (with bidi
// marks and decomposed forms, which crdt must not normalise) survive every
// encoding byte-exactly.
func TestUTF8RoundTrip(t *testing.T) {
	values := []string{
		"أمينة بنت خالد",                       // Arabic
		"Иван Петрович Сидоров",                // Cyrillic
		"أمينة market حلب clinic #0042",        // mixed direction
		"\u202eevil\u202c and \u200fRLM\u200e", // bidi controls, kept as bytes
		"e\u0301 vs \u00e9; ﻻ ligature; ٠١٢٣",  // NFD vs NFC, Arabic digits
		"Ёжик в тумане — «кавычки» 𝄞 emoji 🙂",  // astral plane
	}
	var a crdt.ReplicaID
	a[0] = 9
	s := crdt.NewSpace()
	var ops []crdt.Op
	for i, v := range values {
		rec := crdt.RecordID("سجل-" + string(rune('a'+i)))
		ops = append(ops,
			crdt.NewPut(rec, "الاسم", []byte(v)),
			crdt.Op{Kind: crdt.OpSetAdd, Record: rec, Field: "псевдонимы", Value: []byte(v)},
			crdt.NoteAdd(rec, v))
	}
	ch := &crdt.Change{Author: a, Seq: 1, HLC: crdt.Timestamp{Wall: 42}, Ops: ops}
	b, err := ch.MarshalBinary()
	if err != nil {
		t.Fatal(err)
	}
	dec, err := crdt.UnmarshalChange(b)
	if err != nil {
		t.Fatal(err)
	}
	for i := range ops {
		if !bytes.Equal(dec.Ops[i].Value, ops[i].Value) || dec.Ops[i].Record != ops[i].Record || dec.Ops[i].Field != ops[i].Field {
			t.Fatalf("op %d changed in the change encoding", i)
		}
	}
	if err := s.Apply(dec); err != nil {
		t.Fatal(err)
	}
	sb, _ := s.MarshalBinary()
	s2, err := crdt.UnmarshalSpace(sb)
	if err != nil {
		t.Fatal(err)
	}
	batch, _ := crdt.EncodeChanges([]*crdt.Change{ch}, true)
	chs, err := crdt.DecodeChanges(batch)
	if err != nil {
		t.Fatal(err)
	}
	s3 := crdt.NewSpace()
	s3.Apply(chs[0])
	for _, sp := range []*crdt.Space{s, s2, s3} {
		for i, v := range values {
			rec := sp.Record(crdt.RecordID("سجل-" + string(rune('a'+i))))
			rb, _ := rec.MarshalBinary()
			rec, err := crdt.UnmarshalRecord(rb)
			if err != nil {
				t.Fatal(err)
			}
			f, ok := rec.Register("الاسم")
			if !ok || string(f.Value()) != v {
				t.Fatalf("register: %q, want %q", f.Value(), v)
			}
			if sets := rec.Sets(); len(sets) != 1 || sets[0].Name != "псевдонимы" || string(sets[0].Elements[0]) != v {
				t.Fatalf("set: %+v", sets)
			}
			if notes := rec.Notes(); len(notes) != 1 || notes[0].Text != v {
				t.Fatalf("note: %+v", notes)
			}
		}
	}
	// Invalid UTF-8 in identifiers and notes is refused.
	bad := &crdt.Change{Author: a, Seq: 2, Ops: []crdt.Op{crdt.NewPut("r\xff", "f", nil)}}
	if _, err := bad.MarshalBinary(); err == nil {
		t.Fatal("invalid UTF-8 record ID accepted")
	}
	if err := s.Apply(&crdt.Change{Author: a, Seq: 2, Ops: []crdt.Op{crdt.NoteAdd("r", "\xc3")}}); err == nil {
		t.Fatal("invalid UTF-8 note accepted")
	}
}
