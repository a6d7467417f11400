package rules_test

import (
	"fmt"
	"math/rand/v2"
	"slices"
	"testing"

	"fieldsync/internal/rules"
)

func rec(author string, seq uint64, released []string, sup ...rules.Ref) rules.Routing {
	return rules.Routing{Author: author, Seq: seq, Released: released, Supersedes: sup}
}

func ref(author string, seq uint64) rules.Ref { return rules.Ref{Author: author, Seq: seq} }

// shuffled returns recs in a random order, some of them more than once:
// the same set of records as far as the rules are concerned.
func shuffled(r *rand.Rand, recs []rules.Routing) []rules.Routing {
	out := slices.Clone(recs)
	for range r.IntN(3) {
		if len(recs) > 0 {
			out = append(out, recs[r.IntN(len(recs))])
		}
	}
	r.Shuffle(len(out), func(i, j int) { out[i], out[j] = out[j], out[i] })
	return out
}

// TestReleaseListCases: the worked cases of docs/crdt.md "Release lists",
// each in 20 orders with duplicates.
func TestReleaseListCases(t *testing.T) {
	base := rec("d1", 1, []string{"A", "B"})
	withdrawB := rec("d1", 5, []string{"A"}, ref("d1", 1))
	cases := []struct {
		name string
		recs []rules.Routing
		want []string
	}{
		{"creation only", []rules.Routing{base}, []string{"A", "B"}},
		{"no records: owner alone", nil, []string{"A"}},
		{"withdraw B", []rules.Routing{base, withdrawB}, []string{"A"}},
		{"withdraw B concurrent with release C",
			[]rules.Routing{base, withdrawB, rec("d2", 3, []string{"A", "B", "C"}, ref("d1", 1))},
			[]string{"A", "C"}},
		{"concurrent releases of C and D",
			[]rules.Routing{base, rec("d2", 3, []string{"A", "B", "C"}, ref("d1", 1)), rec("d3", 2, []string{"A", "B", "D"}, ref("d1", 1))},
			[]string{"A", "B", "C", "D"}},
		{"withdraw B concurrent with a re-release of B",
			[]rules.Routing{base, withdrawB, rec("d2", 3, []string{"A", "B"}, ref("d1", 1))},
			[]string{"A"}},
		{"a later record that saw both heads decides",
			[]rules.Routing{base, withdrawB, rec("d2", 3, []string{"A", "B", "C"}, ref("d1", 1)),
				rec("d3", 9, []string{"A", "B", "C"}, ref("d1", 5), ref("d2", 3))},
			[]string{"A", "B", "C"}},
		{"B released again by one who saw the withdrawal",
			[]rules.Routing{base, withdrawB, rec("d2", 3, []string{"A", "B"}, ref("d1", 5))},
			[]string{"A", "B"}},
		{"an author's later record replaces its earlier one without naming it",
			[]rules.Routing{base, rec("d1", 7, []string{"A", "C"})},
			[]string{"A", "C"}},
		{"the owner cannot be withdrawn", []rules.Routing{rec("d1", 1, []string{"B"})}, []string{"A", "B"}},
		{"a record naming itself is still a head", []rules.Routing{base, rec("d2", 2, []string{"A"}, ref("d2", 2), ref("d1", 1))}, []string{"A"}},
		{"two records naming each other: no head, the owner alone",
			[]rules.Routing{rec("d1", 1, []string{"A", "B"}, ref("d2", 1)), rec("d2", 1, []string{"A", "C"}, ref("d1", 1))},
			[]string{"A"}},
	}
	r := rand.New(rand.NewPCG(1, 2))
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			if got := rules.ReleaseList("A", c.recs); !slices.Equal(got, c.want) {
				t.Fatalf("ReleaseList = %v, want %v", got, c.want)
			}
			for range 20 {
				perm := shuffled(r, c.recs)
				if got := rules.ReleaseList("A", perm); !slices.Equal(got, c.want) {
					t.Fatalf("in order %v: %v, want %v", perm, got, c.want)
				}
			}
		})
	}
}

func TestRoutingHeads(t *testing.T) {
	recs := []rules.Routing{rec("d2", 2, nil, ref("d1", 1)), rec("d1", 4, nil), rec("d1", 1, nil), rec("d3", 1, nil, ref("d3", 1))}
	want := []rules.Ref{ref("d1", 4), ref("d2", 2), ref("d3", 1)}
	r := rand.New(rand.NewPCG(3, 4))
	for range 20 {
		if got := rules.RoutingHeads(shuffled(r, recs)); !slices.Equal(got, want) {
			t.Fatalf("heads = %v, want %v", got, want)
		}
	}
}

var bureaus = []string{"A", "B", "C", "D", "E"}

func randomList(r *rand.Rand) []string {
	var out []string
	for _, b := range bureaus {
		if r.IntN(2) == 0 {
			out = append(out, b)
		}
	}
	return out
}

// history writes a random routing history as devices would: each record
// states a list and supersedes the heads its author knew, where an author
// knows a random subset of what was written (so records are concurrent).
// With hostile set, some records also name themselves, records never
// written, or records written later (cycles).
func history(r *rand.Rand, n int, hostile bool) []rules.Routing {
	authors := []string{"d1", "d2", "d3", "d4"}
	seqs := map[string]uint64{}
	var recs []rules.Routing
	for range n {
		a := authors[r.IntN(len(authors))]
		seqs[a] += uint64(1 + r.IntN(2))
		var known []rules.Routing
		for _, o := range recs {
			if o.Author == a || r.IntN(3) > 0 {
				known = append(known, o)
			}
		}
		e := rec(a, seqs[a], randomList(r), rules.RoutingHeads(known)...)
		if hostile {
			for range r.IntN(3) {
				switch r.IntN(3) {
				case 0:
					e.Supersedes = append(e.Supersedes, ref(a, seqs[a]))
				case 1:
					e.Supersedes = append(e.Supersedes, ref("ghost", uint64(r.IntN(5))))
				default: // maybe a record written later
					e.Supersedes = append(e.Supersedes, ref(authors[r.IntN(len(authors))], uint64(1+r.IntN(8))))
				}
			}
		}
		recs = append(recs, e)
	}
	return recs
}

// oracle is the release-list rule written the naive way: the transitive
// closure of "replaces" by fixpoint, over the set of records by their
// place in the log, and every bureau checked against every head.
func oracle(owner string, recs []rules.Routing) []string {
	set := map[rules.Ref]rules.Routing{}
	for _, e := range recs {
		set[rules.Ref{Author: e.Author, Seq: e.Seq}] = e
	}
	direct := func(x, y rules.Ref) bool { // x replaces y directly
		if x == y {
			return false
		}
		if x.Author == y.Author && y.Seq < x.Seq {
			return true
		}
		return slices.Contains(set[x].Supersedes, y)
	}
	reach := map[[2]rules.Ref]bool{}
	for x := range set {
		for y := range set {
			reach[[2]rules.Ref{x, y}] = direct(x, y)
		}
	}
	for changed := true; changed; {
		changed = false
		for x := range set {
			for y := range set {
				for z := range set {
					if !reach[[2]rules.Ref{x, z}] && reach[[2]rules.Ref{x, y}] && reach[[2]rules.Ref{y, z}] {
						reach[[2]rules.Ref{x, z}], changed = true, true
					}
				}
			}
		}
	}
	var heads []rules.Ref
	for y := range set {
		head := true
		for x := range set {
			head = head && !direct(x, y)
		}
		if head {
			heads = append(heads, y)
		}
	}
	withdrew := func(h rules.Ref, b string) bool {
		if slices.Contains(set[h].Released, b) {
			return false
		}
		for y := range set {
			if reach[[2]rules.Ref{h, y}] && slices.Contains(set[y].Released, b) {
				return true
			}
		}
		return false
	}
	out := []string{owner}
	for _, b := range bureaus {
		in := false
		for _, h := range heads {
			in = in || slices.Contains(set[h].Released, b)
		}
		for _, h := range heads {
			in = in && !withdrew(h, b)
		}
		if in && b != owner {
			out = append(out, b)
		}
	}
	slices.Sort(out)
	return out
}

// TestReleaseListProperty: over random histories (honest and hostile),
// the release list equals the naive oracle, is the same for every order
// and duplication of the records, always holds the owner, and a record
// that supersedes every head decides alone.
func TestReleaseListProperty(t *testing.T) {
	r := rand.New(rand.NewPCG(13, 3))
	var withdrawn, concurrent, headless int
	for trial := range 400 {
		hostile := trial%2 == 1
		recs := history(r, 1+r.IntN(8), hostile)
		want := rules.ReleaseList("A", recs)
		heads := rules.RoutingHeads(recs)
		switch {
		case len(heads) == 0:
			headless++
		case len(heads) > 1:
			concurrent++
		}
		for _, e := range recs {
			if slices.Contains(heads, ref(e.Author, e.Seq)) && slices.ContainsFunc(e.Released, func(b string) bool { return !slices.Contains(want, b) }) {
				withdrawn++ // a head's bureau left out: another head withdrew it
				break
			}
		}
		if o := oracle("A", recs); !slices.Equal(want, o) {
			t.Fatalf("trial %d: ReleaseList = %v, oracle %v\n%+v", trial, want, o, recs)
		}
		if !slices.Contains(want, "A") {
			t.Fatalf("trial %d: owner missing from %v", trial, want)
		}
		for range 10 {
			perm := shuffled(r, recs)
			if got := rules.ReleaseList("A", perm); !slices.Equal(got, want) {
				t.Fatalf("trial %d: order changes the list: %v vs %v\n%+v", trial, got, want, perm)
			}
			if got := rules.RoutingHeads(perm); !slices.Equal(got, heads) {
				t.Fatalf("trial %d: order changes the heads: %v vs %v", trial, got, heads)
			}
		}
		// A device that saw every head decides the list alone.
		final := rec("d9", 1, randomList(r), heads...)
		got := rules.ReleaseList("A", append(slices.Clone(recs), final))
		wantFinal := slices.Compact(slices.Sorted(slices.Values(append(slices.Clone(final.Released), "A"))))
		if !slices.Equal(got, wantFinal) {
			t.Fatalf("trial %d: after a record superseding every head: %v, want its list %v", trial, got, wantFinal)
		}
	}
	t.Logf("histories with concurrent heads: %d, with a head's release withdrawn by another: %d, without heads (hostile cycles): %d", concurrent, withdrawn, headless)
	if concurrent == 0 || withdrawn == 0 || headless == 0 {
		t.Errorf("the generator failed to produce every kind of history")
	}
}

// TestWithdrawalBeatsConcurrentRelease: from any base list, a withdrawal
// of a bureau concurrent with any number of records that keep or release
// it again (not having seen the withdrawal) leaves it out; what only the
// concurrent records add stands unless another head withdrew it.
func TestWithdrawalBeatsConcurrentRelease(t *testing.T) {
	r := rand.New(rand.NewPCG(7, 11))
	for trial := range 300 {
		base := rec("d1", 1, append(randomList(r), "B"))
		withdrawal := rec("d2", 1, slices.DeleteFunc(randomList(r), func(b string) bool { return b == "B" }), ref("d1", 1))
		recs := []rules.Routing{base, withdrawal}
		for i := range 1 + r.IntN(3) {
			recs = append(recs, rec(fmt.Sprintf("d%d", 3+i), 1, append(randomList(r), "B"), ref("d1", 1)))
		}
		for range 5 {
			got := rules.ReleaseList("A", shuffled(r, recs))
			if slices.Contains(got, "B") {
				t.Fatalf("trial %d: B released though a concurrent head withdrew it: %v\n%+v", trial, got, recs)
			}
			for _, b := range withdrawal.Released {
				if !slices.Contains(got, b) && withdrawnBySomeHead(recs, b) == "" {
					t.Fatalf("trial %d: %s kept by the withdrawal and withdrawn by no head, yet missing: %v", trial, b, got)
				}
			}
		}
	}
}

// withdrawnBySomeHead names a record of the star-shaped history (a base
// and heads that each supersede it) that leaves b out although the base
// released it.
func withdrawnBySomeHead(recs []rules.Routing, b string) string {
	if !slices.Contains(recs[0].Released, b) {
		return ""
	}
	for _, h := range recs[1:] {
		if !slices.Contains(h.Released, b) {
			return h.Author
		}
	}
	return ""
}
