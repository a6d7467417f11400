package main

// Human output: aligned tables that keep right-to-left text intact.
//
// Rules (docs/design.md §1):
//   - text is never reordered: cells are written in logical order and the
//     terminal's own bidi algorithm (if any) displays them;
//   - columns are aligned by display width (East Asian wide characters count
//     2, combining marks 0), not by bytes or runes;
//   - bidi controls (U+202A–U+202E, U+2066–U+2069, U+200E, U+200F, U+061C)
//     and every other control or format character in a value are shown
//     escaped as \u202e, so a crafted value cannot disguise itself; a
//     backslash is shown as \\ so an escape cannot be faked either;
//   - --json output is exact and never passes through here.

import (
	"fmt"
	"io"
	"strings"
	"unicode"
	"unicode/utf8"

	"golang.org/x/text/unicode/norm"
	"golang.org/x/text/width"
)

// ident normalises an identifier (space name, record ID, field name, bureau
// name, officer name) to NFC before it is sent or stored, so that the same
// name typed on two keyboards is the same name. Values are sent exactly.
func ident(s string) string {
	return norm.NFC.String(s)
}

// needsEscape reports whether r must be shown escaped in a table.
func needsEscape(r rune) bool {
	switch {
	case r == '\\':
		return true
	case unicode.IsControl(r): // Cc
		return true
	case unicode.Is(unicode.Cf, r): // format: bidi controls, LRM/RLM/ALM, ZW*, BOM, tags…
		return true
	case unicode.Is(unicode.Zl, r), unicode.Is(unicode.Zp, r):
		return true
	case r >= 0x202A && r <= 0x202E, r >= 0x2066 && r <= 0x2069, r == 0x200E, r == 0x200F, r == 0x061C:
		return true // already Cf; listed for the reader
	}
	return false
}

// escapeText returns s with every control, format and bidi character
// escaped (\n, \t, \r, \\, \uXXXX or \UXXXXXXXX) and invalid UTF-8 bytes
// shown as \xNN. Text that needs no escaping is returned unchanged.
func escapeText(s string) string { return escape(s, true) }

func escape(s string, backslash bool) string {
	clean := true
	for i, r := range s {
		if r == utf8.RuneError {
			if _, size := utf8.DecodeRuneInString(s[i:]); size <= 1 {
				clean = false
				break
			}
		}
		if needsEscape(r) && (backslash || r != '\\') {
			clean = false
			break
		}
	}
	if clean {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); {
		r, size := utf8.DecodeRuneInString(s[i:])
		if r == utf8.RuneError && size <= 1 {
			fmt.Fprintf(&b, `\x%02x`, s[i])
			i++
			continue
		}
		i += size
		switch {
		case r == '\\' && !backslash:
			b.WriteRune(r)
		case r == '\\':
			b.WriteString(`\\`)
		case r == '\n':
			b.WriteString(`\n`)
		case r == '\t':
			b.WriteString(`\t`)
		case r == '\r':
			b.WriteString(`\r`)
		case needsEscape(r) && r > 0xFFFF:
			fmt.Fprintf(&b, `\U%08x`, r)
		case needsEscape(r):
			fmt.Fprintf(&b, `\u%04x`, r)
		default:
			b.WriteRune(r)
		}
	}
	return b.String()
}

// escapeMessage escapes control, format and bidi characters in an error or
// hint line (a record ID or name inside it may be crafted), but leaves
// backslashes alone so paths stay readable.
func escapeMessage(s string) string { return escape(s, false) }

// runeWidth is the number of terminal columns r takes.
func runeWidth(r rune) int {
	if unicode.In(r, unicode.Mn, unicode.Me) || r == 0x200B {
		return 0
	}
	switch width.LookupRune(r).Kind() {
	case width.EastAsianWide, width.EastAsianFullwidth:
		return 2
	}
	return 1
}

// displayWidth is the number of terminal columns s takes (after escaping).
func displayWidth(s string) int {
	n := 0
	for _, r := range s {
		n += runeWidth(r)
	}
	return n
}

// table is a simple aligned table. Cells are escaped when added; the last
// column is not padded.
type table struct {
	header []string
	rows   [][]string
}

func newTable(header ...string) *table { return &table{header: header} }

// add appends a row; values are escaped for display.
func (t *table) add(cells ...string) {
	row := make([]string, len(cells))
	for i, c := range cells {
		row[i] = escapeText(c)
	}
	t.rows = append(t.rows, row)
}

func (t *table) write(w io.Writer) {
	cols := len(t.header)
	for _, r := range t.rows {
		cols = max(cols, len(r))
	}
	widths := make([]int, cols)
	measure := func(r []string) {
		for i, c := range r {
			widths[i] = max(widths[i], displayWidth(c))
		}
	}
	if len(t.header) > 0 {
		measure(t.header)
	}
	for _, r := range t.rows {
		measure(r)
	}
	line := func(r []string) {
		var b strings.Builder
		for i := 0; i < cols; i++ {
			c := ""
			if i < len(r) {
				c = r[i]
			}
			b.WriteString(c)
			if i < cols-1 {
				b.WriteString(strings.Repeat(" ", widths[i]-displayWidth(c)+2))
			}
		}
		fmt.Fprintln(w, strings.TrimRight(b.String(), " "))
	}
	if len(t.header) > 0 {
		line(t.header)
	}
	for _, r := range t.rows {
		line(r)
	}
}

// shortID is a device ID cut to 8 characters for tables (commands accept
// any unique prefix of 6 or more).
func shortID(id string) string {
	if len(id) > 8 {
		return id[:8]
	}
	return id
}

// kv prints aligned "key  value" lines; values are escaped.
func kv(w io.Writer, pairs ...string) {
	t := newTable()
	for i := 0; i+1 < len(pairs); i += 2 {
		t.rows = append(t.rows, []string{pairs[i], escapeText(pairs[i+1])})
	}
	t.write(w)
}

// orDash shows an empty cell as "-".
func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}
