package w1

import (
	"testing"
	"unicode/utf8"
)

func TestMulberry32(t *testing.T) {
	// Reference outputs of JavaScript's mulberry32(42) (first three calls,
	// times 2^32).
	m := NewMulberry32(42)
	got := []uint32{m.Uint32(), m.Uint32(), m.Uint32()}
	want := []uint32{2581720956, 1925393290, 3661312704}
	for i := range want {
		if got[i] != want[i] {
			t.Fatalf("output %d = %d, want %d", i, got[i], want[i])
		}
	}
}

func TestGenerateS(t *testing.T) {
	w := Generate(SizeS)
	if len(w.Conflicts) < 1800 || len(w.Conflicts) > 2000 {
		t.Fatalf("%d expected conflicts, want about 1,900", len(w.Conflicts))
	}
	t.Logf("expected conflicts at S: %d", len(w.Conflicts))
	total := 0
	for _, r := range w.Initial {
		for _, v := range r {
			if !utf8.ValidString(v) {
				t.Fatal("invalid UTF-8")
			}
			total += len(v)
		}
	}
	avg := float64(total) / float64(len(w.Initial)*8)
	if avg < 45 || avg > 70 {
		t.Fatalf("average value %.1f bytes, want about 57", avg)
	}
	t.Logf("example value %q, average %.1f bytes", w.Initial[0][0], avg)
	if w2 := Generate(SizeS); w2.B[123] != w.B[123] {
		t.Fatal("not deterministic")
	}
}
