package find

import (
	"fmt"
	"slices"
	"strings"
	"testing"

	"fieldsync/internal/deptest"
)

func ids(hits []Hit) []string {
	out := make([]string, len(hits))
	for i, h := range hits {
		out[i] = h.DocID
	}
	return out
}

func TestSearchAcrossScripts(t *testing.T) {
	x := NewIndex()
	spellings := []string{"محمد", "Mohammed", "Muhammad", "Mohamad", "Мухаммед"}
	for i, s := range spellings {
		x.Add(fmt.Sprintf("m%d", i), "name", s)
	}
	x.Add("a", "name", "Ahmed")
	x.Add("h", "name", "Hamid")
	for _, q := range spellings {
		got := ids(x.Search(q, 5))
		slices.Sort(got)
		if want := []string{"m0", "m1", "m2", "m3", "m4"}; !slices.Equal(got, want) {
			t.Errorf("Search(%q) = %v, want %v", q, got, want)
		}
	}
}

func TestSearchRanking(t *testing.T) {
	x := NewIndex()
	x.Add("exact", "name", "Mohammed")
	x.Add("exact-longer", "name", "Mohammed Salem")
	x.Add("samekey-near", "name", "Mohamed")
	x.Add("samekey-far", "name", "Мухаммед")
	x.Add("other-same-key", "name", "Mahmoud") // another name with the key mhmd
	x.Add("other", "name", "Svetlana")
	got := x.Search("Mohammed", 10)
	// Tiers: exact normalised match, then the same key (closer Latin
	// spelling first); within a tier the shorter field (more of it
	// matched) first.
	order := ids(got)
	pos := func(id string) int { return slices.Index(order, id) }
	if pos("exact") != 0 || pos("exact-longer") != 1 {
		t.Errorf("exact matches not first: %v", order)
	}
	if !(pos("samekey-near") > 1 && pos("samekey-near") < pos("samekey-far") && pos("samekey-far") < pos("other-same-key")) {
		t.Errorf("same-key hits out of order (closer spelling first): %v", order)
	}
	if pos("other") >= 0 {
		t.Errorf("Svetlana matched Mohammed: %v", order)
	}
	for i := 1; i < len(got); i++ {
		if got[i].Score > got[i-1].Score {
			t.Errorf("scores not descending: %v", got)
		}
	}
}

func TestSearchTiesByDocID(t *testing.T) {
	x := NewIndex()
	for _, id := range []string{"c", "a", "b"} {
		x.Add(id, "name", "Youssef")
	}
	if got := ids(x.Search("Youssef", 10)); !slices.Equal(got, []string{"a", "b", "c"}) {
		t.Errorf("equal scores not by document ID: %v", got)
	}
	if got := ids(x.Search("Youssef", 2)); !slices.Equal(got, []string{"a", "b"}) {
		t.Errorf("limit 2: %v", got)
	}
}

func TestSearchCompoundsAndParticles(t *testing.T) {
	x := NewIndex()
	x.Add("aziz1", "name", "Abdulaziz")
	x.Add("aziz2", "name", "Abd al-Aziz")
	x.Add("aziz3", "name", "عبد العزيز")
	x.Add("hassan", "name", "Mohammed bin Salem al-Hassan")
	for _, q := range []string{"Abdelaziz", "Abdul Aziz", "عبدالعزيز"} {
		got := ids(x.Search(q, 10))
		for _, want := range []string{"aziz1", "aziz2", "aziz3"} {
			if !slices.Contains(got, want) {
				t.Errorf("Search(%q) = %v, missing %s", q, got, want)
			}
		}
	}
	// The article and bin are particles: the query matches on the names.
	for _, q := range []string{"Hassan", "الحسن", "Salem Hassan", "Мухаммед Хасан"} {
		if got := ids(x.Search(q, 10)); !slices.Contains(got, "hassan") {
			t.Errorf("Search(%q) = %v, missing hassan", q, got)
		}
	}
}

func TestSearchEditDistance(t *testing.T) {
	x := NewIndex()
	x.Add("maj", "name", "Majid")
	x.Add("oleg", "name", "Oleg")
	for q, want := range map[string]string{"Maged": "maj", "Madjid": "maj", "Oleh": "oleg"} {
		if got := ids(x.Search(q, 10)); !slices.Contains(got, want) {
			t.Errorf("Search(%q) = %v, missing %s", q, got, want)
		}
	}
}

func TestAddReplaceRemove(t *testing.T) {
	x := NewIndex()
	x.Add("r1", "given", "Karim")
	x.Add("r1", "family", "Haddad")
	x.Add("r2", "given", "Karima")
	if got := x.Search("Haddad", 10); len(got) != 1 || got[0].Field != "family" {
		t.Fatalf("Search(Haddad) = %v", got)
	}
	if got := ids(x.SearchField("Karim", "family", 10)); len(got) != 0 {
		t.Errorf("SearchField(Karim, family) = %v, want nothing", got)
	}
	x.Add("r1", "family", "Petrov") // replaces Haddad
	if got := x.Search("Haddad", 10); len(got) != 0 {
		t.Errorf("replaced text still found: %v", got)
	}
	x.Add("r1", "given", "") // empty text removes the field
	if got := ids(x.Search("Karim", 10)); slices.Contains(got, "r1") {
		t.Errorf("removed field still found: %v", got)
	}
	x.Remove("r1")
	x.Remove("r1") // removing twice is harmless
	if x.Len() != 1 {
		t.Errorf("Len = %d, want 1", x.Len())
	}
	x.Remove("r2")
	if s := x.Stats(); s != (Stats{}) {
		t.Errorf("empty index has %+v", s)
	}
	if len(x.lex.ids) != 0 {
		t.Errorf("lexicon keeps %d words of removed documents", len(x.lex.ids))
	}
}

func TestTermsHaveNoQueryOnlyForms(t *testing.T) {
	terms := Terms("Abd al-Aziz")
	for _, want := range []string{"n:abd", "n:aziz", "k:abd", "k:az", "j:" + analyze("Abd al-Aziz").joined.key} {
		if !slices.Contains(terms, want) {
			t.Errorf("Terms = %q, missing %q", terms, want)
		}
	}
	if slices.Contains(terms, "n:al") {
		t.Errorf("Terms = %q: the particle al has a term", terms)
	}
	if !slices.IsSorted(terms) {
		t.Errorf("Terms not sorted: %q", terms)
	}
}

// TestQueryTermsFindWhatSearchFinds: a caller that persists postings
// (QueryTerms over a Vocabulary, then Similarity) finds what Index.Search
// finds.
func TestQueryTermsFindWhatSearchFinds(t *testing.T) {
	names := loadNames(t)[:300]
	x := NewIndex()
	postings := make(map[string][]int)
	v := NewVocabulary()
	for i, n := range names {
		x.Add(fmt.Sprint(i), "name", n.spelling)
		for _, term := range Terms(n.spelling) {
			postings[term] = append(postings[term], i)
			if key, ok := strings.CutPrefix(term, termKey); ok {
				v.Add(key)
			}
		}
	}
	for _, n := range names[:60] {
		found := make(map[string]bool)
		for _, term := range QueryTerms(n.spelling, v) {
			for _, i := range postings[term] {
				if Similarity(n.spelling, names[i].spelling) > 0 {
					found[fmt.Sprint(i)] = true
				}
			}
		}
		for _, h := range x.Search(n.spelling, 1000) {
			if !found[h.DocID] {
				t.Errorf("%q: Search finds %s (%q), QueryTerms does not", n.spelling, h.DocID, names[atoi(h.DocID)].spelling)
			}
		}
	}
}

// TestDependencies: the package is pure; besides the standard library it
// uses golang.org/x/text only.
func TestDependencies(t *testing.T) {
	deptest.Check(t, "fieldsync/internal/find", func(p string) bool {
		return strings.HasPrefix(p, "golang.org/x/text/")
	})
}

// The limit counts only what the filter accepts: a caller hiding documents
// (spaces it cannot read) still gets limit hits, and refused documents never
// come back.
func TestSearchFilter(t *testing.T) {
	x := NewIndex()
	for i := range 20 {
		x.Add(fmt.Sprintf("a/%02d", i), "name", "Mohammed")
		x.Add(fmt.Sprintf("b/%02d", i), "name", "Mohammed")
	}
	x.Add("b/99", "alias", "Mohammed")
	onlyB := Filter{Doc: func(id string) bool { return strings.HasPrefix(id, "b/") }}
	got := x.SearchFilter("محمد", onlyB, 5)
	if len(got) != 5 {
		t.Fatalf("SearchFilter gave %d hits, want 5: %v", len(got), got)
	}
	for _, h := range got {
		if !strings.HasPrefix(h.DocID, "b/") {
			t.Errorf("filtered-out document %s returned", h.DocID)
		}
	}
	onlyAlias := Filter{Doc: onlyB.Doc, Field: func(f string) bool { return f == "alias" }}
	if got := ids(x.SearchFilter("Mohammed", onlyAlias, 5)); !slices.Equal(got, []string{"b/99"}) {
		t.Errorf("SearchFilter by field = %v, want [b/99]", got)
	}
}

// TestSetFieldsMatchesAdd: SetFields leaves the index exactly as the
// equivalent Add calls do (same hits, same sizes), whether fields change,
// stay, disappear or come back, and a field whose text is unchanged keeps
// its analysis (not redone).
func TestSetFieldsMatchesAdd(t *testing.T) {
	steps := [][]FieldText{
		{{"given", "Karim"}, {"family", "Haddad"}, {"place", "Tripoli"}},
		{{"given", "Karim"}, {"family", "Petrov"}, {"place", "Tripoli"}}, // one field changes
		{{"given", "Karim"}, {"place", "Tripoli"}},                       // one leaves
		{{"given", "Karim"}, {"place", ""}, {"family", "Haddad"}},        // empty text: no field
		{{"given", "محمد"}, {"given", "Ignored"}},                        // a second of a name is left out
		nil, // the document leaves
		{{"family", "Мухаммед"}},
		{{"family", "Haddad Karim"}, {"given", "Haddad"}}, // a term in two fields
		{{"family", "Petrov"}, {"given", "Haddad"}},       // still in the other
		{{"family", "Haddad"}, {"given", "Petrov"}},       // terms swap fields
		{{"family", "Haddad"}, {"given", "Petrov"}, {"place", "Haddad"}},
		{{"place", "Haddad Tripoli"}},
	}
	set, add := NewIndex(), NewIndex()
	add.Add("r2", "given", "Karima") // another document, untouched
	set.Add("r2", "given", "Karima")
	var had []string
	for n, fs := range steps {
		set.SetFields("r1", fs)
		var names []string
		for _, f := range fs {
			if slices.Contains(names, f.Name) {
				continue
			}
			names = append(names, f.Name)
			add.Add("r1", f.Name, f.Text)
		}
		for _, h := range had {
			if !slices.Contains(names, h) {
				add.Add("r1", h, "")
			}
		}
		had = names
		if s, a := set.Stats(), add.Stats(); s != a {
			t.Fatalf("step %d: SetFields gives %+v, Add gives %+v", n, s, a)
		}
		for _, q := range []string{"Karim", "Haddad", "Petrov", "Tripoli", "Mohammed", "Ignored"} {
			if s, a := set.Search(q, 10), add.Search(q, 10); !slices.Equal(s, a) {
				t.Fatalf("step %d: Search(%q) = %v after SetFields, %v after Add", n, q, s, a)
			}
		}
	}
	// An unchanged field is kept as it was: its analysis is the same
	// slice, not a new one.
	x := NewIndex()
	x.SetFields("r", []FieldText{{"given", "Karim"}, {"family", "Haddad"}})
	before := &x.docs[x.refs["r"]].fields[0].terms[0]
	x.SetFields("r", []FieldText{{"given", "Karim"}, {"family", "Petrov"}})
	if after := &x.docs[x.refs["r"]].fields[0].terms[0]; before != after {
		t.Error("an unchanged field was analysed again")
	}
	x.SetFields("r", nil)
	if s := x.Stats(); s != (Stats{}) || len(x.lex.ids) != 0 {
		t.Errorf("empty index has %+v and %d lexicon words", s, len(x.lex.ids))
	}
}
