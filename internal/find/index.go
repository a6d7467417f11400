package find

import (
	"hash/maphash"
	"slices"
	"strings"
	"sync"
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
	vocab    *Vocabulary         // the keys of the "k:" terms
	lex      *lexicon            // the words of the fields
	seed     maphash.Seed        // of field.sum
}

type document struct {
	id     string
	fields []field
}

type field struct {
	name  string
	text  analyzed
	terms []string
	words []uint32 // lexicon numbers of text.significant
	// sum is a keyed hash of the field's text (SetFields): a field whose
	// text did not change is kept as it is, not analysed again.
	sum uint64
}

// NewIndex returns an empty index.
func NewIndex() *Index {
	return &Index{refs: make(map[string]uint32), postings: make(map[string][]uint32), vocab: NewVocabulary(), lex: newLexicon(), seed: maphash.MakeSeed()}
}

// FieldText is one field of a document (SetFields).
type FieldText struct {
	Name, Text string
}

// SetFields sets a document's fields to exactly fields (in that order), as
// Add of each and Add(docID, name, "") of every other field would, but at
// the cost of the fields whose text changed only: a field whose text is
// the same as before is kept without being analysed again, and the
// document's terms are compared once, not once per field. Fields with no
// words, and names after the first of a kind, are left out; no fields at
// all removes the document.
func (x *Index) SetFields(docID string, fields []FieldText) {
	type next struct {
		f       field
		changed bool
	}
	sums := make([]uint64, len(fields))
	for i, ft := range fields {
		sums[i] = maphash.String(x.seed, ft.Text)
	}
	// Analysis is the expensive part: done outside the lock, for the
	// fields the index does not hold with the same text.
	x.mu.RLock()
	var old []field
	if ref, ok := x.refs[docID]; ok {
		old = x.docs[ref].fields
	}
	same := make([]int, len(fields)) // index in old + 1, 0 if changed
	for i, ft := range fields {
		if j := slices.IndexFunc(old, func(g field) bool { return g.name == ft.Name }); j >= 0 && old[j].sum == sums[i] {
			same[i] = j + 1
		}
	}
	x.mu.RUnlock()
	ns := make([]next, 0, len(fields))
	seen := make(map[string]bool, len(fields))
	for i, ft := range fields {
		if seen[ft.Name] {
			continue
		}
		seen[ft.Name] = true
		if same[i] > 0 {
			ns = append(ns, next{f: field{name: ft.Name, sum: sums[i]}})
			continue
		}
		a := analyze(ft.Text)
		if len(a.words) == 0 {
			continue
		}
		ns = append(ns, next{f: field{name: ft.Name, text: a, terms: a.terms(), sum: sums[i]}, changed: true})
	}
	x.mu.Lock()
	defer x.mu.Unlock()
	ref, ok := x.refs[docID]
	if !ok {
		if len(ns) == 0 {
			return
		}
		ref = x.newSlot(&document{id: docID})
	}
	doc := x.docs[ref]
	out := make([]field, 0, len(ns))
	kept := map[string]bool{}
	var added []field
	for _, n := range ns {
		if !n.changed {
			// Unchanged when read, but the lock was let go since: take the
			// field as the index holds it now, if its text is still the same.
			j := slices.IndexFunc(doc.fields, func(g field) bool { return g.name == n.f.name })
			if j >= 0 && doc.fields[j].sum == n.f.sum {
				out = append(out, doc.fields[j])
				kept[n.f.name] = true
				continue
			}
			i := slices.IndexFunc(fields, func(ft FieldText) bool { return ft.Name == n.f.name })
			a := analyze(fields[i].Text) // rare: changed by another writer meanwhile
			if len(a.words) == 0 {
				continue
			}
			n.f.text, n.f.terms = a, a.terms()
		}
		n.f.words = x.lex.intern(n.f.text.significant)
		out = append(out, n.f)
		added = append(added, n.f)
	}
	var dropped, stay []field
	for _, g := range doc.fields {
		if kept[g.name] {
			stay = append(stay, g)
		} else {
			x.lex.release(g.words)
			dropped = append(dropped, g)
		}
	}
	doc.fields = out
	// The document's terms change only by the fields that left or came: a
	// term of a field that left is unposted unless a kept or new field has
	// it, a term of a new field posted unless the document had it. Each
	// field's terms are sorted (analyzed.terms), so this needs no set of
	// the whole document's terms (two per update, the bulk of an update's
	// cost, before).
	has := func(fs []field, t string) bool {
		for i := range fs {
			if _, ok := slices.BinarySearch(fs[i].terms, t); ok {
				return true
			}
		}
		return false
	}
	for _, g := range dropped {
		for _, t := range g.terms {
			if !has(stay, t) && !has(added, t) {
				x.unpost(t, ref)
			}
		}
	}
	for _, g := range added {
		for _, t := range g.terms {
			if !has(stay, t) && !has(dropped, t) {
				x.post(t, ref)
			}
		}
	}
	if len(doc.fields) == 0 {
		x.freeSlot(ref)
	}
}

// Add sets the text of one field of a document, replacing what the field
// held. A text with no words removes the field; a document without fields
// leaves the index.
func (x *Index) Add(docID, fieldName, text string) {
	a := analyze(text)
	var f field
	if len(a.words) > 0 {
		f = field{name: fieldName, text: a, terms: a.terms(), sum: maphash.String(x.seed, text)}
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
	if len(a.words) > 0 {
		f.words = x.lex.intern(a.significant)
	}
	before := doc.termSet()
	i := slices.IndexFunc(doc.fields, func(g field) bool { return g.name == fieldName })
	switch {
	case len(a.words) == 0 && i >= 0:
		x.lex.release(doc.fields[i].words)
		doc.fields = slices.Delete(doc.fields, i, i+1)
	case len(a.words) == 0:
	case i >= 0:
		x.lex.release(doc.fields[i].words)
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
	for _, f := range x.docs[ref].fields {
		x.lex.release(f.words)
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
		if key, ok := strings.CutPrefix(t, termKey); ok {
			x.vocab.Add(key)
		}
	}
}

func (x *Index) unpost(t string, ref uint32) {
	p := x.postings[t]
	i, found := slices.BinarySearch(p, ref)
	if !found {
		return
	}
	if key, ok := strings.CutPrefix(t, termKey); ok {
		x.vocab.Remove(key)
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
// Candidates are the documents under the query's terms (QueryTerms): a
// normalised word of the query, or a key near a query word's key. Each is
// then scored on its stored text.
func (x *Index) SearchField(query, fieldName string, limit int) []Hit {
	var f Filter
	if fieldName != "" {
		f.Field = func(name string) bool { return name == fieldName }
	}
	return x.SearchFilter(query, f, limit)
}

// Filter restricts a search (SearchFilter). A nil function accepts all.
type Filter struct {
	// Doc reports whether a document may be returned; documents it
	// refuses are not scored.
	Doc func(docID string) bool
	// Field reports whether a field may match.
	Field func(fieldName string) bool
}

// SearchFilter is SearchField with the documents and fields chosen by f:
// the limit applies to what f accepts, so a caller that may not show some
// documents (another space, one it cannot read) still gets limit hits.
func (x *Index) SearchFilter(query string, filter Filter, limit int) []Hit {
	q := analyze(query)
	if len(q.words) == 0 || limit <= 0 {
		return nil
	}
	x.mu.RLock()
	defer x.mu.RUnlock()
	direct, near := q.queryTerms(x.vocab)
	sc := newScorer(&q)
	// A bitmap over slots dedupes the candidates: cheaper than a map for
	// the thousands a common name has.
	seen := make([]uint64, (len(x.docs)+63)/64)
	var top topHits
	top.limit = limit
	collect := func(terms []string) {
		for _, t := range terms {
			for _, ref := range x.postings[t] {
				if seen[ref/64]&(1<<(ref%64)) != 0 {
					continue
				}
				seen[ref/64] |= 1 << (ref % 64)
				if filter.Doc != nil && !filter.Doc(x.docs[ref].id) {
					continue
				}
				if h, ok := x.scoreDoc(sc, ref, filter.Field); ok {
					top.offer(h)
				}
			}
		}
	}
	collect(direct)
	// A document reached only through near keys matches each query word,
	// and the joined query, at most in the near-key tier (an exact or
	// same-key match would be under a direct term), so once the direct
	// terms gave limit hits above that tier, none of them can enter.
	if len(top.hits) < limit || top.hits[len(top.hits)-1].Score <= scoreNearKeyMax+coverageWeight {
		collect(near)
	}
	return top.hits
}

// scoreDoc scores the document in slot ref by its best field (among those
// keep accepts), reporting false if nothing matched.
func (x *Index) scoreDoc(sc *scorer, ref uint32, keep func(string) bool) (Hit, bool) {
	doc := x.docs[ref]
	best := Hit{DocID: doc.id}
	for i := range doc.fields {
		f := &doc.fields[i]
		if keep != nil && !keep(f.name) {
			continue
		}
		if s := sc.score(&f.text, f.words); s > best.Score || (s == best.Score && s > 0 && f.name < best.Field) {
			best.Score, best.Field = s, f.name
		}
	}
	return best, best.Score > 0
}

// topHits keeps the best limit hits offered, in result order.
type topHits struct {
	limit int
	hits  []Hit
}

func (t *topHits) offer(h Hit) {
	if len(t.hits) == t.limit && !hitBefore(h, t.hits[len(t.hits)-1]) {
		return
	}
	i, _ := slices.BinarySearchFunc(t.hits, h, func(a, b Hit) int {
		if hitBefore(a, b) {
			return -1
		}
		return 1
	})
	if len(t.hits) < t.limit {
		t.hits = slices.Insert(t.hits, i, h)
		return
	}
	copy(t.hits[i+1:], t.hits[i:len(t.hits)-1])
	t.hits[i] = h
}

// hitBefore orders hits: higher score first, then document ID, then field.
func hitBefore(a, b Hit) bool {
	if a.Score != b.Score {
		return a.Score > b.Score
	}
	if a.DocID != b.DocID {
		return a.DocID < b.DocID
	}
	return a.Field < b.Field
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
	Keys     int // distinct phonetic keys (the Vocabulary)
	// TermBytes is the length of all distinct terms; a persisted index
	// stores a fixed-size keyed hash per term instead (docs/find.md).
	TermBytes int
}

// Stats returns the size of the index.
func (x *Index) Stats() Stats {
	x.mu.RLock()
	defer x.mu.RUnlock()
	s := Stats{Docs: len(x.refs), Terms: len(x.postings), Keys: x.vocab.Len()}
	for t, p := range x.postings {
		s.TermBytes += len(t)
		s.Postings += len(p)
	}
	return s
}
