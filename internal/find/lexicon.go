package find

// lexicon numbers the distinct document words of an index, so that a
// search scores each distinct word once (scorer) and a document by a few
// lookups: a common name is in thousands of records, spelled a few dozen
// ways. Words are counted and their numbers reused once no field holds
// them.
type lexicon struct {
	ids   map[lexKey]uint32
	words []lexKey
	refs  []int
	free  []uint32
}

type lexKey struct{ norm, latin string } // the other forms follow from these

func newLexicon() *lexicon { return &lexicon{ids: make(map[lexKey]uint32)} }

// intern returns the numbers of words, counting one more holder of each.
func (l *lexicon) intern(words []word) []uint32 {
	out := make([]uint32, len(words))
	for i, w := range words {
		k := lexKey{w.norm, w.latin}
		id, ok := l.ids[k]
		if !ok {
			if n := len(l.free); n > 0 {
				id = l.free[n-1]
				l.free = l.free[:n-1]
				l.words[id], l.refs[id] = k, 0
			} else {
				id = uint32(len(l.words))
				l.words = append(l.words, k)
				l.refs = append(l.refs, 0)
			}
			l.ids[k] = id
		}
		l.refs[id]++
		out[i] = id
	}
	return out
}

// release counts one holder fewer of each word.
func (l *lexicon) release(ids []uint32) {
	for _, id := range ids {
		if l.refs[id]--; l.refs[id] == 0 {
			delete(l.ids, l.words[id])
			l.words[id] = lexKey{}
			l.free = append(l.free, id)
		}
	}
}
