package find

import (
	"strings"
	"unicode/utf8"
)

// PhoneticKey returns the phonetic key of one word in any script: the word
// is normalised and transliterated to Latin, and the Latin reduced to a
// consonant skeleton (see latinKey). محمد, Mohammed, Muhammad, Mohamad and
// Мухаммед all have the key "mhmd". A text of several words gets the keys
// of its words joined by spaces.
func PhoneticKey(s string) string {
	words := strings.Fields(clean(s, true))
	for i, w := range words {
		words[i] = latinKey(transliterateWord(w), isASCII(w))
	}
	return strings.Join(words, " ")
}

// latinKey reduces a lowercase Latin word (the output of transliterateWord)
// to its consonant skeleton, written with one letter per class. Each class
// is the set of spellings that the conventions in docs/find.md use for one
// sound of a name, across English, French, German and scholarly
// transliteration of Arabic and Russian:
//
//	a  the word starts with a vowel (Omar, Umar, عمر; Ali, علي)
//	b  b p              (Arabic has no p: Philippe is فيليب)
//	c  ts tz            (ц: Tsvetaeva, Tzvetaeva)
//	d  d dh             (ذ ض: Dhiya, Diya)
//	f  f v w ph         (Russian writes و as в: Walid, Валид; German w for в)
//	g  g gh             (غ: Ghassan, Гассан)
//	h  h kh             (ح ه خ are all х in Russian: Хасан, Халид)
//	j  j y dj dzh zh    (y at the start or between vowels; ج: Jamal, Djamel, Джамал; й ю я: Yusuf, Юсуф; ж: Zhukov, Joukov)
//	k  k q ck c(a,o,u) qu
//	s  s c(e,i,y)
//	t  t th             (ث: Uthman; English th)
//	x  sh ch sch tch tsch shch (ش ш ч щ: Shadi, Chadi; Chekhov, Tchekhov, Tschechow)
//	z  z
//	l m n r as themselves
//
// Vowels are dropped (Arabic does not write short ones), repeated classes
// collapse (Mohammed, Mohamed), and a final h goes (Fatimah, Fatima, فاطمة;
// Abdullah, Абдулла). Runes outside a–z (other scripts, digits) are kept
// as their own class. fromLatin says the word was typed in Latin letters:
// two rules only hold for such spellings (a skeleton transliterated from
// Arabic has consonants next to each other by design).
func latinKey(w string, fromLatin bool) string {
	var out []byte
	emit := func(class byte) {
		if n := len(out); n > 0 && out[n-1] == class {
			return
		}
		out = append(out, class)
	}
	has := func(i int, prefix string) bool { return strings.HasPrefix(w[i:], prefix) }
	at := func(i int) byte {
		if i >= 0 && i < len(w) {
			return w[i]
		}
		return 0
	}
	isVowel := func(c byte) bool {
		return c == 'a' || c == 'e' || c == 'i' || c == 'o' || c == 'u'
	}
	for i := 0; i < len(w); {
		c := w[i]
		if c >= utf8.RuneSelf {
			_, size := utf8.DecodeRuneInString(w[i:])
			out = append(out, w[i:i+size]...)
			i += size
			continue
		}
		switch {
		case has(i, "ou") && isVowel(at(i+2)) && (i == 0 || isVowel(at(i-1))):
			// French ou before a vowel is w: Oualid, Naoual, Merouane (but
			// Mouad is mu-adh).
			emit('f')
			i += 2
		case i == 0 && c == 'i' && (at(1) == 'a' || at(1) == 'o' || at(1) == 'u'):
			emit('j') // French ia io iou for я ё ю: Iouri, Iakov
			i++
		case isVowel(c):
			if i == 0 {
				emit('a')
			}
			i++
		case c == '\'':
			i++ // separator from transliterateWord
		case c == 'y':
			// y is a consonant at the start and between vowels (Yusuf,
			// Ayoub, Ayyub), a vowel elsewhere (Sergey, Dmitriy, Mariya).
			end := i + 1
			for at(end) == 'y' {
				end++
			}
			if i == 0 || (isVowel(at(i-1)) && isVowel(at(end))) {
				emit('j')
			}
			i = end
		case fromLatin && c == 'j' && i > 0 && !isVowel(at(i-1)) && at(i-1) != 'd' && isVowel(at(i+1)):
			// German and Slavic j after a consonant is the y of Tatyana,
			// Ilya: Tatjana, Ilja, Darja.
			i++
		case fromLatin && c == 'h' && i > 0 && !isVowel(at(i-1)) && at(i-1) != 'y':
			i++ // h after a consonant that forms no digraph is silent: John, Rhys
		case has(i, "tsch"), has(i, "shch"):
			emit('x')
			i += 4
		case has(i, "dzh"):
			emit('j')
			i += 3
		case has(i, "sch"), has(i, "tch"):
			emit('x')
			i += 3
		case has(i, "sh"), has(i, "ch"):
			emit('x')
			i += 2
		case has(i, "zh"), has(i, "dj"):
			emit('j')
			i += 2
		case has(i, "kh"):
			emit('h')
			i += 2
		case has(i, "gh"):
			emit('g')
			i += 2
		case has(i, "th"):
			emit('t')
			i += 2
		case has(i, "dh"):
			emit('d')
			i += 2
		case has(i, "ph"):
			emit('f')
			i += 2
		case has(i, "tsh"):
			emit('x') // Arabic writes ch as تش: تشارلز Charles
			i += 3
		case has(i, "ts"), has(i, "tz"):
			emit('c')
			i += 2
		case has(i, "ck"):
			emit('k')
			i += 2
		case has(i, "qu") && isVowel(at(i+2)):
			emit('k') // French and Spanish qu is k: Jacques
			i += 2
		default:
			switch c {
			case 'c':
				if n := at(i + 1); n == 'e' || n == 'i' || n == 'y' {
					emit('s')
				} else {
					emit('k')
				}
			case 'q':
				emit('k')
			case 'x':
				emit('k')
				emit('s')
			case 'p':
				emit('b')
			case 'v', 'w':
				emit('f')
			default:
				emit(c) // b d f g h j k l m n r s t z and digits
			}
			i++
		}
	}
	if n := len(out); n > 1 && out[n-1] == 'h' {
		out = out[:n-1]
	}
	return string(out)
}
