package checker

import (
	"strings"
	"testing"
	"time"
)

// A record that sees every op kind, on two officers a (aaaa) and b (bbbb):
//
//	aaaa:1 put f=v1          bbbb:1 put f=v2 (concurrent: a conflict)
//	aaaa:2 resolve f --pick (v2), naming both
//	aaaa:3 set add s e1      bbbb:2 set remove s e1 (saw aaaa:3)
//	aaaa:4 set add s e1 (saw aaaa:3, concurrent with the remove: add wins)
//	bbbb:3 note add n1
//	aaaa:5 delete (saw aaaa:2 and aaaa:4, not the note: deleted with a conflict)

func he(author string, seq uint64, o histOp) histEntry {
	o.Record = "r1"
	return histEntry{Author: author, Seq: seq, HLC: t0.Add(time.Duration(seq) * time.Second).Format("2006-01-02T15:04:05.000Z"), Signature: "valid", Ops: []histOp{o}}
}

func kindsHistory(withDelete bool) []histEntry {
	h := []histEntry{
		he("aaaa", 1, histOp{Kind: "put", Field: "f", Value: "v1"}),
		he("bbbb", 1, histOp{Kind: "put", Field: "f", Value: "v2"}),
		he("aaaa", 2, histOp{Kind: "resolve", Field: "f", Value: "v2", Reason: "why1", Resolves: []string{"aaaa:1.0", "bbbb:1.0"}}),
		he("aaaa", 3, histOp{Kind: "set_add", Field: "s", Value: "e1"}),
		he("bbbb", 2, histOp{Kind: "set_remove", Field: "s", Value: "e1", Resolves: []string{"aaaa:3.0"}}),
		he("aaaa", 4, histOp{Kind: "set_add", Field: "s", Value: "e1", Resolves: []string{"aaaa:3.0"}}),
		he("bbbb", 3, histOp{Kind: "note_add", Value: "n1"}),
	}
	if withDelete {
		h = append(h, he("aaaa", 5, histOp{Kind: "delete", Resolves: []string{"aaaa:2.0", "aaaa:4.0"}}))
	}
	return h
}

func kindsOps(withDelete bool) []Op {
	at := func(n, start int) (time.Time, time.Time) {
		return t0.Add(time.Duration(start) * time.Second), t0.Add(time.Duration(start+1) * time.Second)
	}
	mk := func(n int, node, kind, field, value string, start int) Op {
		s, e := at(n, start)
		return Op{Client: "c" + node, Node: node, Op: n, Kind: kind, Record: "r1", Field: field, Value: value, Start: s, End: e, Outcome: OK}
	}
	ops := []Op{
		mk(1, "a", "put", "f", "v1", 0),
		mk(2, "b", "put", "f", "v2", 0),
		mk(3, "a", "resolve", "f", "", 2),
		mk(4, "a", "set_add", "s", "e1", 4),
		mk(5, "b", "set_remove", "s", "e1", 6),
		mk(6, "a", "set_add", "s", "e1", 6),
		mk(7, "b", "note_add", "", "n1", 8),
	}
	ops[2].Pick, ops[2].Reason = 1, "why1"
	if withDelete {
		ops = append(ops, mk(8, "a", "delete", "", "", 10))
	}
	return ops
}

func kindsRecord(withDelete bool) record {
	rec := record{ID: "r1", Fields: map[string]field{}, Sets: map[string]setField{}, Notes: []note{{ID: "bbbb:3.0", Author: "bbbb", Text: "n1"}}}
	if withDelete {
		rec.Deleted, rec.DeleteConflict = true, true
		return rec
	}
	rec.Fields["f"] = field{Value: "v2", Siblings: []sibling{{Value: "v2", Author: "aaaa", Dot: "aaaa:2.0"}}}
	rec.Sets["s"] = setField{Elements: []string{"e1"}}
	return rec
}

func kindsNode(name string, hist []histEntry, rec record, conflicts []map[string]any) Node {
	if conflicts == nil {
		conflicts = []map[string]any{}
	}
	dev := map[string]string{"a": "aaaa", "b": "bbbb"}[name]
	return Node{
		Name:      name,
		Digest:    mustJSON(map[string]any{"digest": "D", "envelopes": "E", "count": len(hist)}),
		Conflicts: mustJSON(conflicts),
		Records:   map[string][]byte{"r1": mustJSON(rec)},
		Histories: map[string][]byte{"r1": mustJSON(hist)},
		Status:    []byte(`{"device":{"id":"` + dev + `"},"rejected":{}}`),
	}
}

func kindsWorld(withDelete bool, edit func(h []histEntry, r *record) []histEntry) []Node {
	var out []Node
	for _, name := range []string{"a", "b"} {
		h, rec := kindsHistory(withDelete), kindsRecord(withDelete)
		if edit != nil {
			h = edit(h, &rec)
		}
		var conflicts []map[string]any
		if rec.DeleteConflict {
			conflicts = append(conflicts, map[string]any{"record": "r1", "field": "", "siblings": []any{}})
		}
		out = append(out, kindsNode(name, h, rec, conflicts))
	}
	return out
}

func TestCheckEveryKindValid(t *testing.T) {
	for _, del := range []bool{false, true} {
		r := Check(kindsOps(del), kindsWorld(del, nil))
		if !r.Valid() {
			t.Fatalf("delete %v: violations: %v", del, r.Violations)
		}
		if del && (r.Deleted != 1 || r.DeleteConflicts != 1 || r.NotesShown != 1) {
			t.Fatalf("counts: %+v", r)
		}
		if !del && r.SetElements != 1 {
			t.Fatalf("counts: %+v", r)
		}
	}
}

func TestCheckEveryKindFindsViolations(t *testing.T) {
	for _, tc := range []struct {
		name string
		del  bool
		ops  func([]Op) []Op
		edit func(h []histEntry, r *record) []histEntry
		want string
	}{
		{"add wins: an element added concurrently with its remove is missing", false, nil,
			func(h []histEntry, r *record) []histEntry { r.Sets = map[string]setField{}; return h }, "lost-update"},
		{"a set shows an element every add of which was removed", true, nil,
			func(h []histEntry, r *record) []histEntry {
				r.Sets = map[string]setField{"s": {Elements: []string{"e1"}}}
				return h
			}, "zombie"},
		{"a set shows an element no client added", false, nil,
			func(h []histEntry, r *record) []histEntry {
				r.Sets["s"] = setField{Elements: []string{"e1", "evil"}}
				return h
			}, "phantom"},
		{"a note vanished", true, nil,
			func(h []histEntry, r *record) []histEntry { r.Notes = nil; return h }, "lost-update"},
		{"a note shows removed though nothing saw it", true, nil,
			func(h []histEntry, r *record) []histEntry { r.Notes[0].Removed, r.Notes[0].Text = true, ""; return h }, "lost-update"},
		{"a live delete marker, yet not deleted", true, nil,
			func(h []histEntry, r *record) []histEntry { r.Deleted, r.DeleteConflict = false, false; return h }, "delete"},
		{"deleted with a surviving note, yet no conflict", true, nil,
			func(h []histEntry, r *record) []histEntry { r.DeleteConflict = false; return h }, "delete"},
		{"a resolve's value lost", false, nil,
			func(h []histEntry, r *record) []histEntry { r.Fields = map[string]field{}; return h }, "lost-update"},
		{"a resolve --pick gave a value nobody wrote", false, nil,
			func(h []histEntry, r *record) []histEntry {
				h[2].Ops[0].Value = "evil"
				r.Fields["f"] = field{Value: "evil", Siblings: []sibling{{Value: "evil", Author: "aaaa", Dot: "aaaa:2.0"}}}
				return h
			}, "phantom"},
		{"a resolve nobody sent", false, nil,
			func(h []histEntry, r *record) []histEntry { h[2].Ops[0].Reason = "other"; return h }, "phantom"},
		{"a set remove nobody sent", false, nil,
			func(h []histEntry, r *record) []histEntry {
				h[4].Author = "aaaa" // sent to b, in a's log
				h[4].Seq = 9
				return h
			}, "phantom"},
		{"an acknowledged delete is not in the history", true, nil,
			func(h []histEntry, r *record) []histEntry {
				*r = kindsRecord(false)
				return h[:len(h)-1]
			}, "lost-write"},
		{"an acknowledged set add is not in the history", false, nil,
			func(h []histEntry, r *record) []histEntry {
				h = append(h[:5], h[6:]...)
				r.Sets = map[string]setField{}
				return h
			}, "lost-write"},
		{"a set remove names an element it cannot have seen", false, nil,
			func(h []histEntry, r *record) []histEntry { h[4].Ops[0].Resolves = []string{"aaaa:1.0"}; return h }, "resolves"},
		{"a delete that did not see its agent's earlier acknowledged resolve", true, nil,
			func(h []histEntry, r *record) []histEntry {
				h[len(h)-1].Ops[0].Resolves = []string{"aaaa:4.0"}
				r.Fields["f"] = field{Value: "v2", Siblings: []sibling{{Value: "v2", Author: "aaaa", Dot: "aaaa:2.0"}}}
				return h
			}, "stale-write"},
		{"a failed note was applied", true,
			func(ops []Op) []Op { ops[6].Outcome = Failed; return ops }, nil, "failed-applied"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ops := kindsOps(tc.del)
			if tc.ops != nil {
				ops = tc.ops(ops)
			}
			r := Check(ops, kindsWorld(tc.del, tc.edit))
			if !strings.Contains(kinds(r), tc.want) {
				t.Fatalf("want a %s violation, got [%s]: %v", tc.want, kinds(r), r.Violations)
			}
		})
	}
}

// The hostile relay's checks: the exact gap, the accounting of alterations,
// replays that change nothing, an honest path.
func TestCheckHostile(t *testing.T) {
	st := func(dev string, rej map[string]int, gaps ...Gap) []byte {
		if gaps == nil {
			gaps = []Gap{}
		}
		return mustJSON(map[string]any{"device": map[string]string{"id": dev}, "rejected": rej, "gaps": gaps, "forks": []any{}})
	}
	dg := func(n int) []byte { return mustJSON(map[string]any{"digest": "D", "envelopes": "E", "count": n}) }
	t1 := t0.Add(time.Minute)
	gap := Gap{Space: "sp", Author: "aaaa", From: 5, To: 7}
	base := func() Hostile {
		return Hostile{
			Log: []TamperEvent{
				{Time: t0.Add(10 * time.Second), Kind: "replay"},
				{Time: t1.Add(time.Second), Kind: "flip"},
				{Time: t1.Add(2 * time.Second), Kind: "truncate"},
				{Time: t1.Add(3 * time.Second), Kind: "withhold"},
			},
			ReplayStart:  []Node{{Name: "a", Status: st("aaaa", map[string]int{"gap": 1}), Digest: dg(10)}, {Name: "b", Status: st("bbbb", nil), Digest: dg(10)}},
			ReplayEnd:    []Node{{Name: "a", Status: st("aaaa", map[string]int{"gap": 1}), Digest: dg(12)}, {Name: "b", Status: st("bbbb", nil), Digest: dg(12)}},
			ReplayWrites: 2, ReplayFrom: t0, ReplayTo: t0.Add(30 * time.Second),
			Gap:           gap,
			WithholdStart: []Node{{Name: "a", Status: st("aaaa", nil)}, {Name: "b", Status: st("bbbb", map[string]int{"signature": 1})}},
			WithholdSeen:  []Node{{Name: "a", Status: st("aaaa", nil)}, {Name: "b", Status: st("bbbb", map[string]int{"signature": 2, "malformed": 1}, gap)}},
			WithholdFrom:  t1, WithholdTo: t1.Add(30 * time.Second),
			HonestPath: true,
		}
	}
	final := []Node{{Name: "a", Status: st("aaaa", nil)}, {Name: "b", Status: st("bbbb", map[string]int{"signature": 2})}}
	var res Result
	hr := CheckHostile(&res, base(), final, nil)
	if !res.Valid() || hr.PhaseAltered != 2 || hr.PhaseRejected != 2 || hr.PhaseReplays != 1 || len(hr.GapSeenBy) != 1 {
		t.Fatalf("valid run: %v %+v", res.Violations, hr)
	}
	for _, tc := range []struct {
		name string
		edit func(h *Hostile, final []Node) []Node
		want string
	}{
		{"the gap is not the withheld range", func(h *Hostile, f []Node) []Node {
			h.WithholdSeen[1].Status = st("bbbb", map[string]int{"signature": 2, "malformed": 1}, Gap{Space: "sp", Author: "aaaa", From: 5, To: 8})
			return f
		}, "withheld-gap"},
		{"an alteration was not rejected", func(h *Hostile, f []Node) []Node {
			h.WithholdSeen[1].Status = st("bbbb", map[string]int{"signature": 2}, gap)
			return f
		}, "tamper"},
		{"more rejected as altered than altered", func(h *Hostile, f []Node) []Node {
			return []Node{{Name: "a", Status: st("aaaa", map[string]int{"mismatch": 3})}}
		}, "tamper"},
		{"a replay phase that added an envelope", func(h *Hostile, f []Node) []Node {
			h.ReplayEnd[0].Digest = dg(13)
			return f
		}, "replay"},
		{"a replay phase that rejected something", func(h *Hostile, f []Node) []Node {
			h.ReplayEnd[1].Status = st("bbbb", map[string]int{"fork": 1})
			return f
		}, "replay"},
		{"no convergence over the honest path", func(h *Hostile, f []Node) []Node {
			h.HonestPath = false
			return f
		}, "honest-path"},
		{"an altered value shows", func(h *Hostile, f []Node) []Node {
			h.WithholdSeen[1].Records = map[string][]byte{"h0": mustJSON(record{Fields: map[string]field{"g": {Siblings: []sibling{{Value: "ev\x01l"}}}}})}
			return f
		}, "phantom"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := base()
			f := tc.edit(&h, append([]Node(nil), final...))
			var res Result
			CheckHostile(&res, h, f, nil)
			if !strings.Contains(kinds(res), tc.want) {
				t.Fatalf("want a %s violation, got [%s]: %v", tc.want, kinds(res), res.Violations)
			}
		})
	}
}
