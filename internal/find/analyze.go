package find

import (
	"strings"
	"unicode/utf8"
)

// word is one word of a text in the three forms the index compares.
type word struct {
	norm  string // Normalize's form: exact matches
	latin string // transliterated: edit distance between spellings
	key   string // phonetic key: same-sounding spellings
	// particle marks name particles (al-, bin, ould, de, von ...): they
	// neither count as a word of their own in a multi-word query nor get
	// index terms, but stay in the text's joined form.
	particle bool
	// withoutArticle is the word without a leading Arabic article ال
	// (الحسن → حسن), compared as an alternative; nil if there is none.
	withoutArticle *word
}

// analyzed is a text split into words, plus all its words joined into one
// (so "Abd al-Aziz", "Abdelaziz" and عبد العزيز can meet as one word).
type analyzed struct {
	words  []word
	joined word
}

// particles are the name particles of the conventions in docs/find.md:
// the Arabic article with its sun-letter assimilations as Latin spellings
// write it before a hyphen (al-, el-, ad-, ash-, an- ...), bin/ibn/bint
// and Maghrebi ould, in the three scripts, and the Romance, Germanic and
// Dutch nobiliary particles. A query made only of particles searches for
// them as words.
var particles = map[string]bool{
	"al": true, "el": true, "ul": true, "ad": true, "ed": true, "an": true, "en": true,
	"ar": true, "er": true, "as": true, "es": true, "at": true, "et": true, "az": true,
	"ez": true, "ash": true, "esh": true, "ach": true, "ech": true, "ath": true, "adh": true,
	"bin": true, "ibn": true, "ben": true, "bint": true, "bent": true, "ould": true, "wuld": true,
	"ال": true, "بن": true, "ابن": true, "بنت": true, "ولد": true,
	"аль": true, "ал": true, "эль": true, "ад": true, "ас": true, "аш": true, "ар": true,
	"ан": true, "уль": true, "ибн": true, "бин": true, "бен": true, "бинт": true,
	"de": true, "du": true, "des": true, "la": true, "le": true, "da": true, "di": true,
	"do": true, "dos": true, "das": true, "van": true, "von": true, "der": true, "den": true,
	"ter": true, "zu": true, "y": true,
}

const arabicArticle = "ال"

func analyze(text string) analyzed {
	norms := strings.Fields(clean(text, false))
	forKey := strings.Fields(clean(text, true))
	if len(forKey) != len(norms) {
		// Cannot happen (clean's two modes split alike); stay correct if
		// it ever does by transliterating the normalised words.
		forKey = norms
	}
	a := analyzed{words: make([]word, len(norms))}
	var joinedNorm, joinedLatin strings.Builder
	allLatin := true
	for i, n := range norms {
		w := newWord(n, forKey[i])
		w.particle = particles[n]
		if strings.HasPrefix(n, arabicArticle) && strings.HasPrefix(forKey[i], arabicArticle) && utf8.RuneCountInString(n) > 3 {
			bare := newWord(n[len(arabicArticle):], forKey[i][len(arabicArticle):])
			w.withoutArticle = &bare
		}
		a.words[i] = w
		joinedNorm.WriteString(w.norm)
		joinedLatin.WriteString(w.latin)
		allLatin = allLatin && isASCII(forKey[i])
	}
	switch len(a.words) {
	case 0:
	case 1:
		a.joined = a.words[0]
	default:
		latin := joinedLatin.String()
		a.joined = word{norm: joinedNorm.String(), latin: latin, key: latinKey(latin, allLatin)}
	}
	return a
}

func newWord(norm, forKey string) word {
	latin := transliterateWord(forKey)
	return word{norm: norm, latin: latin, key: latinKey(latin, isASCII(forKey))}
}

// Term prefixes: one namespace per form, so a normalised word can never
// collide with a key or an n-gram.
const (
	termExact = "n:" // normalised word
	termKey   = "k:" // phonetic key of a word or of the joined text
	termGram  = "g:" // bigram of a word's key, for edit-distance tolerance
)

// Terms returns the index terms of text, sorted and without duplicates:
// for each word that is not a particle, "n:" and its normalised form,
// "k:" and its phonetic key, and "g:" and each bigram of the key padded
// with ^ and $; for a text of several words, "k:" and the key of all its
// words joined. A query's candidates are the documents sharing a term
// with it (for n-grams, enough of them; see Index.Search), so a caller
// that stores postings under a keyed hash of each term can find them
// without a plaintext term on disk (docs/find.md).
func Terms(text string) []string {
	return analyze(text).terms()
}

func (a analyzed) terms() []string {
	set := make(map[string]struct{}, 8*len(a.words))
	add := func(w word) {
		set[termExact+w.norm] = struct{}{}
		set[termKey+w.key] = struct{}{}
		for _, g := range keyGrams(w.key) {
			set[termGram+g] = struct{}{}
		}
	}
	for _, w := range a.significantWords() {
		add(w)
		if w.withoutArticle != nil {
			add(*w.withoutArticle)
		}
	}
	if len(a.words) > 1 {
		set[termKey+a.joined.key] = struct{}{}
	}
	out := make([]string, 0, len(set))
	for t := range set {
		out = append(out, t)
	}
	sortStrings(out)
	return out
}

// significantWords returns the words that are not particles, or all words
// if every one is a particle.
func (a analyzed) significantWords() []word {
	out := make([]word, 0, len(a.words))
	for _, w := range a.words {
		if !w.particle {
			out = append(out, w)
		}
	}
	if len(out) == 0 {
		return a.words
	}
	return out
}

// keyGrams returns the bigrams of "^" + key + "$". Keys are short (a name
// has three to six consonants): with trigrams, one edit in the middle of a
// three-letter key (mjd, mgd: Majid, Maged) leaves no gram in common; with
// bigrams an edit changes at most two, and both ends still match.
func keyGrams(key string) []string {
	rs := []rune("^" + key + "$")
	out := make([]string, 0, len(rs)-1)
	for i := 0; i+2 <= len(rs); i++ {
		out = append(out, string(rs[i:i+2]))
	}
	return out
}
