package find

import (
	"slices"
	"unicode/utf8"
)

// Vocabulary is the set of phonetic keys in use, each with a count of the
// documents holding it, and a bigram index over the keys for finding the
// keys near a query's. Fuzzy matching runs over keys, not documents: a
// name list of 100,000 records has a few thousand distinct keys, so
// expanding a query to its near keys is cheap, and the documents come
// from the postings of those keys.
//
// A caller that persists postings under keyed hashes keeps a Vocabulary
// beside them (sealed, docs/find.md) and expands queries with QueryTerms.
// A Vocabulary is not safe for concurrent use.
type Vocabulary struct {
	count map[string]int      // key → documents holding it
	grams map[string][]string // bigram of "^key$" → keys, ascending
}

// NewVocabulary returns an empty vocabulary.
func NewVocabulary() *Vocabulary {
	return &Vocabulary{count: make(map[string]int), grams: make(map[string][]string)}
}

// Add counts one more document holding key.
func (v *Vocabulary) Add(key string) {
	v.count[key]++
	if v.count[key] > 1 {
		return
	}
	for _, g := range keyGrams(key) {
		p := v.grams[g]
		if i, found := slices.BinarySearch(p, key); !found {
			v.grams[g] = slices.Insert(p, i, key)
		}
	}
}

// Remove counts one document fewer holding key; at zero the key leaves.
func (v *Vocabulary) Remove(key string) {
	n, ok := v.count[key]
	if !ok {
		return
	}
	if n > 1 {
		v.count[key] = n - 1
		return
	}
	delete(v.count, key)
	for _, g := range keyGrams(key) {
		p := v.grams[g]
		if i, found := slices.BinarySearch(p, key); found {
			if p = slices.Delete(p, i, i+1); len(p) == 0 {
				delete(v.grams, g)
			} else {
				v.grams[g] = p
			}
		}
	}
}

// Len returns the number of distinct keys.
func (v *Vocabulary) Len() int { return len(v.count) }

// Keys returns the keys with their counts, for persisting the vocabulary.
func (v *Vocabulary) Keys() map[string]int {
	out := make(map[string]int, len(v.count))
	for k, n := range v.count {
		out[k] = n
	}
	return out
}

// Near returns the keys in the vocabulary within the edit distance the
// search tolerates for key (for keys too short for that, the keys one
// inserted consonant longer), key itself included if present, in
// ascending order.
func (v *Vocabulary) Near(key string) []string {
	n := utf8.RuneCountInString(key)
	edits := max(1, allowedEdits(n, 2))
	short := allowedEdits(n, 2) == 0
	grams := keyGrams(key)
	// An edit changes at most two bigrams of the padded key.
	need := max(1, len(grams)-2*edits)
	shared := make(map[string]int)
	for _, g := range grams {
		for _, k := range v.grams[g] {
			shared[k]++
		}
	}
	var out []string
	for k, s := range shared {
		if s < need {
			continue
		}
		if d := utf8.RuneCountInString(k) - n; d > edits || -d > edits {
			continue
		}
		if short && !isOneInsertion(key, k) {
			// A key too short for an edit still reaches keys that insert
			// one consonant (Riad, Riyad: rd, rjd; Oleh, Oleg: al, alg),
			// which may be within the Latin spelling tolerance; any edit
			// of a two-letter key would be most of the vocabulary.
			continue
		}
		if levenshtein(key, k) <= edits {
			out = append(out, k)
		}
	}
	slices.Sort(out)
	return out
}

// QueryTerms returns the terms whose postings hold the candidates for
// query: for each significant word (with and without an Arabic article),
// its exact term and the key terms of every key of v near its key; and
// the words joined, as a joined key and, for several words, as a key. Sorted,
// without duplicates.
func QueryTerms(query string, v *Vocabulary) []string {
	direct, near := analyze(query).queryTerms(v)
	out := append(direct, near...)
	slices.Sort(out)
	return slices.Compact(out)
}

// queryTerms returns the query's terms in two tiers: direct, whose
// documents share a normalised word, a key or the joined key with the
// query, and near, the other keys of v near a query word's key, each
// sorted. A document reached only through near scores at most in the
// near-key tier for the word that reached it.
func (a analyzed) queryTerms(v *Vocabulary) (direct, near []string) {
	directSet, nearSet := make(map[string]struct{}), make(map[string]struct{})
	add := func(w *word) {
		directSet[termExact+w.norm] = struct{}{}
		directSet[termKey+w.key] = struct{}{}
		for _, k := range v.Near(w.key) {
			nearSet[termKey+k] = struct{}{}
		}
	}
	for _, w := range a.significant {
		add(&w)
		if w.withoutArticle != nil {
			add(w.withoutArticle)
		}
	}
	// A compound typed as one word or as several (Abdelaziz, Abd al-Aziz)
	// meets a document's words or its joined key either way.
	directSet[termJoined+a.joined.key] = struct{}{}
	if len(a.words) > 1 {
		directSet[termKey+a.joined.key] = struct{}{}
	}
	for t := range directSet {
		direct = append(direct, t)
		delete(nearSet, t)
	}
	for t := range nearSet {
		near = append(near, t)
	}
	slices.Sort(direct)
	slices.Sort(near)
	return direct, near
}

// isOneInsertion reports whether long is short with one rune inserted.
func isOneInsertion(short, long string) bool {
	s, l := []rune(short), []rune(long)
	if len(l) != len(s)+1 {
		return false
	}
	i := 0
	for i < len(s) && s[i] == l[i] {
		i++
	}
	return string(s[i:]) == string(l[i+1:])
}
