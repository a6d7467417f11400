package find

// Scores of one query word against one document word. The tiers do not
// overlap, so the ranking is exact match > same key > near key > near
// spelling whatever the edit distances inside a tier.
const (
	scoreExact      = 1.0
	scoreSameKey    = 0.8 // to 0.9, by how close the Latin spellings are
	scoreNearKey    = 0.5 // to 0.75
	scoreNearKeyMax = scoreNearKey + 0.25
	scoreNearLat    = 0.4 // to 0.6
	// coverageWeight rewards documents whose words the query covers: for
	// the query Mohammed, the field "Mohammed" ranks above "Mohammed Salem
	// al-Hassan". Small enough never to cross a tier.
	coverageWeight = 0.01
)

// allowedEdits is the edit distance tolerated between two forms of this
// many runes: none for very short forms (two consonants are too easily
// another name), one up to five, two beyond.
func allowedEdits(n, short int) int {
	switch {
	case n <= short:
		return 0
	case n <= short+3:
		return 1
	default:
		return 2
	}
}

// wordScore compares one query word with one document word.
func wordScore(q, d *word) float64 {
	if q.norm == d.norm {
		return scoreExact
	}
	if q.key != d.key && (d.keyLen-q.keyLen > 2 || q.keyLen-d.keyLen > 2) {
		// No tier tolerates more than two edits, and two strings whose
		// lengths differ by more are further apart: skip the distances.
		if d.latinLen-q.latinLen > 2 || q.latinLen-d.latinLen > 2 {
			return 0
		}
	}
	latinDist := levenshtein(q.latin, d.latin)
	latinSim := 1 - float64(latinDist)/float64(max(q.latinLen, d.latinLen, 1))
	if q.key == d.key {
		return scoreSameKey + 0.1*latinSim
	}
	if dist := levenshtein(q.key, d.key); dist <= allowedEdits(min(q.keyLen, d.keyLen), 2) {
		keySim := 1 - float64(dist)/float64(max(q.keyLen, d.keyLen))
		return scoreNearKey + 0.15*keySim + 0.1*latinSim
	}
	if latinDist <= allowedEdits(min(q.latinLen, d.latinLen), 3) {
		return scoreNearLat + 0.2*latinSim
	}
	return 0
}

// bestWordScore compares q with d, each also without its Arabic article.
func bestWordScore(q, d *word) float64 {
	best := wordScore(q, d)
	if d.withoutArticle != nil {
		best = max(best, wordScore(q, d.withoutArticle))
	}
	if q.withoutArticle != nil {
		best = max(best, wordScore(q.withoutArticle, d))
		if d.withoutArticle != nil {
			best = max(best, wordScore(q.withoutArticle, d.withoutArticle))
		}
	}
	return best
}

// scorer scores one query against many documents. Documents repeat words
// (a common name is in thousands of records), so it remembers the score of
// each query word against each document word it has seen.
type scorer struct {
	q    *analyzed
	memo map[uint64]float64 // query word index << 32 | lexicon number → score
}

func newScorer(q *analyzed) *scorer {
	return &scorer{q: q, memo: make(map[uint64]float64)}
}

// score compares the query with a document text: the mean over the query's
// significant words of each one's best match among the document's words,
// or the match of the two texts joined into one word if that is higher
// (Abdelaziz against Abd al-Aziz), plus a small reward for the share of
// the document's words that some query word matched. ids, if not nil, are
// the lexicon numbers of d.significant, for the memo.
func (s *scorer) score(d *analyzed, ids []uint32) float64 {
	q := s.q
	if len(q.words) == 0 || len(d.words) == 0 {
		return 0
	}
	dWords := d.significant
	var matchedBuf [8]bool
	matched := matchedBuf[:0]
	if len(dWords) > len(matchedBuf) {
		matched = make([]bool, 0, len(dWords))
	}
	matched = matched[:len(dWords)]
	clear(matched)
	sum := 0.0
	for i := range q.significant {
		best, bestAt := 0.0, -1
		for j := range dWords {
			var ws float64
			if ids == nil {
				ws = bestWordScore(&q.significant[i], &dWords[j])
			} else {
				k := uint64(i)<<32 | uint64(ids[j])
				var ok bool
				if ws, ok = s.memo[k]; !ok {
					ws = bestWordScore(&q.significant[i], &dWords[j])
					s.memo[k] = ws
				}
			}
			if ws > best {
				best, bestAt = ws, j
			}
		}
		if bestAt >= 0 {
			matched[bestAt] = true
		}
		sum += best
	}
	total := sum / float64(len(q.significant))
	// The joined texts can only do better if the words did not all match
	// at the top of the same-key tier, or if they are the same text.
	if (len(q.words) > 1 || len(d.words) > 1) && (total < scoreSameKey+0.1 || q.joined.norm == d.joined.norm) {
		if joined := wordScore(&q.joined, &d.joined); joined > total {
			total = joined
			for j := range matched {
				matched[j] = true
			}
		}
	}
	if total == 0 {
		return 0
	}
	covered := 0
	for _, m := range matched {
		if m {
			covered++
		}
	}
	return total + coverageWeight*float64(covered)/float64(len(dWords))
}

// Similarity scores text as a match for query, as Index.Search ranks it:
// 0 for no match, up to 1.01 for an exact one. A caller that found
// candidates through persisted postings (Terms) re-ranks them with it.
func Similarity(query, text string) float64 {
	q, d := analyze(query), analyze(text)
	return newScorer(&q).score(&d, nil)
}

// levenshtein is the edit distance between a and b in runes.
func levenshtein(a, b string) int {
	if a == b {
		return 0
	}
	var abuf, bbuf [32]rune
	ar := appendRunes(abuf[:0], a)
	br := appendRunes(bbuf[:0], b)
	if len(ar) == 0 {
		return len(br)
	}
	if len(br) == 0 {
		return len(ar)
	}
	var rowBuf [33]int
	row := rowBuf[:0]
	if len(br)+1 > len(rowBuf) {
		row = make([]int, 0, len(br)+1)
	}
	for j := 0; j <= len(br); j++ {
		row = append(row, j)
	}
	for i := 1; i <= len(ar); i++ {
		diag := row[0]
		row[0] = i
		for j := 1; j <= len(br); j++ {
			cost := 1
			if ar[i-1] == br[j-1] {
				cost = 0
			}
			next := min(row[j]+1, row[j-1]+1, diag+cost)
			diag = row[j]
			row[j] = next
		}
	}
	return row[len(br)]
}

func appendRunes(dst []rune, s string) []rune {
	for _, r := range s {
		dst = append(dst, r)
	}
	return dst
}
