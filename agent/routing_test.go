package agent

import (
	"math/rand/v2"
	"slices"
	"testing"

	"fieldsync/crypto"
)

func rec(author string, seq uint64, released []string, sup ...routingRef) routingEntry {
	return routingEntry{Author: author, Seq: seq, Released: released, Supersedes: sup}
}

func ref(author string, seq uint64) routingRef { return routingRef{Author: author, Seq: seq} }

// TestEffectiveRelease checks the release-list rules of docs/crdt.md: a
// withdrawal wins over a concurrent release of the same bureau, concurrent
// releases of different bureaus both stand, a later record that saw both
// heads decides, and the owner is always in.
func TestEffectiveRelease(t *testing.T) {
	base := rec("d1", 1, []string{"A", "B"})
	cases := []struct {
		name string
		recs []routingEntry
		want []string
	}{
		{"creation only", []routingEntry{base}, []string{"A", "B"}},
		{"no records: owner alone", nil, []string{"A"}},
		{"withdraw B", []routingEntry{base, rec("d1", 5, []string{"A"}, ref("d1", 1))}, []string{"A"}},
		{"withdraw B concurrent with release C",
			[]routingEntry{base, rec("d1", 5, []string{"A"}, ref("d1", 1)), rec("d2", 3, []string{"A", "B", "C"}, ref("d1", 1))},
			[]string{"A", "C"}},
		{"concurrent releases of C and D",
			[]routingEntry{base, rec("d2", 3, []string{"A", "B", "C"}, ref("d1", 1)), rec("d3", 2, []string{"A", "B", "D"}, ref("d1", 1))},
			[]string{"A", "B", "C", "D"}},
		{"withdraw B concurrent with a re-release of B",
			[]routingEntry{base, rec("d1", 5, []string{"A"}, ref("d1", 1)), rec("d2", 3, []string{"A", "B"}, ref("d1", 1))},
			[]string{"A"}},
		{"a later record that saw both heads decides",
			[]routingEntry{base, rec("d1", 5, []string{"A"}, ref("d1", 1)), rec("d2", 3, []string{"A", "B", "C"}, ref("d1", 1)),
				rec("d3", 9, []string{"A", "B", "C"}, ref("d1", 5), ref("d2", 3))},
			[]string{"A", "B", "C"}},
		{"an author's later record replaces its earlier one without naming it",
			[]routingEntry{base, rec("d1", 7, []string{"A", "C"})},
			[]string{"A", "C"}},
		{"the owner cannot be withdrawn", []routingEntry{rec("d1", 1, []string{"B"})}, []string{"A", "B"}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			got := effectiveRelease("A", c.recs)
			if !slices.Equal(got, c.want) {
				t.Fatalf("effectiveRelease = %v, want %v", got, c.want)
			}
			// Arrival order must not matter.
			r := rand.New(rand.NewPCG(1, 2))
			for range 20 {
				perm := slices.Clone(c.recs)
				r.Shuffle(len(perm), func(i, j int) { perm[i], perm[j] = perm[j], perm[i] })
				if got := effectiveRelease("A", perm); !slices.Equal(got, c.want) {
					t.Fatalf("in order %v: %v, want %v", perm, got, c.want)
				}
			}
		})
	}
}

func TestRoutingHeads(t *testing.T) {
	d1, d2 := crypto.DeviceID{1}.String(), crypto.DeviceID{2}.String()
	recs := []routingEntry{rec(d1, 1, nil), rec(d1, 4, nil), rec(d2, 2, nil, ref(d1, 1))}
	heads := routingHeads(recs)
	if len(heads) != 2 || heads[0].Author.String() != d1 || heads[0].Seq != 4 || heads[1].Author.String() != d2 || heads[1].Seq != 2 {
		t.Fatalf("heads = %+v", heads)
	}
}
