package find

import (
	"slices"
	"strings"
	"testing"
	"unicode/utf8"
)

func TestNormalizeArabic(t *testing.T) {
	for _, c := range []struct{ rule, in, want string }{
		{"alef with hamza above", "أحمد", "احمد"},
		{"alef with hamza below", "إبراهيم", "ابراهيم"},
		{"alef with madda", "آمنة", "امنه"},
		{"alef wasla", "ٱلله", "الله"},
		{"ta marbuta", "فاطمة", "فاطمه"},
		{"alef maqsura", "مصطفى", "مصطفي"},
		{"waw with hamza", "فؤاد", "فواد"},
		{"yeh with hamza", "وائل", "وايل"},
		{"tashkeel", "مُحَمَّدٌ", "محمد"},
		{"superscript alef", "رحمٰن", "رحمن"},
		{"tatweel", "محـــمد", "محمد"},
		{"Persian keheh and yeh", "کریم", "كريم"},
		{"Arabic-Indic digits", "٢٠٢٦", "2026"},
		{"words", "عبد  الله،بن سالم", "عبد الله بن سالم"},
	} {
		if got := Normalize(c.in); got != c.want {
			t.Errorf("%s: Normalize(%q) = %q, want %q", c.rule, c.in, got, c.want)
		}
	}
}

func TestNormalizeLatin(t *testing.T) {
	for _, c := range []struct{ in, want string }{
		{"Saïd", "said"},
		{"François Lefèvre", "francois lefevre"},
		{"Dvořák", "dvorak"},
		{"Łukasz Øster", "lukasz oster"},
		{"Straße", "strasse"},
		{"Æsa Œuvre", "aesa oeuvre"},
		{"Đorđe", "dorde"},
		{"KARIM", "karim"},
		{"ﬁrst", "first"}, // NFKC ligature
		{"O'Brien", "obrien"},
		{"Sa‘īd ʿAbd al-Raḥmān", "said abd al rahman"},
		{"Mohammed bin Salem al-Hassan", "mohammed bin salem al hassan"},
		{"  --  ", ""},
	} {
		if got := Normalize(c.in); got != c.want {
			t.Errorf("Normalize(%q) = %q, want %q", c.in, got, c.want)
		}
	}
}

func TestNormalizeCyrillic(t *testing.T) {
	for _, c := range []struct{ in, want string }{
		{"Фёдор", "федор"},
		{"ЁЛКИН", "елкин"},
		{"Андрей", "андрей"}, // й is kept, not и
		{"ЙОЖЕФ", "йожеф"},
		{"Хрущёв", "хрущев"},
		{"Їжак", "іжак"},
	} {
		if got := Normalize(c.in); got != c.want {
			t.Errorf("Normalize(%q) = %q, want %q", c.in, got, c.want)
		}
	}
}

func TestWords(t *testing.T) {
	got := Words("Abd al-Aziz ibn Saud")
	want := []string{"abd", "al", "aziz", "ibn", "saud"}
	if !slices.Equal(got, want) {
		t.Errorf("Words = %q, want %q", got, want)
	}
}

func TestTransliterate(t *testing.T) {
	for _, c := range []struct{ in, want string }{
		{"محمد", "mhmd"},
		{"فاطمة", "fatma"},        // ta marbuta is a
		{"عمر", "amr"},            // initial ayn is a vowel
		{"سعيد", "sid"},           // medial ayn dropped, ي a vowel
		{"وليد", "wlid"},          // initial و is w
		{"مروان", "mrawan"},       // و before alef is w (and the unwritten vowel before it)
		{"حياة", "hayaa"},         // consonant y before alef gets its vowel
		{"عبد الله", "abd allah"}, // Allah
		{"زهير", "z'hir"},         // z-h, not zh
		{"Мухаммед", "mukhammed"},
		{"Евгений", "yevgeniy"}, // initial е is ye (BGN/PCGN)
		{"Андреев", "andreyev"}, // е after a vowel is ye
		{"Щукин", "shchukin"},
		{"Цой", "tsoy"},
		{"Šostakovič", "shostakovich"}, // ISO 9 carons become digraphs
		{"Fayçal", "faysal"},
		{"Mohammed", "mohammed"},
	} {
		if got := Transliterate(c.in); got != c.want {
			t.Errorf("Transliterate(%q) = %q, want %q", c.in, got, c.want)
		}
	}
}

func TestPhoneticKeySameName(t *testing.T) {
	for _, group := range [][]string{
		{"محمد", "Mohammed", "Muhammad", "Mohamad", "Mohamed", "Мухаммед"},
		{"أحمد", "Ahmed", "Ahmad", "Ахмед"},
		{"عبدالله", "Abdullah", "Abdallah", "Абдулла"},
		{"فاطمة", "Fatima", "Fatimah", "Фатима"},
		{"يوسف", "Youssef", "Yusuf", "Юсуф"},
		{"وليد", "Walid", "Oualid", "Валид"},
		{"مروان", "Marwan", "Марван", "Marwane"},
		{"أيوب", "Ayoub", "Ayyub", "Аюб"},
		{"شادي", "Shadi", "Chadi", "Шади"},
		{"جمال", "Jamal", "Djamel", "Джамаль"},
		{"Шостакович", "Shostakovich", "Chostakovitch", "Schostakowitsch", "Šostakovič"},
		{"Жуков", "Zhukov", "Joukov"},
		{"Юрий", "Yuri", "Iouri"},
		{"Татьяна", "Tatyana", "Tatjana"},
		{"Richard", "ريتشارد", "Ричард"},
	} {
		want := PhoneticKey(group[0])
		for _, s := range group[1:] {
			if got := PhoneticKey(s); got != want {
				t.Errorf("PhoneticKey(%q) = %q, want %q as for %q", s, got, want, group[0])
			}
		}
	}
}

func TestPhoneticKeyDifferentNames(t *testing.T) {
	for _, pair := range [][2]string{
		{"Mohammed", "Ahmed"},
		{"Omar", "Ali"},
		{"Karim", "Kamal"},
		{"Ivan", "Igor"},
		{"Said", "Saad el-Din"},
	} {
		if a, b := PhoneticKey(pair[0]), PhoneticKey(pair[1]); a == b {
			t.Errorf("%q and %q have the same key %q", pair[0], pair[1], a)
		}
	}
}

func FuzzNormalize(f *testing.F) {
	for _, s := range []string{"محمد", "Mohammed bin Salem al-Hassan", "Мухаммед", "Saïd", "ﬁ", "ǅ", "\xff\xfe", "И\u0306", "ß", "ـ", "ᾈ", "ΐ", "가각"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		n := Normalize(s)
		if !utf8.ValidString(n) {
			t.Fatalf("Normalize(%q) = %q: invalid UTF-8", s, n)
		}
		if again := Normalize(n); again != n {
			t.Fatalf("Normalize not idempotent: %q → %q → %q", s, n, again)
		}
		if strings.HasPrefix(n, " ") || strings.HasSuffix(n, " ") || strings.Contains(n, "  ") {
			t.Fatalf("Normalize(%q) = %q: stray spaces", s, n)
		}
		// Transliteration and keys must cope with anything Normalize does.
		if tr := Transliterate(s); !utf8.ValidString(tr) {
			t.Fatalf("Transliterate(%q) = %q: invalid UTF-8", s, tr)
		}
		PhoneticKey(s)
		Terms(s)
		Similarity(s, s)
	})
}
