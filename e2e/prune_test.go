package e2e

import (
	"fmt"
	"testing"

	"fieldsync/agent/api"
	"fieldsync/internal/harness"
)

// TestPruneReturningDevice (docs/design.md §7, "Bounded storage") with real
// agent processes that share no network, so that what each holds is exact:
// changes travel only as bundles. r holds r1=v1 and record d, then is away
// while a overwrites r1 twice and deletes d, and a and b prune (`compact
// --min-age 0s`); r, offline, writes over what it holds. When r returns,
// nothing overwritten or deleted elsewhere comes back, r's writes are the
// conflicts they are, all three show the same digests, and r's own pass
// prunes its whole copies without changing them.
func TestPruneReturningDevice(t *testing.T) {
	cl, ctx := newCluster(t)
	var nodes []*harness.Node
	for _, name := range []string{"a", "b", "r"} {
		n, err := cl.Add(ctx, name, "Officer "+name, false)
		if err != nil {
			t.Fatal(err)
		}
		isolated(t, ctx, cl, n)
		nodes = append(nodes, n)
	}
	a, b, r := nodes[0], nodes[1], nodes[2]
	step := 0
	carry := func(from, to *harness.Node) {
		step++
		carryFile(t, ctx, cl, from, to, fmt.Sprintf("%s-%s-%d", from.Name, to.Name, step))
	}
	cli := func(n *harness.Node, args ...string) {
		t.Helper()
		if _, err := cl.CLI(ctx, n.Dir, args...); err != nil {
			t.Fatalf("%s: %v: %v", n.Name, args, err)
		}
	}
	var sp api.Space
	if err := cl.CLIJSON(ctx, a.Dir, &sp, "space", "create", "case"); err != nil {
		t.Fatal(err)
	}
	cli(a, "record", "put", sp.ID, "r1", "f=v1")
	cli(a, "record", "put", sp.ID, "d", "f=deleted-canary")
	for range 2 { // certificates one way, key shares the other
		for _, n := range []*harness.Node{b, r} {
			carry(a, n)
			carry(n, a)
		}
	}
	carry(a, b)
	carry(a, r)
	get := func(n *harness.Node, id string) api.Record {
		t.Helper()
		var rec api.Record
		if err := cl.CLIJSON(ctx, n.Dir, &rec, "record", "get", sp.ID, id); err != nil {
			t.Fatalf("%s: record get %s: %v", n.Name, id, err)
		}
		return rec
	}
	if v := get(r, "r1").Fields["f"].Value; v != "v1" {
		t.Fatalf("r holds r1.f = %q before going away", v)
	}
	// r is away: a overwrites and deletes, a and b prune.
	cli(a, "record", "put", sp.ID, "r1", "f=v2")
	cli(a, "record", "put", sp.ID, "r1", "f=v3")
	cli(a, "record", "delete", sp.ID, "d")
	carry(a, b)
	for _, n := range []*harness.Node{a, b} {
		var c api.Compacted
		if err := cl.CLIJSON(ctx, n.Dir, &c, "compact", "--min-age", "0s", sp.ID); err != nil {
			t.Fatal(err)
		}
		if c.Spaces[0].Envelopes == 0 {
			t.Fatalf("%s pruned nothing: %+v", n.Name, c)
		}
		// What is cut is stored cold, so the bundles below are exported
		// from cold stores (docs/storage.md, "Cold envelopes").
		if c.Spaces[0].Frozen < c.Spaces[0].Envelopes {
			t.Fatalf("%s stored what it cut whole: %+v", n.Name, c)
		}
	}
	// r, offline, writes over what it holds.
	cli(r, "record", "put", sp.ID, "r1", "f=offline")
	cli(r, "record", "put", sp.ID, "d", "g=edit")
	// r returns.
	for range 2 {
		for _, p := range [][2]*harness.Node{{r, b}, {b, r}, {b, a}, {a, b}, {r, a}, {a, r}} {
			carry(p[0], p[1])
		}
	}
	var want api.Digest
	for i, n := range nodes {
		d := cliDigest(t, ctx, cl, n, sp.ID)
		if i == 0 {
			want = d
		} else if d.Digest != want.Digest || d.Envelopes != want.Envelopes {
			t.Fatalf("%s: %+v, a: %+v", n.Name, d, want)
		}
		f := get(n, "r1").Fields["f"]
		vals := map[string]bool{}
		for _, s := range f.Siblings {
			vals[s.Value] = true
		}
		if !f.Conflict || len(vals) != 2 || !vals["v3"] || !vals["offline"] {
			t.Fatalf("%s: r1.f = %+v, want the conflict v3 / offline and never v1", n.Name, f)
		}
		d2 := get(n, "d")
		if _, back := d2.Fields["f"]; back || !d2.Deleted || !d2.DeleteConflict || d2.Fields["g"].Value != "edit" {
			t.Fatalf("%s: d = %+v, want deleted in conflict with r's edit, f gone", n.Name, d2)
		}
	}
	var c api.Compacted
	if err := cl.CLIJSON(ctx, r.Dir, &c, "compact", "--min-age", "0s", sp.ID); err != nil {
		t.Fatal(err)
	}
	if c.Spaces[0].Envelopes == 0 {
		t.Fatalf("r pruned nothing of its whole copies: %+v", c)
	}
	if d := cliDigest(t, ctx, cl, r, sp.ID); d.Digest != want.Digest || d.Envelopes != want.Envelopes {
		t.Fatalf("r after its pass: %+v, want %+v", d, want)
	}
}
