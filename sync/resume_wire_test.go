package sync

import (
	"errors"
	"testing"
)

// TestEnvAtAndPartialBounds: every length and offset a peer sends in ENVAT
// and PARTIAL frames is checked before use; out of bounds is malformed (an
// error that ends the stream), never a panic.
func TestEnvAtAndPartialBounds(t *testing.T) {
	head := func(total, offset uint32, seq uint64, extra int) []byte {
		h := envAtHead{Partial: Partial{Seq: seq, Total: total}, Offset: offset}
		return append(h.encode(), make([]byte, extra)...)
	}
	good := head(10, 4, 1, 6)
	if h, rest, err := decodeEnvAt(good); err != nil || h.Total != 10 || h.Offset != 4 || len(rest) != 6 {
		t.Fatalf("good ENVAT: %+v %d %v", h, len(rest), err)
	}
	for name, p := range map[string][]byte{
		"offset at total":      head(10, 10, 1, 0),
		"offset beyond total":  head(10, 1<<31, 1, 0),
		"bytes beyond total":   head(10, 4, 1, 7),
		"total over the limit": head(MaxEnvelope+1, 0, 1, 0),
		"empty envelope":       head(0, 0, 1, 0),
		"seq 0":                head(10, 0, 0, 0),
		"truncated header":     good[:envAtHeaderSize-1],
		"nothing":              nil,
	} {
		if _, _, err := decodeEnvAt(p); !errors.Is(err, ErrMalformed) {
			t.Errorf("%s: %v, want malformed", name, err)
		}
	}
	entry := func(seq uint64, total, have uint32) []byte {
		return encodePartials([]Partial{{Seq: seq, Total: total, Have: have}})
	}
	if ps, err := decodePartials(append(entry(1, 10, 4), entry(2, 20, 19)...)); err != nil || len(ps) != 2 || ps[1].Have != 19 {
		t.Fatalf("good PARTIAL: %+v %v", ps, err)
	}
	for name, p := range map[string][]byte{
		"have equals total": entry(1, 10, 10),
		"have beyond total": entry(1, 10, 1<<31),
		"have zero":         entry(1, 10, 0),
		"total over limit":  entry(1, MaxEnvelope+1, 5),
		"seq 0":             entry(0, 10, 5),
		"torn entry":        entry(1, 10, 5)[:partialEntrySize-1],
		"trailing bytes":    append(entry(1, 10, 5), 1),
	} {
		if _, err := decodePartials(p); !errors.Is(err, ErrMalformed) {
			t.Errorf("%s: %v, want malformed", name, err)
		}
	}
}
