package find

import (
	"bufio"
	"fmt"
	"math/rand/v2"
	"os"
	"slices"
	"strings"
	"testing"
)

// variant is one spelling of testdata/names.tsv.
type variant struct {
	group, script, spelling string
}

func loadNames(t testing.TB) []variant {
	t.Helper()
	f, err := os.Open("testdata/names.tsv")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var out []variant
	sc := bufio.NewScanner(f)
	for line := 1; sc.Scan(); line++ {
		text := sc.Text()
		if text == "" || strings.HasPrefix(text, "#") {
			continue
		}
		cols := strings.Split(text, "\t")
		if len(cols) != 3 {
			t.Fatalf("names.tsv:%d: %d columns, want 3", line, len(cols))
		}
		out = append(out, variant{cols[0], cols[1], cols[2]})
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	return out
}

// syllableName makes a pronounceable made-up name, so the test index holds
// names that are no variant of any test name and may still sound like one.
func syllableName(r *rand.Rand) string {
	onsets := []string{"b", "d", "f", "g", "h", "k", "l", "m", "n", "p", "r", "s", "t", "v", "z", "sh", "ch", "kh", "tr", "br", "gr", "st"}
	vowels := []string{"a", "e", "i", "o", "u", "ou", "ai", "ei"}
	var b strings.Builder
	for range 2 + r.IntN(2) {
		b.WriteString(onsets[r.IntN(len(onsets))])
		b.WriteString(vowels[r.IntN(len(vowels))])
	}
	if r.IntN(2) == 0 {
		b.WriteString([]string{"n", "r", "l", "v", "d", "s", "m"}[r.IntN(7)])
	}
	s := b.String()
	return strings.ToUpper(s[:1]) + s[1:]
}

// TestQuality indexes every spelling of testdata/names.tsv beside 2,000
// made-up names, searches for each spelling, and measures
//
//	recall@10: of the other spellings of the same name, the share in the
//	           first 10 hits;
//	precision: of the first k hits, k the number of spellings of the name,
//	           the share that are spellings of the name.
//
// It fails below thresholds set a little under what the implementation
// reaches (docs/find.md has the figures) so that a change that loses
// quality shows.
func TestQuality(t *testing.T) {
	names := loadNames(t)
	groups := make(map[string]int)
	for _, v := range names {
		groups[v.group]++
	}
	if len(groups) < 200 {
		t.Fatalf("names.tsv has %d names, want at least 200", len(groups))
	}
	x := NewIndex()
	for i, v := range names {
		x.Add(fmt.Sprintf("v%04d", i), "name", v.spelling)
	}
	r := rand.New(rand.NewPCG(17, 17))
	for i := range 2000 {
		x.Add(fmt.Sprintf("d%04d", i), "name", syllableName(r))
	}

	type pair struct{ from, to string }
	found, want := make(map[pair]int), make(map[pair]int)
	var recallSum, precisionSum float64
	type miss struct {
		query  variant
		recall float64
	}
	var misses []miss
	for i, q := range names {
		self := fmt.Sprintf("v%04d", i)
		hits := x.Search(q.spelling, 10)
		inTop := make(map[string]bool)
		for _, h := range hits {
			inTop[h.DocID] = true
		}
		same, sameFound := 0, 0
		for j, v := range names {
			id := fmt.Sprintf("v%04d", j)
			if v.group != q.group || id == self {
				continue
			}
			same++
			p := pair{q.script, v.script}
			want[p]++
			if inTop[id] {
				sameFound++
				found[p]++
			}
		}
		recall := float64(sameFound) / float64(same)
		recallSum += recall
		if recall < 1 {
			misses = append(misses, miss{q, recall})
		}
		k := groups[q.group]
		relevant := 0
		for _, h := range hits[:min(k, len(hits))] {
			if h.DocID[0] == 'v' && names[atoi(h.DocID[1:])].group == q.group {
				relevant++
			}
		}
		precisionSum += float64(relevant) / float64(k)
	}
	recall := recallSum / float64(len(names))
	precision := precisionSum / float64(len(names))
	t.Logf("%d names, %d spellings, 2000 made-up names: recall@10 %.3f, precision@k %.3f",
		len(groups), len(names), recall, precision)
	pairs := make([]pair, 0, len(want))
	for p := range want {
		pairs = append(pairs, p)
	}
	slices.SortFunc(pairs, func(a, b pair) int { return strings.Compare(a.from+a.to, b.from+b.to) })
	for _, p := range pairs {
		t.Logf("  recall@10 %s → %s: %.3f (%d of %d)", p.from, p.to, float64(found[p])/float64(want[p]), found[p], want[p])
	}
	slices.SortStableFunc(misses, func(a, b miss) int { return cmpFloat(a.recall, b.recall) })
	for _, m := range misses[:min(len(misses), 25)] {
		t.Logf("  worst: %s %q (%s) recall %.2f", m.query.group, m.query.spelling, PhoneticKey(m.query.spelling), m.recall)
	}
	if recall < 0.92 {
		t.Errorf("recall@10 %.3f, want at least 0.92", recall)
	}
	if precision < 0.86 {
		t.Errorf("precision@k %.3f, want at least 0.86", precision)
	}
}

func atoi(s string) int {
	n := 0
	for _, c := range s {
		n = 10*n + int(c-'0')
	}
	return n
}

func cmpFloat(a, b float64) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}
