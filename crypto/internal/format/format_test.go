package format

import (
	"errors"
	"testing"
)

func TestReader(t *testing.T) {
	b := AppendStr16(AppendU64(AppendU32(AppendU16([]byte{7}, 0x0102), 3), 4), "zoë")
	r := NewReader(b, "test")
	if r.U8() != 7 || r.U16() != 0x0102 || r.U32() != 3 || r.U64() != 4 || r.Str(true, 10) != "zoë" || r.Done() != nil {
		t.Fatal("round trip")
	}
	// Every prefix fails with ErrTruncated, never panics.
	for n := range len(b) {
		r := NewReader(b[:n], "test")
		r.U8()
		r.U16()
		r.U32()
		r.U64()
		r.Str(true, 10)
		if err := r.Done(); !errors.Is(err, ErrTruncated) || !errors.Is(err, ErrMalformed) {
			t.Fatalf("prefix %d: %v", n, err)
		}
	}
	if err := NewReader(AppendStr8(nil, "long"), "t"); err.Str(false, 3) != "" || !errors.Is(err.Err(), ErrOversize) {
		t.Fatal("oversize string")
	}
	if r := NewReader([]byte{1, 0xff}, "t"); r.Str(false, 3) != "" || !errors.Is(r.Err(), ErrInvalid) {
		t.Fatal("non-UTF-8 string")
	}
	if r := NewReader([]byte{1, 2}, "t"); r.U8() != 1 || !errors.Is(r.Done(), ErrInvalid) {
		t.Fatal("trailing bytes")
	}
	for _, in := range []string{"FSXX\x01", "FSRQ\x02"} {
		r := NewReader([]byte(in), "t")
		if r.Magic("FSRQ", 1); !errors.Is(r.Err(), ErrUnknownVersion) {
			t.Fatalf("magic %q", in)
		}
	}
	if r := NewReader(nil, "t"); r.Bytes(-1) != nil || r.Err() == nil {
		t.Fatal("negative length")
	}
	for _, v := range []byte{0, 9, 10, 99, 100, 255} {
		if got, want := itoa(v), map[byte]string{0: "0", 9: "9", 10: "10", 99: "99", 100: "100", 255: "255"}[v]; got != want {
			t.Fatalf("itoa(%d) = %q", v, got)
		}
	}
}

func TestHeader(t *testing.T) {
	h := Header{Version: 1, Kind: 2, BodyVersion: 3, Space: [16]byte{4}, Author: [16]byte{5}, Seq: 6, Epoch: [16]byte{7}, HLC: 8, Prev: [32]byte{9}, BodyLen: 10}
	b := AppendHeader(nil, &h)
	if len(b) != HeaderSize {
		t.Fatal(len(b))
	}
	var g Header
	if err := DecodeHeader(b, &g); err != nil || g != h {
		t.Fatalf("%v %+v", err, g)
	}
	for n := range HeaderSize {
		if err := DecodeHeader(b[:n], &g); !errors.Is(err, ErrTruncated) {
			t.Fatalf("prefix %d: %v", n, err)
		}
	}
	b[0] = 3 // 1 and 2 are known (2: segmented changes)
	if err := DecodeHeader(b, &g); !errors.Is(err, ErrUnknownVersion) {
		t.Fatal(err)
	}
	b[0], b[3] = 1, 1
	if err := DecodeHeader(b, &g); !errors.Is(err, ErrInvalid) {
		t.Fatal(err)
	}
}
