package agent

import (
	"bytes"
	"fmt"
	"strings"
	"testing"

	"fieldsync/agent/api"
	"fieldsync/crdt"
	"fieldsync/crypto"
)

// putBuild is an opBuilder that sets field f of record id to v.
func putBuild(id crdt.RecordID, f, v string) opBuilder {
	return func(load func(crdt.RecordID) (*crdt.Record, error)) ([]crdt.Op, error) {
		r, err := load(id)
		if err != nil {
			return nil, err
		}
		if r == nil {
			r = crdt.NewRecord(id)
		}
		return []crdt.Op{r.Put(f, []byte(v))}, nil
	}
}

// combinedChange writes the given records (record → value of field "f") as
// one combined change on a, and returns its envelope.
func combinedChange(t *testing.T, a *Agent, space crypto.SpaceID, recs ...[2]string) []byte {
	t.Helper()
	a.stateMu.Lock()
	sp := a.spaces[space]
	a.stateMu.Unlock()
	builds := make([]opBuilder, len(recs))
	for i, r := range recs {
		builds[i] = putBuild(crdt.RecordID(r[0]), "f", r[1])
	}
	ch, _, errs, err := a.writeOpsMulti(sp, builds, nil)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range errs {
		if e != nil {
			t.Fatal(e)
		}
	}
	env, err := a.db.get(envKey(space, a.dev, ch.Seq))
	if err != nil {
		t.Fatal(err)
	}
	return env
}

// A combined write is sealed as one segment per record; with one segment
// erased, the change still verifies, keeps its ID, and applies to exactly
// the other records' states (same dots, same bytes) — on a second device
// too, which received the whole change.
func TestSegmentedChanges(t *testing.T) {
	omn := newTestBureau(t, "OMN")
	a := openTestAgent(t, newTestDevice(t, omn, "Amina", crypto.RoleOfficer))
	b := openTestAgent(t, newTestDevice(t, omn, "Boris", crypto.RoleOfficer))
	sp, err := a.CreateSpace("case", nil)
	if err != nil {
		t.Fatal(err)
	}
	space := mustSpaceID(t, sp.ID)
	env := combinedChange(t, a, space, [2]string{"a1", "alpha"}, [2]string{"secret", "CANARYseg"}, [2]string{"c1", "gamma"})
	h, err := crypto.ParseHeader(env)
	if err != nil || h.Version != crypto.HeaderVersion2 {
		t.Fatalf("combined change written as version %d (%v)", h.Version, err)
	}
	infos, err := crypto.Segments(env)
	if err != nil || len(infos) != 6 {
		t.Fatalf("%d segments (%v), want two per record", len(infos), err)
	}
	// A later write overwrites c1.f, naming the combined change's dot.
	if _, err := a.PutFields(api.RecordPutRequest{Space: sp.ID, Record: "c1", Fields: []api.FieldValue{{Name: "f", Value: "gamma2"}}}); err != nil {
		t.Fatal(err)
	}
	transfer(t, b, a)
	if _, err := a.ShareKeys(); err != nil {
		t.Fatal(err)
	}
	transfer(t, a, b)
	for _, who := range []*Agent{a, b} {
		for id, want := range map[string]string{"a1": "alpha", "secret": "CANARYseg", "c1": "gamma2"} {
			r, err := who.GetRecord(api.RecordRef{Space: sp.ID, Record: id})
			if err != nil || r.Fields["f"].Value != want || r.Fields["f"].Conflict {
				t.Fatalf("%s on %s: %+v %v", id, who.dev, r.Fields["f"], err)
			}
		}
	}
	oc, err := openChange(env, a.spaces[space])
	if err != nil || len(oc.segRecord) != 6 {
		t.Fatal(err)
	}
	var secret []int
	for i, r := range oc.segRecord {
		if r == "secret" {
			secret = append(secret, i)
		}
	}
	if len(secret) != 2 {
		t.Fatalf("record secret has segments %v, want its skeleton and its values", secret)
	}
	er, err := crypto.EraseSegments(env, secret...)
	if err != nil {
		t.Fatal(err)
	}
	if crypto.Hash(er) != crypto.Hash(env) {
		t.Fatal("erasure changed the ID")
	}
	whole, part := crdt.NewSpace(), crdt.NewSpace()
	oc2, err := openChange(er, a.spaces[space])
	if err != nil || oc2.erased != 2 || len(oc2.ch.Ops) != 2 || oc2.ch.OpIndex == nil {
		t.Fatalf("opened erased: %+v %v", oc2, err)
	}
	if err := whole.Apply(oc.ch); err != nil {
		t.Fatal(err)
	}
	if err := part.Apply(oc2.ch); err != nil {
		t.Fatal(err)
	}
	if part.Record("secret") != nil {
		t.Fatal("erased record applied")
	}
	for _, id := range []crdt.RecordID{"a1", "c1"} {
		x, _ := whole.Record(id).MarshalBinary()
		y, _ := part.Record(id).MarshalBinary()
		if !bytes.Equal(x, y) {
			t.Fatalf("record %s differs without the erased segment", id)
		}
	}
}

// Ops of several records interleaved in one request are grouped per record.
func TestGroupOpsByRecord(t *testing.T) {
	ops := []crdt.Op{crdt.NewPut("x", "1", nil), crdt.NewPut("y", "1", nil), crdt.NewPut("x", "2", nil), crdt.NewPut("z", "1", nil), crdt.NewPut("y", "2", nil)}
	got := groupOpsByRecord(ops)
	var s string
	for _, o := range got {
		s += fmt.Sprintf("%s%s ", o.Record, o.Field)
	}
	if s != "x1 x2 y1 y2 z1 " {
		t.Fatalf("grouped %q", s)
	}
}

// FuzzJoinSegments: no segment plaintexts make joining panic, and what
// joins is a valid change of the header's author and seq, whose withheld
// marks (values pruned or malformed) match its ops. Seeds cover both
// layouts: one segment per record (version 1) and skeleton + values pairs
// (version 2).
func FuzzJoinSegments(f *testing.F) {
	ch := &crdt.Change{Author: crdt.ReplicaID{1}, Seq: 3, HLC: crdt.Timestamp{Wall: 5}, Ops: []crdt.Op{
		crdt.NewPut("a", "x", []byte("1")), crdt.NewPut("a", "y", []byte("2")), crdt.NewPut("b", "x", []byte("3"))}}
	segs, err := changeSegments(ch)
	if err != nil {
		f.Fatal(err)
	}
	f.Add(segs[0], segs[1], segs[2], segs[3], false)
	f.Add(segs[0], segs[1], segs[2], segs[3], true)
	f.Add(segs[1], segs[0], segs[3], segs[2], true)
	f.Add(segs[0], segs[3], segs[2], segs[1], false)
	v1 := func(start int, ops []crdt.Op) []byte {
		part := crdt.Change{Author: ch.Author, Seq: ch.Seq, HLC: ch.HLC, Ops: ops}
		b, _ := part.AppendBinary([]byte{segmentVersion, 0, 0, 0, byte(start)})
		return b
	}
	f.Add(v1(0, ch.Ops[:2]), v1(2, ch.Ops[2:]), []byte(nil), []byte(nil), true)
	h := crypto.Header{Author: crypto.DeviceID{1}, Seq: 3, HLC: ch.HLC.Pack()}
	f.Fuzz(func(t *testing.T, s0, s1, s2, s3 []byte, erase bool) {
		in := []crypto.Segment{{Plain: s0}, {Plain: s1}, {Plain: s2}, {Plain: s3, Erased: erase}}
		if len(s2) == 0 && len(s3) == 0 {
			in = in[:2]
		}
		oc, err := joinSegments(h, in)
		if err != nil {
			return
		}
		if oc.ch.Author != ch.Author || oc.ch.Seq != 3 || oc.ch.Validate() != nil {
			t.Fatalf("joined an invalid change: %+v", oc.ch)
		}
		if oc.withheld != nil && len(oc.withheld) != len(oc.ch.Ops) {
			t.Fatalf("%d withheld marks for %d ops", len(oc.withheld), len(oc.ch.Ops))
		}
		for i, w := range oc.withheld {
			if w && len(oc.ch.Ops[i].Value) > 0 {
				t.Fatalf("op %d withheld with a value", i)
			}
		}
	})
}

// The version 2 layout joins back into the change as written; with a
// values segment cut, that record's ops keep their kinds, fields, set
// elements, seen dots and dots, and lose only their values (withheld).
func TestSegmentsSkeletonAndValues(t *testing.T) {
	r := crdt.NewRecord("a")
	ch := &crdt.Change{Author: crdt.ReplicaID{1}, Seq: 3, HLC: crdt.Timestamp{Wall: 5}, Ops: []crdt.Op{
		{Kind: crdt.OpPut, Record: "a", Field: "x", Value: []byte("secret"), Seen: []crdt.Dot{{Replica: crdt.ReplicaID{1}, Seq: 1}}},
		r.SetAdd("tags", []byte("elem")), r.AddNote("a note"),
		crdt.NewPut("b", "x", []byte("3"))}}
	segs, err := changeSegments(ch)
	if err != nil || len(segs) != 4 {
		t.Fatalf("%d segments, %v", len(segs), err)
	}
	if bytes.Contains(segs[0], []byte("secret")) || bytes.Contains(segs[0], []byte("a note")) || !bytes.Contains(segs[0], []byte("elem")) {
		t.Fatal("the skeleton holds a value, or lacks the set element")
	}
	h := crypto.Header{Author: crypto.DeviceID{1}, Seq: 3, HLC: ch.HLC.Pack()}
	in := make([]crypto.Segment, len(segs))
	for i, s := range segs {
		in[i] = crypto.Segment{Plain: s}
	}
	whole, err := joinSegments(h, in)
	if err != nil || whole.withheld != nil {
		t.Fatal(err)
	}
	w1, _ := whole.ch.MarshalBinary()
	w0, _ := ch.MarshalBinary()
	if !bytes.Equal(w0, w1) {
		t.Fatal("joined change differs from the change written")
	}
	in[1] = crypto.Segment{Erased: true}
	cut, err := joinSegments(h, in)
	if err != nil || cut.valuesCut != 1 || cut.ch.OpIndex != nil || len(cut.ch.Ops) != 4 {
		t.Fatalf("%+v %v", cut, err)
	}
	want := []bool{true, false, true, false}
	for i, o := range cut.ch.Ops {
		if cut.withheld[i] != want[i] || (want[i] && len(o.Value) != 0) || len(o.Seen) != len(ch.Ops[i].Seen) {
			t.Fatalf("op %d: %+v withheld %v", i, o, cut.withheld[i])
		}
	}
	if string(cut.ch.Ops[1].Value) != "elem" || cut.segRecord[1] != "a" {
		t.Fatal("set element or the values segment's record lost")
	}
	// A malformed values segment is treated as cut, never as a no-op.
	in[1] = crypto.Segment{Plain: append(bytes.Clone(segs[1]), 0)}
	bad, err := joinSegments(h, in)
	if err != nil || bad.valuesBad != 1 || !bad.withheld[0] {
		t.Fatalf("%+v %v", bad, err)
	}
}

// History gives each op its dot among all the ops of its change: in a
// combined change the second record's op is op 1, though it is the first
// (and only) op its record's history lists. The chaos checker took the
// position in the record's list for the dot, and reported a combined write
// as lost and as a phantom at once (seed 4).
func TestHistoryOpDotsInCombinedChange(t *testing.T) {
	omn := newTestBureau(t, "OMN")
	a := openTestAgent(t, newTestDevice(t, omn, "Amina", crypto.RoleOfficer))
	sp, err := a.CreateSpace("case", nil)
	if err != nil {
		t.Fatal(err)
	}
	id := mustSpaceID(t, sp.ID)
	combinedChange(t, a, id, [2]string{"first", "x"}, [2]string{"second", "y"})
	hist, err := a.History(api.RecordRef{Space: sp.ID, Record: "second"})
	if err != nil {
		t.Fatal(err)
	}
	rec, err := a.GetRecord(api.RecordRef{Space: sp.ID, Record: "second"})
	if err != nil {
		t.Fatal(err)
	}
	f := rec.Fields["f"]
	if len(hist) != 1 || len(hist[0].Ops) != 1 || len(f.Siblings) != 1 {
		t.Fatalf("history %+v, record %+v", hist, rec)
	}
	if got, want := hist[0].Ops[0].Dot, f.Siblings[0].Dot; got != want || !strings.HasSuffix(got, ".1") {
		t.Fatalf("history gives the second record's op dot %q, the record shows %q (want op 1 of the change)", got, want)
	}
}
