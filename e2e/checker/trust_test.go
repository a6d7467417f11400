package checker

import (
	"encoding/json"
	"fmt"
	"strings"
	"testing"
)

// The trust world: officers a, b (OMN, the owner), k (KAZ) and the revoked
// OMN laptop x (dead at the end), a relay; space S, released to KAZ or not.

func trustNode(n Node, id, bureau string, release ...string) Node {
	n.Status = []byte(fmt.Sprintf(`{"device":{"id":%q,"bureau":%q},"gaps":[],"forks":[],"missing":[],"corrupt_values":0}`, id, bureau))
	var d map[string]any
	json.Unmarshal(n.Digest, &d)
	d["space"] = "S"
	n.Digest = mustJSON(d)
	n.Spaces = mustJSON([]spaceRow{{ID: "S", Owner: "OMN", Release: append([]string{"OMN"}, release...)}})
	return n
}

func dead(name, id, bureau string) Node {
	return Node{Name: name, Dead: true, Status: []byte(fmt.Sprintf(`{"device":{"id":%q,"bureau":%q}}`, id, bureau))}
}

func revokeOp(n int, node, target string, cutoff uint64, start, end int) Op {
	o := op(n, node, "", OK, start, end)
	o.Kind, o.Record, o.Field, o.Target = "revoke", "", "", target
	o.Revoke = mustJSON(map[string]any{"device": "xxxx", "cutoffs": map[string]uint64{"S": cutoff}, "default_cutoff": 0})
	return o
}

func trustOp(n int, kind, node, bureau, outcome string, start, end int) Op {
	o := op(n, node, "", outcome, start, end)
	o.Kind, o.Record, o.Field, o.Bureau = kind, "", "", bureau
	return o
}

func withDot(o Op, dot string) Op { o.Dot = dot; return o }

// The revoked laptop x wrote v1 (seq 1, kept by the cut-off) and v9 (seq 2,
// past it, cut everywhere); a's v2 saw both before the revocation arrived.
var (
	x1 = tw{"xxxx", 1, "v1", nil, ""}
	a2 = tw{"aaaa", 1, "v2", []string{"xxxx:1.0", "xxxx:2.0"}, ""}
)

func revokedOps() []Op {
	return []Op{withDot(op(1, "x", "v1", OK, 0, 1), "xxxx:1.0"), withDot(op(2, "x", "v9", OK, 2, 3), "xxxx:2.0"),
		op(3, "a", "v2", OK, 4, 5), revokeOp(4, "b", "x", 1, 6, 7)}
}

func revokedWorld(hist, live []tw) []Node {
	return []Node{trustNode(officer("a", hist, live, "D"), "aaaa", "OMN", "KAZ"), trustNode(officer("b", hist, live, "D"), "bbbb", "OMN", "KAZ"),
		dead("x", "xxxx", "OMN"), trustNode(relay(), "rrrr", "OMN")}
}

func TestCheckRevocation(t *testing.T) {
	r := Check(revokedOps(), revokedWorld([]tw{x1, a2}, []tw{a2}))
	if !r.Valid() {
		t.Fatalf("violations: %v", r.Violations)
	}
	if r.Trust == nil || r.Trust.Revoked != "x" || r.Trust.Cutoff != 1 || r.Trust.PastCutoff != 1 {
		t.Fatalf("trust account: %+v", r.Trust)
	}
	// A write of x without a dot: acknowledged before v9 started, after v1
	// was acknowledged: neither proven, so it may or may not survive.
	ops := append(revokedOps(), Op{Client: "cx", Node: "x", Op: 5, Kind: "delete", Record: "r1", Start: t0.Add(1500e6), End: t0.Add(1800e6), Outcome: OK})
	if r := Check(ops, revokedWorld([]tw{x1, a2}, []tw{a2})); !r.Valid() || r.Trust.Undecided != 1 {
		t.Fatalf("undecided write: %v %+v", r.Violations, r.Trust)
	}
	for _, tc := range []struct {
		name       string
		ops        []Op
		hist, live []tw
		want       string
	}{
		{"a write past the cut-off is visible", revokedOps(),
			[]tw{x1, {"aaaa", 1, "v2", []string{"xxxx:1.0"}, ""}, {"xxxx", 2, "v9", nil, ""}}, []tw{{"aaaa", 1, "v2", nil, ""}, {"xxxx", 2, "v9", nil, ""}}, "revoked-visible"},
		{"a write at the cut-off was lost", revokedOps(),
			[]tw{{"aaaa", 1, "v2", []string{"xxxx:2.0"}, ""}}, []tw{{"aaaa", 1, "v2", nil, ""}}, "lost-write"},
		{"a dot-less write acknowledged before v1 started is lost",
			append(revokedOps(), Op{Client: "cx", Node: "x", Op: 5, Kind: "set_add", Record: "r1", Field: "s", Value: "e1", Start: t0.Add(-2e9), End: t0.Add(-1e9), Outcome: OK}),
			[]tw{x1, a2}, []tw{a2}, "lost-write"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := Check(tc.ops, revokedWorld(tc.hist, tc.live))
			if !strings.Contains(kinds(r), tc.want) {
				t.Fatalf("want %s, got %v", tc.want, r.Violations)
			}
		})
	}
}

// KAZ withdrawn at the end by a's op 2 (returned at 3 s): a's v5 (after it)
// must not be readable on k; k's own v7 may be stranded; k keeps v1.
func withdrawnWorld(kLive []tw) []Node {
	v1 := tw{"aaaa", 1, "v1", nil, ""}
	v5 := tw{"aaaa", 2, "v5", []string{"aaaa:1.0"}, ""}
	k := officer("k", []tw{v1, {"kkkk", 1, "v7", nil, ""}}, kLive, "K")
	return []Node{trustNode(officer("a", []tw{v1, v5}, []tw{v5}, "D"), "aaaa", "OMN"), trustNode(officer("b", []tw{v1, v5}, []tw{v5}, "D"), "bbbb", "OMN"),
		trustNode(k, "kkkk", "KAZ"), trustNode(relay(), "rrrr", "OMN")}
}

func withdrawnOps(extra ...Op) []Op {
	return append([]Op{op(1, "a", "v1", OK, 0, 1), trustOp(2, "withdraw", "a", "KAZ", OK, 2, 3), op(3, "a", "v5", OK, 4, 5), op(4, "k", "v7", OK, 4, 5)}, extra...)
}

func TestCheckWithdrawal(t *testing.T) {
	r := Check(withdrawnOps(), withdrawnWorld([]tw{{"aaaa", 1, "v1", nil, ""}}))
	if !r.Valid() {
		t.Fatalf("violations: %v", r.Violations)
	}
	if r.Trust.Protected != 1 || r.Trust.Stranded != 1 || len(r.Trust.WithdrawnChecked) != 1 || strings.Join(r.Trust.Release, ",") != "OMN" {
		t.Fatalf("trust account: %+v", r.Trust)
	}
	// k lost its own acknowledged write.
	r = Check(withdrawnOps(op(5, "k", "v8", OK, 6, 7)), withdrawnWorld([]tw{{"aaaa", 1, "v1", nil, ""}}))
	if !strings.Contains(kinds(r), "withdrawn-lost") {
		t.Fatalf("want withdrawn-lost, got %v", r.Violations)
	}
	// k reads a value written after the withdrawal returned.
	r = Check(withdrawnOps(), withdrawnWorld([]tw{{"aaaa", 2, "v5", nil, ""}}))
	if !strings.Contains(kinds(r), "withdrawn-visible") {
		t.Fatalf("want withdrawn-visible, got %v", r.Violations)
	}
	// A release sent after the withdrawal (lost to it, a concurrent
	// withdrawal wins) may have wrapped the keys to k: not checked.
	r = Check(withdrawnOps(trustOp(5, "release", "b", "KAZ", Unknown, 4, 9)), withdrawnWorld([]tw{{"aaaa", 2, "v5", nil, ""}}))
	if !r.Valid() {
		t.Fatalf("violations: %v", r.Violations)
	}
	// The owning bureau's officers disagree on the release list.
	nodes := withdrawnWorld([]tw{{"aaaa", 1, "v1", nil, ""}})
	nodes[1].Spaces = mustJSON([]spaceRow{{ID: "S", Owner: "OMN", Release: []string{"OMN", "KAZ"}}})
	if r := Check(withdrawnOps(), nodes); !strings.Contains(kinds(r), "diverged") {
		t.Fatalf("want diverged, got %v", r.Violations)
	}
}

func TestCheckBundleReport(t *testing.T) {
	b := trustOp(5, "bundle", "a", "", OK, 6, 7)
	b.Target = "b"
	b.Import = mustJSON(map[string]int{"envelopes": 3, "added": 2, "already_held": 1, "skipped": 0})
	r := Check(withdrawnOps(b), withdrawnWorld([]tw{{"aaaa", 1, "v1", nil, ""}}))
	if !r.Valid() || r.Trust.Bundles != 1 || r.Trust.BundleAdded != 2 {
		t.Fatalf("%v %+v", r.Violations, r.Trust)
	}
	b.Import = mustJSON(map[string]int{"envelopes": 3, "added": 3, "already_held": 1, "skipped": 0})
	if r := Check(withdrawnOps(b), withdrawnWorld([]tw{{"aaaa", 1, "v1", nil, ""}})); !strings.Contains(kinds(r), "bundle") {
		t.Fatalf("want bundle, got %v", r.Violations)
	}
}

// a's v3 saw only x's v9 (which had replaced a's v1); the revocation removed
// v9, so v1 is live again and v3 need not reach it: not a stale write.
func TestCheckRevokedReplacedWrite(t *testing.T) {
	v1 := tw{"aaaa", 1, "v1", nil, ""}
	v3 := tw{"aaaa", 2, "v3", []string{"xxxx:2.0"}, ""}
	ops := []Op{op(1, "a", "v1", OK, 0, 1), withDot(op(2, "x", "v9", OK, 2, 3), "xxxx:2.0"), op(3, "a", "v3", OK, 4, 5), revokeOp(4, "b", "x", 1, 6, 7)}
	nodes := revokedWorld([]tw{v1, v3}, []tw{v1, v3})
	if r := Check(ops, nodes); !r.Valid() {
		t.Fatalf("violations: %v", r.Violations)
	}
	// Without the revocation, the same history is a stale write.
	if r := Check(ops[:3], revokedWorld([]tw{v1, v3}, []tw{v1, v3})); !strings.Contains(kinds(r), "stale-write") {
		t.Fatalf("want stale-write, got %v", r.Violations)
	}
}
