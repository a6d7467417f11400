package crypto

import (
	"bytes"
	"errors"
	"strings"
	"testing"
)

// coldCases are envelopes with every mix of sealed and cut segments.
func coldCases(t testing.TB, w *world) map[string][]byte {
	skel := strings.Repeat("field-name-CANARYSKEL kind put seen replica ", 8)
	env := w.sealSegs(t, 1, [32]byte{}, skel+"A", "values A", skel+"B", "values B", "")
	return map[string][]byte{
		"whole":        env,
		"values cut":   must(EraseSegments(env, 1, 3)),
		"all but one":  must(EraseSegments(env, 0, 1, 3, 4)),
		"all cut":      must(EraseSegments(env, 0, 1, 2, 3, 4)),
		"empty sealed": must(EraseSegments(env, 0, 1, 2, 3)),
	}
}

func TestColdFreezeThawIdentical(t *testing.T) {
	w := newWorld(t)
	for name, env := range coldCases(t, w) {
		cold, err := FreezeEnvelope(env, w.keys)
		if err != nil {
			t.Fatalf("%s: freeze: %v", name, err)
		}
		if !IsCold(cold) || IsCold(env) {
			t.Fatalf("%s: IsCold", name)
		}
		back, err := ThawEnvelope(cold, w.keys)
		if err != nil {
			t.Fatalf("%s: thaw: %v", name, err)
		}
		if !bytes.Equal(back, env) {
			t.Fatalf("%s: thawed bytes differ", name)
		}
		if _, _, err := Verify(back, w.alice.Public()); err != nil {
			t.Fatalf("%s: thawed envelope does not verify: %v", name, err)
		}
		t.Logf("%s: %d bytes -> %d cold", name, len(env), len(cold))
	}
}

func TestColdSmallerThanSealed(t *testing.T) {
	w := newWorld(t)
	env := coldCases(t, w)["values cut"]
	cold := must(FreezeEnvelope(env, w.keys))
	if len(cold) >= len(env) {
		t.Fatalf("cold form %d bytes, envelope %d: repeated skeleton text should compress", len(cold), len(env))
	}
}

func TestColdNeedsKey(t *testing.T) {
	w := newWorld(t)
	cases := coldCases(t, w)
	_, err := FreezeEnvelope(cases["values cut"], mapKeyring{})
	wantErr(t, err, ErrNoKey)
	cold := must(FreezeEnvelope(cases["values cut"], w.keys))
	_, err = ThawEnvelope(cold, mapKeyring{})
	wantErr(t, err, ErrNoKey)
	// Every segment cut: nothing to seal, no key needed.
	cut := cases["all cut"]
	cold = must(FreezeEnvelope(cut, nil))
	if back := must(ThawEnvelope(cold, nil)); !bytes.Equal(back, cut) {
		t.Fatal("all-cut envelope does not thaw without a key")
	}
	// Version 1 envelopes have no cold form.
	_, err = FreezeEnvelope(w.seal(t, KindChange, 1, [32]byte{}, []byte("v1")), w.keys)
	wantErr(t, err, ErrUnknownVersion)
}

// A damaged cold form is an error naming the cold envelope, never other
// bytes: every flipped byte and every truncation.
func TestColdDamaged(t *testing.T) {
	w := newWorld(t)
	env := coldCases(t, w)["values cut"]
	cold := must(FreezeEnvelope(env, w.keys))
	for i := range cold {
		for _, bit := range []byte{0x01, 0x80} {
			bad := bytes.Clone(cold)
			bad[i] ^= bit
			back, err := ThawEnvelope(bad, w.keys)
			if err == nil {
				if bytes.Equal(back, env) {
					continue // a bit DEFLATE ignores (padding): same bytes
				}
				t.Fatalf("byte %d: thawed to other bytes", i)
			}
			if !errors.Is(err, ErrMalformed) && !errors.Is(err, ErrNoKey) {
				t.Fatalf("byte %d: untyped error %v", i, err)
			}
			if !strings.Contains(err.Error(), "cold envelope") && !errors.Is(err, ErrNoKey) {
				t.Fatalf("byte %d: error does not name the cold envelope: %v", i, err)
			}
		}
	}
	for n := 0; n < len(cold); n++ {
		if _, err := ThawEnvelope(cold[:n], w.keys); err == nil {
			t.Fatalf("truncated to %d bytes: thawed", n)
		}
	}
	bad := bytes.Clone(cold)
	bad[0] = 0xC2
	_, err := ThawEnvelope(bad, w.keys)
	wantErr(t, err, ErrUnknownVersion)
}

func FuzzThawEnvelope(f *testing.F) {
	w := fuzzWorld(f)
	for _, env := range coldCases(f, w) {
		f.Add(must(FreezeEnvelope(env, w.keys)))
	}
	f.Add([]byte{ColdVersion1})
	for _, v := range loadVectorsF(f, "cold") {
		f.Add(v.payload)
	}
	f.Fuzz(func(t *testing.T, cold []byte) {
		env, err := ThawEnvelope(cold, w.keys)
		if err != nil {
			typedErr(t, err)
			return
		}
		if _, _, err := Verify(env, w.alice.Public()); err != nil && !errors.Is(err, ErrSignature) {
			t.Fatalf("thawed bytes do not parse: %v", err)
		}
		again, err := FreezeEnvelope(env, w.keys)
		if err != nil {
			t.Fatalf("thawed envelope does not freeze: %v", err)
		}
		if back := must(ThawEnvelope(again, w.keys)); !bytes.Equal(back, env) {
			t.Fatal("refrozen form thaws to other bytes")
		}
	})
}

func BenchmarkThawEnvelope(b *testing.B) {
	w := newWorld(b)
	env := coldCases(b, w)["values cut"]
	cold := must(FreezeEnvelope(env, w.keys))
	b.SetBytes(int64(len(env)))
	b.ReportAllocs()
	for b.Loop() {
		if _, err := ThawEnvelope(cold, w.keys); err != nil {
			b.Fatal(err)
		}
	}
}
