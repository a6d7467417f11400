package crdt

import (
	"bytes"
	"testing"
)

// A put and a note applied without their values, then filled, give the
// record a whole application gives; a dead or filled dot is left alone.
func TestFillValue(t *testing.T) {
	r0 := NewRecord("r")
	whole := &Change{Author: rid(1), Seq: 1, HLC: Timestamp{Wall: 5}, Ops: []Op{r0.Put("f", []byte("v1")), r0.AddNote("a note")}}
	stub := *whole
	stub.Ops = append([]Op(nil), whole.Ops...)
	for i := range stub.Ops {
		stub.Ops[i].Value = nil
	}
	apply := func(ch *Change) *Record {
		t.Helper()
		got, err := ApplyChange(NewContext(), func(RecordID) (*Record, error) { return nil, nil }, ch)
		if err != nil {
			t.Fatal(err)
		}
		return got["r"]
	}
	want, have := apply(whole), apply(&stub)
	wb, _ := want.MarshalBinary()
	hb, _ := have.MarshalBinary()
	if bytes.Equal(wb, hb) {
		t.Fatal("the stub applied with its values: the test proves nothing")
	}
	put, note := whole.opDot(0), whole.opDot(1)
	if !have.FillValue(put, []byte("v1")) || !have.FillValue(note, []byte("a note")) {
		t.Fatal("FillValue changed nothing")
	}
	hb, _ = have.MarshalBinary()
	if !bytes.Equal(wb, hb) {
		t.Fatal("filled record differs from the whole application")
	}
	if have.FillValue(put, []byte("other")) {
		t.Fatal("FillValue replaced a held value")
	}
	if have.FillValue(Dot{Replica: rid(1), Seq: 9}, []byte("x")) {
		t.Fatal("FillValue gave a value to a dot the record does not hold")
	}
}
