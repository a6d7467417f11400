package w1

import (
	"fmt"
	"slices"
	"strings"
	"unicode/utf16"
)

// Size is a W1 size: records, and updates per side.
type Size struct {
	Name    string
	Records int
	Updates int
}

// The sizes of BENCH.md.
var (
	SizeS = Size{Name: "S", Records: 10_000, Updates: 20_000}
	SizeL = Size{Name: "L", Records: 100_000, Updates: 200_000}
)

// SizeByName returns SizeS or SizeL ("s"/"l" accepted), or an error.
func SizeByName(name string) (Size, error) {
	switch strings.ToUpper(name) {
	case "", "S":
		return SizeS, nil
	case "L":
		return SizeL, nil
	}
	return Size{}, fmt.Errorf("unknown W1 size %q (want S or L)", name)
}

// Fields are the 8 register fields every record gets.
var Fields = [8]string{"given_name", "family_name", "village", "district", "landmark", "contact", "status_note", "visit_note"}

// Mulberry32 is the reference PRNG (the common JavaScript mulberry32).
type Mulberry32 struct{ state uint32 }

// NewMulberry32 seeds the generator.
func NewMulberry32(seed uint32) *Mulberry32 { return &Mulberry32{state: seed} }

// Uint32 returns the next 32-bit output.
func (m *Mulberry32) Uint32() uint32 {
	m.state += 0x6D2B79F5
	t := m.state
	t = (t ^ t>>15) * (t | 1)
	t ^= t + (t^t>>7)*(t|61)
	return t ^ t>>14
}

// Float returns the next output in [0, 1), as JavaScript's mulberry32 does.
func (m *Mulberry32) Float() float64 { return float64(m.Uint32()) / 4294967296 }

// Intn returns floor(Float() * n).
func (m *Mulberry32) Intn(n int) int { return int(m.Float() * float64(n)) }

// VocabSize is the number of words in each of the two lists.
const VocabSize = 2048

// Vocabulary returns the two lists of pseudo-words (Arabic, Latin). They
// are built from syllables by their own mulberry32 stream (seed 7), so that
// the workload's stream (seed 42) is exactly BENCH.md's. Words are unique
// within a list and 2–4 syllables long.
func Vocabulary() (arabic, latin []string) {
	rng := NewMulberry32(7)
	arCons := []rune("بتثجحخدذرزسشصضطظعغفقكلمنهوي")
	arVow := []string{"ا", "و", "ي", "ة", "ر", "ن"}
	laCons := []string{"b", "c", "d", "f", "g", "h", "k", "l", "m", "n", "p", "r", "s", "t", "v", "z", "j", "w"}
	laVow := []string{"a", "e", "i", "o", "u", "y"}
	build := func(syl func() string) []string {
		seen := map[string]bool{}
		var out []string
		for len(out) < VocabSize {
			n := 2 + rng.Intn(3)
			var b strings.Builder
			for i := 0; i < n; i++ {
				b.WriteString(syl())
			}
			w := b.String()
			if !seen[w] {
				seen[w] = true
				out = append(out, w)
			}
		}
		return out
	}
	arabic = build(func() string {
		return string(arCons[rng.Intn(len(arCons))]) + arVow[rng.Intn(len(arVow))]
	})
	latin = build(func() string {
		return laCons[rng.Intn(len(laCons))] + laVow[rng.Intn(len(laVow))]
	})
	return arabic, latin
}

// Pick is one update: a record index, a field index and a value.
type Pick struct {
	Record int
	Field  int
	Value  string
}

// Workload is the generated W1 data.
type Workload struct {
	Size    Size
	Initial [][8]string // per record, per field
	A, B    []Pick      // the offline updates of each side, in order
	// Conflicts lists the (record, field) pairs both sides updated, with
	// each side's last value there: these must show as conflicts.
	Conflicts []Conflict
}

// Conflict is one expected conflict.
type Conflict struct {
	Record, Field  int
	ValueA, ValueB string
}

// RecordID returns "r000000"-style record IDs.
func RecordID(i int) string { return fmt.Sprintf("r%06d", i) }

type valueGen struct {
	rng           *Mulberry32
	arabic, latin []string
	buf           []uint16
}

// value appends words (one draw for the list, one for the word) until at
// least 34 UTF-16 units, cuts to 34, then appends " #" and a 4-digit number.
func (g *valueGen) value() string {
	g.buf = g.buf[:0]
	for len(g.buf) < 34 {
		if len(g.buf) > 0 {
			g.buf = append(g.buf, ' ')
		}
		list := g.latin
		if g.rng.Float() < 0.5 {
			list = g.arabic
		}
		g.buf = append(g.buf, utf16.Encode([]rune(list[g.rng.Intn(len(list))]))...)
	}
	s := string(utf16.Decode(g.buf[:34]))
	return fmt.Sprintf("%s #%04d", s, g.rng.Intn(10000))
}

// Generate builds the workload of the given size from mulberry32(42):
// initial values record by record, field by field; then A's U picks
// (record, field, value); then B's U picks (one draw for "conflict?" with
// probability 0.10, then an index into A's picks, or fresh (record, field)
// picks until one A did not touch, then the value).
func Generate(size Size) *Workload {
	g := NewGenerator(size)
	w := g.Initial()
	g.Updates(w)
	return w
}

// Generator draws the workload in two stages, from the same stream as
// Generate: Initial, then Updates. A run can so drop the initial values
// before the updates exist.
type Generator struct {
	size Size
	g    *valueGen
}

// NewGenerator returns a generator at the start of the stream.
func NewGenerator(size Size) *Generator {
	arabic, latin := Vocabulary()
	return &Generator{size: size, g: &valueGen{rng: NewMulberry32(42), arabic: arabic, latin: latin}}
}

// Initial draws the initial values (first in the stream).
func (gen *Generator) Initial() *Workload {
	w := &Workload{Size: gen.size, Initial: make([][8]string, gen.size.Records)}
	for r := range w.Initial {
		for f := range Fields {
			w.Initial[r][f] = gen.g.value()
		}
	}
	return w
}

// Updates draws A's and B's picks and the expected conflicts into w (after
// Initial).
func (gen *Generator) Updates(w *Workload) {
	g, size := gen.g, gen.size
	rng := g.rng
	touchedA := make(map[int]int, size.Updates) // pair -> index of A's last pick
	w.A = make([]Pick, size.Updates)
	for i := range w.A {
		r := rng.Intn(size.Records)
		f := rng.Intn(len(Fields))
		w.A[i] = Pick{Record: r, Field: f, Value: g.value()}
		touchedA[r*8+f] = i
	}
	lastB := make(map[int]int)
	w.B = make([]Pick, size.Updates)
	for i := range w.B {
		var r, f int
		if rng.Float() < 0.10 {
			p := w.A[rng.Intn(len(w.A))]
			r, f = p.Record, p.Field
		} else {
			for {
				r = rng.Intn(size.Records)
				f = rng.Intn(len(Fields))
				if _, ok := touchedA[r*8+f]; !ok {
					break
				}
			}
		}
		w.B[i] = Pick{Record: r, Field: f, Value: g.value()}
		lastB[r*8+f] = i
	}
	for pair, bi := range lastB {
		if ai, ok := touchedA[pair]; ok {
			w.Conflicts = append(w.Conflicts, Conflict{Record: pair / 8, Field: pair % 8, ValueA: w.A[ai].Value, ValueB: w.B[bi].Value})
		}
	}
	sortConflicts(w.Conflicts)
}

func sortConflicts(c []Conflict) {
	slices.SortFunc(c, func(a, b Conflict) int {
		if a.Record != b.Record {
			return a.Record - b.Record
		}
		return a.Field - b.Field
	})
}
