package find

import (
	"cmp"
	"slices"
	"sync"
	"unicode/utf8"
)

// Hit is one search result: the document, its best-matching field, and the
// score (see Similarity).
type Hit struct {
	DocID string
	Field string
	Score float64
}

// Index is an in-memory inverted index from the terms of Terms to the
// documents holding them. A document is a set of fields, each a text. It
// is safe for concurrent use.
type Index struct {
	mu       sync.RWMutex
	refs     map[string]uint32   // document ID → slot in docs
	docs     []*document         // nil for a free slot
	free     []uint32            // free slots, reused before docs grows
	postings map[string][]uint32 // term → slots holding it, ascending
}

type document struct {
	id     string
	fields []field
}

type field struct {
	name  string
	text  analyzed
	terms []string
}

// NewIndex returns an empty index.
func NewIndex() *Index {
	return &Index{refs: make(map[string]uint32), postings: make(map[string][]uint32)}
}

// Add sets the text of one field of a document, replacing what the field
// held. A text with no words removes the field; a document without fields
// leaves the index.
func (x *Index) Add(docID, fieldName, text string) {
	a := analyze(text)
	var f field
	if len(a.words) > 0 {
		f = field{name: fieldName, text: a, terms: a.terms()}
	}
	x.mu.Lock()
	defer x.mu.Unlock()
	ref, ok := x.refs[docID]
	if !ok {
		if len(a.words) == 0 {
			return
		}
		ref = x.newSlot(&document{id: docID})
	}
	doc := x.docs[ref]
	before := doc.termSet()
	i := slices.IndexFunc(doc.fields, func(g field) bool { return g.name == fieldName })
	switch {
	case len(a.words) == 0 && i >= 0:
		doc.fields = slices.Delete(doc.fields, i, i+1)
	case len(a.words) == 0:
	case i >= 0:
		doc.fields[i] = f
	default:
		doc.fields = append(doc.fields, f)
	}
	after := doc.termSet()
	for t := range before {
		if _, kept := after[t]; !kept {
			x.unpost(t, ref)
		}
	}
	for t := range after {
		if _, had := before[t]; !had {
			x.post(t, ref)
		}
	}
	if len(doc.fields) == 0 {
		x.freeSlot(ref)
	}
}

// Remove takes a document and all its fields out of the index.
func (x *Index) Remove(docID string) {
	x.mu.Lock()
	defer x.mu.Unlock()
	ref, ok := x.refs[docID]
	if !ok {
		return
	}
	for t := range x.docs[ref].termSet() {
		x.unpost(t, ref)
	}
	x.freeSlot(ref)
}

func (x *Index) newSlot(doc *document) uint32 {
	var ref uint32
	if n := len(x.free); n > 0 {
		ref = x.free[n-1]
		x.free = x.free[:n-1]
		x.docs[ref] = doc
	} else {
		ref = uint32(len(x.docs))
		x.docs = append(x.docs, doc)
	}
	x.refs[doc.id] = ref
	return ref
}

func (x *Index) freeSlot(ref uint32) {
	delete(x.refs, x.docs[ref].id)
	x.docs[ref] = nil
	x.free = append(x.free, ref)
}

func (d *document) termSet() map[string]struct{} {
	set := make(map[string]struct{})
	for _, f := range d.fields {
		for _, t := range f.terms {
			set[t] = struct{}{}
		}
	}
	return set
}

// post adds ref to the posting list of t, keeping it ascending. New
// documents take new slots at the end, so this is usually an append.
func (x *Index) post(t string, ref uint32) {
	p := x.postings[t]
	i, found := slices.BinarySearch(p, ref)
	if !found {
		x.postings[t] = slices.Insert(p, i, ref)
	}
}

func (x *Index) unpost(t string, ref uint32) {
	p := x.postings[t]
	i, found := slices.BinarySearch(p, ref)
	if !found {
		return
	}
	p = slices.Delete(p, i, i+1)
	if len(p) == 0 {
		delete(x.postings, t)
	} else {
		x.postings[t] = p
	}
}

// Search returns up to limit documents matching query in any field, best
// first (see SearchField).
func (x *Index) Search(query string, limit int) []Hit {
	return x.SearchField(query, "", limit)
}

// SearchField returns up to limit documents whose field fieldName (any
// field if fieldName is "") matches query, best first: by score, then by
// document ID, then by field name, so equal scores always come in the
// same order.
//
// Candidates are the documents sharing with the query a normalised word,
// a phonetic key, or enough key trigrams to be within the allowed edit
// distance of a query word's key; each is then scored on its stored text.
func (x *Index) SearchField(query, fieldName string, limit int) []Hit {
	q := analyze(query)
	if len(q.words) == 0 || limit <= 0 {
		return nil
	}
	x.mu.RLock()
	defer x.mu.RUnlock()
	candidates := make(map[uint32]struct{})
	addAll := func(term string) {
		for _, ref := range x.postings[term] {
			candidates[ref] = struct{}{}
		}
	}
	gramCounts := make(map[uint32]int)
	gramsFor := func(w *word) {
		addAll(termExact + w.norm)
		addAll(termKey + w.key)
		grams := keyGrams(w.key)
		// An edit changes at most two bigrams; a word within the allowed
		// distance shares at least len(grams) - 2*edits of them. A short
		// key allows no edit, but its word may still be within the Latin
		// spelling tolerance (Riad, Riyad: rd, rjd): one edit's worth of
		// bigrams, and never fewer than two, keeps those.
		edits := max(1, allowedEdits(utf8.RuneCountInString(w.key), 2))
		need := max(2, len(grams)-2*edits)
		clear(gramCounts)
		for _, g := range grams {
			for _, ref := range x.postings[termGram+g] {
				gramCounts[ref]++
			}
		}
		for ref, n := range gramCounts {
			if n >= need {
				candidates[ref] = struct{}{}
			}
		}
	}
	for _, w := range q.significantWords() {
		gramsFor(&w)
		if w.withoutArticle != nil {
			gramsFor(w.withoutArticle)
		}
	}
	if len(q.words) > 1 {
		addAll(termKey + q.joined.key)
	}

	hits := make([]Hit, 0, len(candidates))
	for ref := range candidates {
		doc := x.docs[ref]
		best := Hit{DocID: doc.id}
		for i := range doc.fields {
			f := &doc.fields[i]
			if fieldName != "" && f.name != fieldName {
				continue
			}
			if s := score(&q, &f.text); s > best.Score || (s == best.Score && s > 0 && f.name < best.Field) {
				best.Score, best.Field = s, f.name
			}
		}
		if best.Score > 0 {
			hits = append(hits, best)
		}
	}
	slices.SortFunc(hits, func(a, b Hit) int {
		if c := cmp.Compare(b.Score, a.Score); c != 0 {
			return c
		}
		if c := cmp.Compare(a.DocID, b.DocID); c != 0 {
			return c
		}
		return cmp.Compare(a.Field, b.Field)
	})
	if len(hits) > limit {
		hits = hits[:limit]
	}
	return hits
}

// Len returns the number of documents in the index.
func (x *Index) Len() int {
	x.mu.RLock()
	defer x.mu.RUnlock()
	return len(x.refs)
}

// Stats describes the size of an index.
type Stats struct {
	Docs     int // documents
	Terms    int // distinct terms
	Postings int // (term, document) pairs
	// TermBytes is the length of all distinct terms; a persisted index
	// stores a fixed-size keyed hash per term instead (docs/find.md).
	TermBytes int
}

// Stats returns the size of the index.
func (x *Index) Stats() Stats {
	x.mu.RLock()
	defer x.mu.RUnlock()
	s := Stats{Docs: len(x.refs), Terms: len(x.postings)}
	for t, p := range x.postings {
		s.TermBytes += len(t)
		s.Postings += len(p)
	}
	return s
}
