package main

import (
	"bytes"
	"strings"
	"testing"

	"golang.org/x/text/unicode/norm"
)

func TestEscapeText(t *testing.T) {
	cases := []struct{ in, want string }{
		{"plain", "plain"},
		{"أمينة الحلبي", "أمينة الحلبي"},                                   // Arabic intact, not reordered
		{"Борис Петров", "Борис Петров"},                                   // Cyrillic intact
		{"Hélène Côté", "Hélène Côté"},                                     // French intact
		{"evil\u202egnp.exe", `evil\u202egnp.exe`},                         // RLO
		{"a\u202ab\u202bc\u202cd\u202de", `a\u202ab\u202bc\u202cd\u202de`}, // LRE RLE PDF LRO
		{"x\u2066y\u2067z\u2068w\u2069", `x\u2066y\u2067z\u2068w\u2069`},   // isolates
		{"\u200e\u200f\u061c", `\u200e\u200f\u061c`},                       // LRM RLM ALM
		{"zero\u200bwidth\ufeff", `zero\u200bwidth\ufeff`},                 // other format chars
		{"line\nbreak\ttab\rcr", `line\nbreak\ttab\rcr`},
		{"bell\x07nul\x00", `bell\u0007nul\u0000`},
		{"del\x7f", `del\u007f`},
		{"c1\u0085", `c1\u0085`},
		{"ls\u2028ps\u2029", `ls\u2028ps\u2029`},
		{"tag\U000E0041", `tag\U000e0041`},
		{`back\slash`, `back\\slash`}, // an escape cannot be faked
		{`fake\u202e`, `fake\\u202e`},
		{"bad\xffutf8", `bad\xffutf8`},
	}
	for _, c := range cases {
		if got := escapeText(c.in); got != c.want {
			t.Errorf("escapeText(%q) = %q, want %q", c.in, got, c.want)
		}
	}
	// Escaped output never holds a control or format character.
	for _, c := range cases {
		for _, r := range escapeText(c.in) {
			if r != '\\' && needsEscape(r) {
				t.Errorf("escapeText(%q) still holds %U", c.in, r)
			}
		}
	}
}

func TestDisplayWidth(t *testing.T) {
	cases := []struct {
		in   string
		want int
	}{
		{"abc", 3},
		{"أمينة", 5},    // Arabic letters: one column each
		{"مُحَمَّد", 4}, // harakat (combining marks) take no column
		{"Борис", 5},    // Cyrillic
		{"e\u0301", 1},  // decomposed é
		{"é", 1},        // composed
		{"北京", 4},       // East Asian wide
		{"ＡＢ", 4},       // fullwidth
		{`\u202e`, 6},   // an escape is plain ASCII
		{"", 0},
	}
	for _, c := range cases {
		if got := displayWidth(c.in); got != c.want {
			t.Errorf("displayWidth(%q) = %d, want %d", c.in, got, c.want)
		}
	}
}

func TestTableAlignsByDisplayWidth(t *testing.T) {
	tb := newTable("FIELD", "VALUE", "OFFICER")
	tb.add("name", "أمينة الحلبي", "Борис")
	tb.add("village", "حلب", "Amina")
	tb.add("alias", "北京", "x")
	tb.add("trap", "a\u202eb", "y")
	var b bytes.Buffer
	tb.write(&b)
	lines := strings.Split(strings.TrimRight(b.String(), "\n"), "\n")
	if len(lines) != 5 {
		t.Fatalf("got %d lines:\n%s", len(lines), b.String())
	}
	// The third column starts at the same display column on every line.
	last := []string{"OFFICER", "Борис", "Amina", "x", "y"}
	want := displayWidth("VALUE") // header of the widest column…
	want = max(want, displayWidth("أمينة الحلبي"), displayWidth(`a\u202eb`)) + 2 + displayWidth("village") + 2
	for i, l := range lines {
		idx := strings.LastIndex(l, last[i])
		if got := displayWidth(l[:idx]); idx < 0 || got != want {
			t.Errorf("line %d: last column at %d, want %d:\n%s", i, got, want, b.String())
		}
	}
	// Arabic text is written intact (same logical order), the override escaped.
	if !strings.Contains(b.String(), "أمينة الحلبي") || !strings.Contains(b.String(), `a\u202eb`) {
		t.Errorf("table changed the text:\n%s", b.String())
	}
	if strings.ContainsRune(b.String(), '\u202e') {
		t.Errorf("table holds a raw RLO:\n%s", b.String())
	}
}

func TestIdentNFC(t *testing.T) {
	decomposed := "Mu\u0308ller" // u + combining diaeresis
	composed := "Müller"
	if ident(decomposed) != composed {
		t.Errorf("ident(%q) = %q, want %q", decomposed, ident(decomposed), composed)
	}
	if ident(composed) != composed {
		t.Errorf("ident changed an NFC string")
	}
	// Arabic with harakat in non-canonical order is put in canonical order.
	noncanon := "\u0645\u0651\u064e" // meem + shadda + fatha
	if got := ident(noncanon); !norm.NFC.IsNormalString(got) {
		t.Errorf("ident(%q) = %q is not NFC", noncanon, got)
	}
	// Field names are normalised, values are not.
	fs, err := parseFields([]string{decomposed + "=" + decomposed})
	if err != nil {
		t.Fatal(err)
	}
	if fs[0].Name != composed || fs[0].Value != decomposed {
		t.Errorf("parseFields: name %q value %q; want NFC name, exact value", fs[0].Name, fs[0].Value)
	}
}

func TestParseFields(t *testing.T) {
	fs, err := parseFields([]string{"a=1", "b==x", "c=", "d=@@lit"})
	if err != nil {
		t.Fatal(err)
	}
	want := []string{"1", "=x", "", "@lit"}
	for i, f := range fs {
		if f.Value != want[i] || f.ValueBase64 != "" {
			t.Errorf("field %s = %q, want %q", f.Name, f.Value, want[i])
		}
	}
	for _, bad := range [][]string{{"novalue"}, {"=x"}, {"a=1", "a=2"}, {"a=@"}} {
		if _, err := parseFields(bad); err == nil {
			t.Errorf("parseFields(%q) accepted", bad)
		}
	}
}

func TestReorderArgs(t *testing.T) {
	app := newApp(nil, nil, nil)
	cases := []struct{ in, want string }{
		{"fieldsync record get S R --json", "fieldsync record get --json -- S R"},
		{"fieldsync --json record get S R", "fieldsync --json record get -- S R"},
		{"fieldsync resolve S R F --pick 2 --reason why", "fieldsync resolve --pick 2 --reason why -- S R F"},
		{"fieldsync resolve --value -5 S R F", "fieldsync resolve --value -5 -- S R F"},
		{"fieldsync note add S R -- -dash", "fieldsync note add -- S R -dash"},
		{"fieldsync --data-dir D trust list", "fieldsync --data-dir D trust list"},
		{"fieldsync space create --release-to KAZ NAME", "fieldsync space create --release-to KAZ -- NAME"},
	}
	for _, c := range cases {
		got := strings.Join(reorderArgs(app, strings.Fields(c.in)), " ")
		if got != c.want {
			t.Errorf("reorderArgs(%s) = %s, want %s", c.in, got, c.want)
		}
	}
}

func TestEscapeMessage(t *testing.T) {
	cases := []struct{ in, want string }{
		{`open C:\data\keystore`, `open C:\data\keystore`},
		{"no record \"r\u202e1\"", `no record "r\u202e1"`},
		{"two\nlines", `two\nlines`},
	}
	for _, c := range cases {
		if got := escapeMessage(c.in); got != c.want {
			t.Errorf("escapeMessage(%q) = %q, want %q", c.in, got, c.want)
		}
	}
}
