package find

import (
	"strings"
	"sync"
	"unicode"
	"unicode/utf8"

	"golang.org/x/text/cases"
	"golang.org/x/text/unicode/norm"
)

// foldPool holds case folders: a cases.Caser keeps state between calls and
// must not be shared between goroutines.
var foldPool = sync.Pool{New: func() any { c := cases.Fold(); return &c }}

func foldCase(s string) string {
	c := foldPool.Get().(*cases.Caser)
	out := c.String(s)
	foldPool.Put(c)
	return out
}

// Normalize returns s as the index compares it: NFKC, case-folded, Latin
// diacritics removed, Arabic letter forms unified (أ إ آ ٱ → ا, ة → ه,
// ى → ي, ؤ → و, ئ → ي, Persian ک ی → ك ي), tashkeel and tatweel removed,
// Cyrillic ё → е (й is kept), apostrophes and ayn/hamza signs (ʿ ʾ ’)
// dropped inside a word, and every other non-letter, non-digit run turned
// into a single space. The result is trimmed. Normalize is idempotent.
func Normalize(s string) string {
	return clean(s, false)
}

// Words returns the words of Normalize(s).
func Words(s string) []string {
	return strings.Fields(Normalize(s))
}

// clean is Normalize; with forKey it keeps the information the
// transliteration needs and Normalize throws away: ة stays ة (read "a", not
// "h") and the caron letters of ISO 9 and Slavic Latin (č š ž) become the
// English digraphs ch sh zh instead of losing their caron, and ç becomes s. Neither changes
// where words split, so both variants have the same words in the same order.
func clean(s string, forKey bool) string {
	return cleanAgain(cleanPrepared(prepare(s), forKey), forKey)
}

// cleanBoth is clean(s, false) and clean(s, true), sharing the Unicode
// passes (NFKC, folding, NFD), which are most of the cost.
func cleanBoth(s string) (plain, forKey string) {
	p := prepare(s)
	return cleanAgain(cleanPrepared(p, false), false), cleanAgain(cleanPrepared(p, true), true)
}

// cleanAgain is the second pass of clean. Case folding can take an NFKC
// string out of NFKC for a few compatibility characters; one more pass
// reaches the fixed point, which keeps Normalize idempotent (FuzzNormalize
// checks it). An output of ASCII letters, digits and single spaces (what
// cleanOnce writes for ASCII) is its own fixed point: no pass needed.
func cleanAgain(out string, forKey bool) string {
	if isASCII(out) {
		return out
	}
	if again := cleanOnce(out, forKey); again != out {
		return again
	}
	return out
}

func cleanOnce(s string, forKey bool) string { return cleanPrepared(prepare(s), forKey) }

// prepare is the Unicode part of cleanOnce: valid UTF-8, NFKC, case
// folding, NFD.
func prepare(s string) string {
	if !utf8.ValidString(s) {
		s = strings.ToValidUTF8(s, " ")
	}
	return norm.NFD.String(foldCase(norm.NFKC.String(s)))
}

// cleanPrepared is the rest of cleanOnce, on prepare's output.
func cleanPrepared(s string, forKey bool) string {
	var b strings.Builder
	b.Grow(len(s))
	pendingSpace := false
	var last rune // last rune written, for й (и + combining breve)
	write := func(r rune) {
		if pendingSpace && b.Len() > 0 {
			b.WriteByte(' ')
		}
		pendingSpace = false
		b.WriteRune(r)
		last = r
	}
	for _, r := range s {
		if r < utf8.RuneSelf {
			switch {
			case 'a' <= r && r <= 'z', '0' <= r && r <= '9':
				write(r)
			case r == '\'' || r == '`':
				// inside a word: O'Brien, Sa'id
			default:
				pendingSpace = true
			}
			continue
		}
		if unicode.Is(unicode.Mn, r) {
			// č š ž: in ISO 9 (Cyrillic) and the Slavic Latin alphabets the
			// caron marks the sound English writes as a digraph; for the
			// phonetic key č is ch, not c.
			if forKey && r == 0x030C && (last == 'c' || last == 's' || last == 'z') {
				write('h')
				continue
			}
			// ç is s (French Fayçal, François), not the k a bare c before a
			// would be.
			if forKey && r == 0x0327 && last == 'c' {
				str := b.String()
				b.Reset()
				b.WriteString(str[:len(str)-1])
				b.WriteByte('s')
				last = 's'
				continue
			}
			// й is a letter of its own in Russian, not и with an accent.
			if r == 0x0306 && (last == 'и' || last == 'у') {
				s := b.String()
				b.Reset()
				b.WriteString(s[:len(s)-utf8.RuneLen(last)])
				if last == 'и' {
					last = 'й'
				} else {
					last = 'ў' // Belarusian short u
				}
				b.WriteRune(last)
			}
			continue
		}
		if m, ok := letterMap[r]; ok {
			if forKey && r == 'ة' {
				m = "ة"
			}
			for _, d := range m {
				write(d)
			}
			continue
		}
		switch {
		case isWordJoiner(r):
		case r >= 0x0660 && r <= 0x0669: // Arabic-Indic digits
			write('0' + r - 0x0660)
		case r >= 0x06F0 && r <= 0x06F9: // Extended Arabic-Indic digits
			write('0' + r - 0x06F0)
		case unicode.IsLetter(r) || unicode.IsDigit(r):
			write(r)
		default:
			pendingSpace = true
		}
	}
	// NFD split Hangul and a few other scripts into base letters that are
	// not marks; compose them again.
	return norm.NFC.String(b.String())
}

// isWordJoiner reports runes dropped without splitting the word: the signs
// for ayn and hamza in scientific transliteration (ʿ ʾ), typographic
// apostrophes, the Arabic tatweel (ـ, a stretch, not a letter) and
// invisible joiners.
func isWordJoiner(r rune) bool {
	switch r {
	case 0x02BE, 0x02BF, 0x02BB, 0x02BC, 0x02B9, 0x02BA, // ʾ ʿ ʻ ʼ ʹ ʺ
		0x2018, 0x2019, 0x00B4, 0x02C8, // ‘ ’ ´ ˈ
		0x0640,                         // Arabic tatweel
		0x200C, 0x200D, 0x200E, 0x200F, // ZWNJ, ZWJ, LRM, RLM
		0x00AD: // soft hyphen
		return true
	}
	return false
}

// letterMap unifies letters that NFD does not decompose. Arabic forms
// follow the usual search normalisation of Arabic text (the letter
// variants a writer picks between freely); the Latin letters are those
// without a Unicode decomposition that people type for a plain letter.
var letterMap = map[rune]string{
	// Arabic. أ إ آ ؤ ئ decompose under NFD (hamza and madda are marks);
	// these do not.
	'ٱ': "ا", // alef wasla
	'ة': "ه", // ta marbuta
	'ى': "ي", // alef maqsura
	'ی': "ي", // Persian yeh
	'ې': "ي", // Pashto/Uyghur yeh
	'ے': "ي", // Urdu yeh barree
	'ک': "ك", // Persian keheh
	'ڪ': "ك", // swash kaf
	'ھ': "ه", // Urdu heh doachashmee
	'ە': "ه", // Kurdish ae
	'ۀ': "ه",
	'ۃ': "ه",
	'ٲ': "ا", 'ٳ': "ا", 'ٵ': "ا", // alef with wavy hamza and variants
	'ٶ': "و", 'ٸ': "ي",
	// Latin letters without a decomposition.
	'ø': "o", 'ł': "l", 'đ': "d", 'ð': "d", 'þ': "th", 'æ': "ae", 'œ': "oe",
	'ı': "i", 'ħ': "h", 'ŧ': "t", 'ŋ': "n", 'ĸ': "k", 'ƀ': "b", 'ɨ': "i",
	'ß': "ss", // folding already makes ss; kept for simple-fold inputs
}
