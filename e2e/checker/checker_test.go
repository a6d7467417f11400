package checker

import (
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"
)

// A small world: two officers and a relay, one record, writes to field f.
// Writes are (author, seq) with the dots they resolved; siblings are given
// explicitly so tests can break them.

type tw struct {
	author   string
	seq      uint64
	value    string
	resolves []string
	hlc      string // default: t0 + seq seconds
}

func (w tw) dot() string { return fmt.Sprintf("%s:%d.0", w.author, w.seq) }

var t0 = time.Date(2026, 1, 1, 10, 0, 0, 0, time.UTC)

func op(n int, node, value, outcome string, start, end int) Op {
	return Op{Client: "c" + node, Node: node, Op: n, Kind: "put", Record: "r1", Field: "f", Value: value,
		Start: t0.Add(time.Duration(start) * time.Second), End: t0.Add(time.Duration(end) * time.Second), Outcome: outcome}
}

func mustJSON(v any) []byte {
	b, err := json.Marshal(v)
	if err != nil {
		panic(err)
	}
	return b
}

func officer(name string, writes []tw, live []tw, digest string) Node {
	var hist []histEntry
	for _, w := range writes {
		hlc := w.hlc
		if hlc == "" {
			hlc = t0.Add(time.Duration(w.seq) * time.Second).Format("2006-01-02T15:04:05.000Z")
		}
		hist = append(hist, histEntry{Author: w.author, Seq: w.seq, HLC: hlc, Signature: "valid",
			Ops: []histOp{{Kind: "put", Record: "r1", Field: "f", Value: w.value, Resolves: w.resolves}}})
	}
	var sibs []sibling
	for _, w := range live {
		sibs = append(sibs, sibling{Value: w.value, Author: w.author, Dot: w.dot()})
	}
	rec := record{ID: "r1", Fields: map[string]field{}}
	var conflicts []map[string]any
	if len(sibs) > 0 {
		rec.Fields["f"] = field{Value: sibs[0].Value, Conflict: len(sibs) > 1, Siblings: sibs}
		if len(sibs) > 1 {
			conflicts = append(conflicts, map[string]any{"record": "r1", "field": "f", "siblings": sibs})
		}
	}
	if conflicts == nil {
		conflicts = []map[string]any{}
	}
	return Node{
		Name:      name,
		Digest:    mustJSON(map[string]any{"digest": digest, "envelopes": "E", "count": len(writes)}),
		Conflicts: mustJSON(conflicts),
		Records:   map[string][]byte{"r1": mustJSON(rec)},
		Histories: map[string][]byte{"r1": mustJSON(hist)},
	}
}

func withStatus(n Node, st string) Node {
	n.Status = []byte(st)
	return n
}

func relay() Node {
	return Node{Name: "relay", Relay: true, Digest: mustJSON(map[string]any{"digest": "", "envelopes": "E", "count": 3})}
}

// The base scenario: a wrote v1; b overwrote it with v2 (saw v1); a wrote v3
// concurrently with v2 (also saw v1): v2 and v3 are a conflict.
var (
	w1 = tw{"aaaa", 1, "v1", nil, ""}
	w2 = tw{"bbbb", 1, "v2", []string{"aaaa:1.0"}, ""}
	w3 = tw{"aaaa", 2, "v3", []string{"aaaa:1.0"}, ""}
)

func baseOps() []Op {
	return []Op{op(1, "a", "v1", OK, 0, 1), op(2, "b", "v2", OK, 2, 3), op(3, "a", "v3", OK, 2, 3)}
}

func kinds(r Result) string {
	var k []string
	for _, v := range r.Violations {
		k = append(k, v.Kind)
	}
	return strings.Join(k, ",")
}

func TestCheckValid(t *testing.T) {
	all := []tw{w1, w2, w3}
	ok := `{"rejected":{"unknown_author":1},"gaps":[],"forks":[],"missing":[],"corrupt_values":0}`
	r := Check(baseOps(), []Node{withStatus(officer("a", all, []tw{w3, w2}, "D"), ok), officer("b", all, []tw{w3, w2}, "D"), relay()})
	if !r.Valid() {
		t.Fatalf("violations: %v", r.Violations)
	}
	if r.Rejected["a: unknown_author"] != 1 {
		t.Fatalf("rejections not reported: %+v", r.Rejected)
	}
	if r.OpsOK != 3 || r.Fields != 1 || r.Siblings != 2 || r.Conflicted != 1 || r.Writes != 3 {
		t.Fatalf("counts: %+v", r)
	}
}

func TestCheckFindsViolations(t *testing.T) {
	all := []tw{w1, w2, w3}
	for _, tc := range []struct {
		name  string
		ops   []Op
		nodes []Node
		want  string
	}{
		{"lost update: a concurrent sibling vanished", baseOps(),
			[]Node{officer("a", all, []tw{w2}, "D"), officer("b", all, []tw{w2}, "D")}, "lost-update"},
		{"zombie: a replaced value is still visible", baseOps(),
			[]Node{officer("a", all, []tw{w3, w2, w1}, "D"), officer("b", all, []tw{w3, w2, w1}, "D")}, "zombie"},
		{"acknowledged write missing from history", append(baseOps(), op(4, "b", "v4", OK, 4, 5)),
			[]Node{officer("a", all, []tw{w3, w2}, "D"), officer("b", all, []tw{w3, w2}, "D")}, "lost-write"},
		{"a value no client wrote", baseOps(),
			[]Node{officer("a", append(all, tw{"bbbb", 2, "evil", []string{"bbbb:1.0"}, ""}), []tw{w3, {"bbbb", 2, "evil", nil, ""}}, "D"),
				officer("b", append(all, tw{"bbbb", 2, "evil", []string{"bbbb:1.0"}, ""}), []tw{w3, {"bbbb", 2, "evil", nil, ""}}, "D")}, "phantom"},
		{"a failed write was applied", []Op{op(1, "a", "v1", OK, 0, 1), op(2, "b", "v2", Failed, 2, 3), op(3, "a", "v3", OK, 2, 3)},
			[]Node{officer("a", all, []tw{w3, w2}, "D"), officer("b", all, []tw{w3, w2}, "D")}, "failed-applied"},
		{"an author's clock went back", baseOps(),
			[]Node{officer("a", []tw{{"aaaa", 1, "v1", nil, "2026-01-01T10:00:05.000Z+2"}, w2, {"aaaa", 2, "v3", []string{"aaaa:1.0"}, "2026-01-01T10:00:05.000Z+1"}}, []tw{w3, w2}, "D"),
				officer("b", all, []tw{w3, w2}, "D")}, "hlc"},
		{"resolves names no write", baseOps(),
			[]Node{officer("a", []tw{w1, w2, {"aaaa", 2, "v3", []string{"aaaa:1.0", "cccc:9.0"}, ""}}, []tw{w3, w2}, "D"),
				officer("b", all, []tw{w3, w2}, "D")}, "resolves"},
		{"an agent reports a fork", baseOps(),
			[]Node{officer("a", all, []tw{w3, w2}, "D"), withStatus(officer("b", all, []tw{w3, w2}, "D"), `{"forks":[{"space":"s","author":"aaaa","seq":2}],"rejected":{}}`)}, "fork"},
		{"digests differ", baseOps(),
			[]Node{officer("a", all, []tw{w3, w2}, "D"), officer("b", all, []tw{w3, w2}, "X")}, "diverged"},
		{"record get differs", baseOps(),
			[]Node{officer("a", all, []tw{w3, w2}, "D"), officer("b", all, []tw{w2, w3}, "D")}, "diverged"},
		{"a write did not see its agent's earlier acknowledged write",
			// v3 on a started after v1 was acknowledged on a, but resolves nothing.
			baseOps(),
			[]Node{officer("a", []tw{w1, w2, {"aaaa", 2, "v3", nil, ""}}, []tw{{"aaaa", 2, "v3", nil, ""}, w2}, "D"),
				officer("b", []tw{w1, w2, {"aaaa", 2, "v3", nil, ""}}, []tw{{"aaaa", 2, "v3", nil, ""}, w2}, "D")}, "stale-write"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := Check(tc.ops, tc.nodes)
			if !strings.Contains(kinds(r), tc.want) {
				t.Fatalf("want a %s violation, got [%s]: %v", tc.want, kinds(r), r.Violations)
			}
		})
	}
}

// An unknown op may or may not have happened; a failed op that did not
// happen is fine.
func TestCheckUnknownEitherWay(t *testing.T) {
	all := []tw{w1, w2, w3}
	ops := append(baseOps(), op(4, "b", "v4", Unknown, 4, 9), op(5, "b", "v5", Failed, 4, 5))
	r := Check(ops, []Node{officer("a", all, []tw{w3, w2}, "D"), officer("b", all, []tw{w3, w2}, "D")})
	if !r.Valid() {
		t.Fatalf("unknown op not applied: %v", r.Violations)
	}
	w4 := tw{"bbbb", 2, "v4", []string{"aaaa:2.0", "bbbb:1.0"}, ""}
	all = append(all, w4)
	r = Check(ops, []Node{officer("a", all, []tw{w4}, "D"), officer("b", all, []tw{w4}, "D")})
	if !r.Valid() || r.UnknownSeen != 1 {
		t.Fatalf("unknown op applied: %v %+v", r.Violations, r)
	}
}

func TestReadOps(t *testing.T) {
	in := `{"client":"c1","node":"a","op":1,"kind":"put","record":"r1","field":"f","value":"x","start":"2026-01-01T10:00:00Z","end":"2026-01-01T10:00:01Z","outcome":"ok"}

{"client":"c1","node":"a","op":2,"kind":"put","record":"r1","field":"f","value":"y","start":"2026-01-01T10:00:02Z","end":"2026-01-01T10:00:03Z","outcome":"unknown","error":"timeout"}
`
	ops, err := ReadOps(strings.NewReader(in))
	if err != nil || len(ops) != 2 || ops[1].Outcome != Unknown || ops[0].End.Sub(ops[0].Start) != time.Second {
		t.Fatalf("%v %+v", err, ops)
	}
	if _, err := ReadOps(strings.NewReader("{not json\n")); err == nil {
		t.Fatal("bad line accepted")
	}
}

// addSkew marks every entry and sibling by author as skewed, as a device
// whose clock is far behind that author's prints them.
func addSkew(n Node, author string) Node {
	mark := func(b []byte) []byte {
		var v any
		if json.Unmarshal(b, &v) != nil {
			return b
		}
		var walk func(any)
		walk = func(v any) {
			switch x := v.(type) {
			case map[string]any:
				if x["author"] == author {
					x["skewed"] = true
				}
				for _, e := range x {
					walk(e)
				}
			case []any:
				for _, e := range x {
					walk(e)
				}
			}
		}
		walk(v)
		return mustJSON(v)
	}
	for id := range n.Records {
		n.Records[id] = mark(n.Records[id])
		n.Histories[id] = mark(n.Histories[id])
	}
	n.Conflicts = mark(n.Conflicts)
	return n
}

// The skewed device does not flag itself: its view differs from its peers'
// only there (a note, not a divergence); peers that disagree on the flag
// diverge.
func TestCheckSkewFlags(t *testing.T) {
	all := []tw{w1, w2, w3}
	self := func(n Node, id string) Node { return withStatus(n, `{"device":{"id":"`+id+`"}}`) }
	a := self(officer("a", all, []tw{w3, w2}, "D"), "aaaa")
	b := self(addSkew(officer("b", all, []tw{w3, w2}, "D"), "aaaa"), "bbbb")
	c := self(addSkew(officer("c", all, []tw{w3, w2}, "D"), "aaaa"), "cccc")
	r := Check(baseOps(), []Node{a, b, c})
	if !r.Valid() || len(r.Notes) != 1 {
		t.Fatalf("self-view skew: violations %v, notes %v", r.Violations, r.Notes)
	}
	c = self(officer("c", all, []tw{w3, w2}, "D"), "cccc") // c does not flag aaaa, b does
	r = Check(baseOps(), []Node{a, b, c})
	if !strings.Contains(kinds(r), "diverged") {
		t.Fatalf("peers disagreeing on a skew flag: %v", r.Violations)
	}
}
