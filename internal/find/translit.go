package find

import (
	"strings"
	"unicode/utf8"
)

// Transliterate returns s in lowercase Latin: each word of s (split as
// Normalize splits) is transliterated from Arabic and Cyrillic letters;
// Latin letters come out as Normalize leaves them, other scripts unchanged.
// Words are joined by single spaces.
func Transliterate(s string) string {
	words := strings.Fields(clean(s, true))
	for i, w := range words {
		words[i] = transliterateWord(w)
	}
	return strings.Join(words, " ")
}

// transliterateWord transliterates one word of clean(s, true).
func transliterateWord(w string) string {
	if isASCII(w) {
		return w
	}
	rs := []rune(w)
	var b strings.Builder
	b.Grow(2 * len(w))
	var last byte // last byte written
	for i, r := range rs {
		var l string
		switch {
		case r >= 0x0600 && r <= 0x06FF:
			l = arabicLetter(rs, i)
		case r >= 0x0400 && r <= 0x04FF:
			l = cyrillicLetter(rs, i)
		default:
			l = string(r)
		}
		if l == "" {
			continue
		}
		// Two letters must not read as one digraph: زهير is z-h (Zuhair),
		// not zh; сх is s-kh, not sh. The apostrophe keeps them apart, as
		// the BGN/PCGN tables' middle dot does; the key skips it.
		if l[0] == 'h' && strings.IndexByte("zskgtdcp", last) >= 0 {
			b.WriteByte('\'')
		}
		b.WriteString(l)
		last = l[len(l)-1]
	}
	return b.String()
}

// arabicToLatin is the romanisation of Arabic consonants used for names in
// English-language passports and press, which is the ALA-LC / UNGEGN (BGN/
// PCGN 1956) system without its diacritics: ṭ → t, ḥ → h, ṣ → s, ḍ → d,
// ẓ → z, ʿ and ʾ dropped, and the digraphs th dh kh sh gh kept. Sources:
// ALA-LC Romanization Tables, "Arabic" (Library of Congress, 2012); UNGEGN
// Working Group on Romanization Systems, "Arabic" (2017 status report),
// which is BGN/PCGN 1956. Letters whose reading depends on position (ا و ي
// ع ء ة ه) are handled in arabicLetter. Persian and Maghrebi letters
// (پ چ ژ گ ڤ ڨ) follow the same tables' Persian and Maghrebi extensions.
var arabicToLatin = map[rune]string{
	'ب': "b", 'ت': "t", 'ث': "th", 'ج': "j", 'ح': "h", 'خ': "kh",
	'د': "d", 'ذ': "dh", 'ر': "r", 'ز': "z", 'س': "s", 'ش': "sh",
	'ص': "s", 'ض': "d", 'ط': "t", 'ظ': "z", 'غ': "gh", 'ف': "f",
	'ق': "q", 'ك': "k", 'ل': "l", 'م': "m", 'ن': "n", 'ه': "h",
	'پ': "p", 'چ': "ch", 'ژ': "zh", 'گ': "g", 'ڤ': "v", 'ڨ': "g",
	'ڥ': "v", 'ڭ': "g",
}

func isArabicLongVowelLetter(r rune) bool { return r == 'ا' || r == 'و' || r == 'ي' }

// arabicLetter transliterates rs[i]. Arabic writes long vowels and leaves
// short ones out, so a name's Latin spelling shows vowels the Arabic does
// not; the phonetic key drops vowels for that reason. What matters here is
// telling the consonants و (w) and ي (y) from the vowels they also write
// (ū, ī): a consonant at the start of a word or next to an alef (وليد
// Walid, مروان Marwan, بيان Bayan), otherwise a vowel (محمود Mahmud, سعيد
// Said).
func arabicLetter(rs []rune, i int) string {
	r := rs[i]
	var prev, next rune
	if i > 0 {
		prev = rs[i-1]
	}
	if i+1 < len(rs) {
		next = rs[i+1]
	}
	switch r {
	case 'ا':
		return "a"
	case 'ع', 'ء':
		// ʿayn and hamza: not written in English spellings, except that a
		// name starting with one starts with a vowel (عمر Omar, علي Ali).
		if i == 0 {
			return "a"
		}
		return ""
	case 'ة':
		return "a" // ta marbuta in pause: Fatima, Aisha
	case 'و', 'ي':
		consonant, vowel := "w", "u"
		if r == 'ي' {
			consonant, vowel = "y", "i"
		}
		switch {
		case i == 0 || prev == 'ا':
			return consonant
		case next == 'ا':
			// A consonant after a consonant: the short vowel between them
			// is not written (حياة Hayat, بيان Bayan); write it, so that
			// the y stands between vowels as in the Latin spelling.
			return "a" + consonant
		}
		return vowel
	case 'ه':
		// الله at the end of a name is "Allah" (Abdullah, Abdallah): the
		// English spelling has the vowel, and the key drops the h after it.
		if i == len(rs)-1 && i >= 2 && prev == 'ل' && rs[i-2] == 'ل' {
			return "ah"
		}
		return "h"
	}
	if l, ok := arabicToLatin[r]; ok {
		return l
	}
	return "" // other Arabic-block signs: punctuation that survived, ornaments
}

// cyrillicToLatin is BGN/PCGN 1947 for Russian (the system of UK and US
// passports until 2010 and of most English-language press), with the
// Ukrainian, Belarusian and Serbian/Macedonian letters from the BGN/PCGN
// tables for those languages. Source: BGN/PCGN, "Romanization of Russian"
// (1947, as published by the UK Permanent Committee on Geographical Names,
// 2021 edition); ISO 9:1995 and GOST 7.79-2000 system B agree on all
// consonants except ж ч ш щ х ц, whose ISO 9 letters (ž č š ŝ h c) the
// normaliser either expands (caron) or the phonetic key maps to the same
// class. е and ё at the start of a word or after a vowel are "ye" (BGN/PCGN
// rule); ё is already е after normalisation.
var cyrillicToLatin = map[rune]string{
	'а': "a", 'б': "b", 'в': "v", 'г': "g", 'д': "d", 'ж': "zh",
	'з': "z", 'и': "i", 'й': "y", 'к': "k", 'л': "l", 'м': "m",
	'н': "n", 'о': "o", 'п': "p", 'р': "r", 'с': "s", 'т': "t",
	'у': "u", 'ф': "f", 'х': "kh", 'ц': "ts", 'ч': "ch", 'ш': "sh",
	'щ': "shch", 'ъ': "", 'ы': "y", 'ь': "", 'э': "e", 'ю': "yu",
	'я': "ya",
	// Ukrainian, Belarusian
	'і': "i", 'ї': "yi", 'є': "ye", 'ґ': "g", 'ў': "w",
	// Serbian, Macedonian
	'ђ': "dj", 'ј': "j", 'љ': "lj", 'њ': "nj", 'ћ': "c", 'џ': "dzh",
	'ѓ': "gj", 'ќ': "kj", 'ѕ': "dz",
}

func isCyrillicVowel(r rune) bool {
	switch r {
	case 'а', 'е', 'и', 'о', 'у', 'ы', 'э', 'ю', 'я', 'і', 'ї', 'є', 'ъ', 'ь':
		return true
	}
	return false
}

func cyrillicLetter(rs []rune, i int) string {
	r := rs[i]
	if r == 'е' {
		if i == 0 || isCyrillicVowel(rs[i-1]) {
			return "ye"
		}
		return "e"
	}
	if l, ok := cyrillicToLatin[r]; ok {
		return l
	}
	return ""
}

func isASCII(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] >= utf8.RuneSelf {
			return false
		}
	}
	return true
}
