package find

import (
	"slices"
	"strings"
	"unicode/utf8"
)

// word is one word of a text in the three forms the index compares.
type word struct {
	norm     string // Normalize's form: exact matches
	latin    string // transliterated: edit distance between spellings
	key      string // phonetic key: same-sounding spellings
	latinLen int    // runes in latin
	keyLen   int    // runes in key
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
	words       []word
	significant []word // the words that are not particles, or all if none
	joined      word
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
	plain, key := cleanBoth(text)
	norms := strings.Fields(plain)
	forKey := strings.Fields(key)
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
		a.joined = newWordForms(joinedNorm.String(), latin, latinKey(latin, allLatin))
	}
	// significant shares words' array unless a particle must be left out:
	// the index keeps every field's analysis, and a copy of its words
	// was a fifth of its heap.
	particles := 0
	for _, w := range a.words {
		if w.particle {
			particles++
		}
	}
	if particles == 0 || particles == len(a.words) {
		a.significant = a.words
		return a
	}
	a.significant = make([]word, 0, len(a.words)-particles)
	for _, w := range a.words {
		if !w.particle {
			a.significant = append(a.significant, w)
		}
	}
	return a
}

func newWord(norm, forKey string) word {
	latin := transliterateWord(forKey)
	return newWordForms(norm, latin, latinKey(latin, isASCII(forKey)))
}

func newWordForms(norm, latin, key string) word {
	return word{norm: norm, latin: latin, key: key,
		latinLen: utf8.RuneCountInString(latin), keyLen: utf8.RuneCountInString(key)}
}

// Term prefixes: one namespace per form, so a normalised word can never
// collide with a key.
const (
	termExact = "n:" // normalised word
	termKey   = "k:" // phonetic key of a word
	// termJoined is the key of a text of several words joined into one. It
	// has a namespace of its own because nearly every record's is unique:
	// in "k:" it would swell the Vocabulary that fuzzy expansion scans.
	termJoined = "j:"
)

// Terms returns the index terms of text, sorted and without duplicates:
// for each word that is not a particle, "n:" and its normalised form and
// "k:" and its phonetic key (both again without an Arabic article, if the
// word has one); for a text of several words, "j:" and the key of all its
// words joined. A caller that persists postings stores them under a keyed
// hash of each term, so no plaintext term reaches the disk, and finds a
// query's candidates under the hashes of QueryTerms (docs/find.md).
func Terms(text string) []string {
	return analyze(text).terms()
}

func (a analyzed) terms() []string {
	set := make(map[string]struct{}, 4*len(a.words))
	add := func(w *word) {
		set[termExact+w.norm] = struct{}{}
		set[termKey+w.key] = struct{}{}
	}
	for _, w := range a.significant {
		add(&w)
		if w.withoutArticle != nil {
			add(w.withoutArticle)
		}
	}
	if len(a.words) > 1 {
		set[termJoined+a.joined.key] = struct{}{}
	}
	out := make([]string, 0, len(set))
	for t := range set {
		out = append(out, t)
	}
	slices.Sort(out)
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
