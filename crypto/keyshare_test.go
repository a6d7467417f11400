package crypto

import (
	"bytes"
	"errors"
	"testing"
)

// TestKeyShareReplaces: version 2 carries the replaced epochs (sorted,
// unique), opens like version 1, and every malformed list is refused with
// a typed error; an empty list is written as version 1.
func TestKeyShareReplaces(t *testing.T) {
	w := newWorld(t)
	a, b := must(NewSpaceKey(detRand("a"))).ID(), must(NewSpaceKey(detRand("b"))).ID()
	if bytes.Compare(a[:], b[:]) > 0 {
		a, b = b, a
	}
	body := must(WrapKeyReplacing(w.key, w.space, w.bob.Public(), []KeyID{b, a, b}, detRand("eph")))
	if body[0] != 2 || len(body) != keyShareSize+1+32 {
		t.Fatalf("version %d, %d bytes", body[0], len(body))
	}
	ks := must(ParseKeyShare(body))
	if len(ks.Replaces) != 2 || ks.Replaces[0] != a || ks.Replaces[1] != b || ks.Epoch != w.key.ID() {
		t.Fatalf("parsed %+v", ks)
	}
	if k := must(UnwrapKey(body, w.space, w.bob)); k.ID() != w.key.ID() {
		t.Fatal("unwrapped another key")
	}
	v1 := must(WrapKeyReplacing(w.key, w.space, w.bob.Public(), nil, detRand("eph")))
	if v1[0] != 1 || len(v1) != keyShareSize || len(must(ParseKeyShare(v1)).Replaces) != 0 {
		t.Fatalf("an empty list: version %d, %d bytes", v1[0], len(v1))
	}
	// Stripping the list (and the version) does not make a version 1 share:
	// the version byte is authenticated.
	stripped := bytes.Clone(body[:keyShareSize])
	stripped[0] = 1
	wantErr(t, func() error { _, err := UnwrapKey(stripped, w.space, w.bob); return err }(), ErrAuth)

	if _, err := WrapKeyReplacing(w.key, w.space, w.bob.Public(), []KeyID{w.key.ID()}, detRand("eph")); !errors.Is(err, ErrInvalid) {
		t.Fatalf("self-replacing: %v", err)
	}
	many := make([]KeyID, MaxReplaces+1)
	for i := range many {
		many[i][0], many[i][1] = byte(i), 1
	}
	if _, err := WrapKeyReplacing(w.key, w.space, w.bob.Public(), many, detRand("eph")); !errors.Is(err, ErrOversize) {
		t.Fatalf("too many: %v", err)
	}
	if b := must(WrapKeyReplacing(w.key, w.space, w.bob.Public(), many[:MaxReplaces], detRand("eph"))); len(must(ParseKeyShare(b)).Replaces) != MaxReplaces {
		t.Fatal("the largest list does not round-trip")
	}

	mut := func(f func(b []byte) []byte) []byte { return f(bytes.Clone(body)) }
	for _, c := range []struct {
		name string
		body []byte
		want error
	}{
		{"count zero", mut(func(b []byte) []byte { b[keyShareSize] = 0; return b[:keyShareSize+1] }), ErrInvalid},
		{"no count", body[:keyShareSize], ErrTruncated},
		{"count above the limit", mut(func(b []byte) []byte { b[keyShareSize] = MaxReplaces + 1; return b }), ErrOversize},
		{"list cut", body[:len(body)-1], ErrTruncated},
		{"trailing byte", append(bytes.Clone(body), 0), ErrInvalid},
		{"duplicate", mut(func(b []byte) []byte { copy(b[keyShareSize+17:], b[keyShareSize+1:keyShareSize+17]); return b }), ErrInvalid},
		{"unsorted", mut(func(b []byte) []byte {
			copy(b[keyShareSize+1:], b[keyShareSize+17:])
			copy(b[keyShareSize+17:], a[:])
			return b
		}), ErrInvalid},
		{"itself", mut(func(b []byte) []byte { copy(b[keyShareSize+17:], b[17:33]); return b }), ErrInvalid},
		{"version 1 with a list", mut(func(b []byte) []byte { b[0] = 1; return b }), ErrInvalid},
	} {
		_, err := ParseKeyShare(c.body)
		if !errors.Is(err, c.want) || !errors.Is(err, ErrMalformed) {
			t.Errorf("%s: %v, want %v", c.name, err, c.want)
		}
		if _, err := UnwrapKey(c.body, w.space, w.bob); err == nil {
			t.Errorf("%s: unwrapped", c.name)
		}
	}
}
