package rules_test

import (
	"bytes"
	"math/rand/v2"
	"slices"
	"testing"
	"time"

	"fieldsync/crypto"
	"fieldsync/internal/rules"
)

func newBureau(t *testing.T, name string, seed byte) *crypto.Bureau {
	t.Helper()
	b, err := crypto.NewBureau(name, rand.NewChaCha8([32]byte{seed}))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// revocations makes n revocations of one device, issued within a few
// seconds of each other (so some tie), with random cut-offs.
func revocations(t *testing.T, r *rand.Rand, n int) []*crypto.Revocation {
	t.Helper()
	b := newBureau(t, "OMN", 1)
	dev := crypto.DeviceID{7}
	epoch := time.Unix(1_700_000_000, 0)
	var out []*crypto.Revocation
	for range n {
		cut := map[crypto.SpaceID]uint64{}
		for range r.IntN(3) {
			cut[crypto.SpaceID{byte(r.IntN(4))}] = uint64(r.IntN(10))
		}
		rev, err := b.Revoke(dev, cut, uint64(r.IntN(3)), epoch.Add(time.Duration(r.IntN(4))*time.Second))
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, rev)
	}
	return out
}

func same(a, b *crypto.Revocation) bool {
	return a == nil && b == nil || a != nil && b != nil && bytes.Equal(a.Marshal(), b.Marshal())
}

// TestChooseRevocationProperty: which of two revocations of a device
// stands is commutative, associative and idempotent, so any order of
// arrival (with repeats) keeps the same one: the latest issued, ties to
// the larger encoding. RevocationReplaces is a strict order.
func TestChooseRevocationProperty(t *testing.T) {
	r := rand.New(rand.NewPCG(21, 4))
	revs := revocations(t, r, 12)
	var ties int
	for _, a := range revs {
		if !same(rules.ChooseRevocation(a, a), a) || rules.RevocationReplaces(a, a) {
			t.Fatal("not idempotent, or a revocation replaces itself")
		}
		if !same(rules.ChooseRevocation(a, nil), a) || !same(rules.ChooseRevocation(nil, a), a) || !rules.RevocationReplaces(a, nil) || rules.RevocationReplaces(nil, a) {
			t.Fatal("nil must lose to any revocation")
		}
		for _, b := range revs {
			ab, ba := rules.ChooseRevocation(a, b), rules.ChooseRevocation(b, a)
			if !same(ab, ba) {
				t.Fatalf("not commutative")
			}
			if !same(a, b) && rules.RevocationReplaces(a, b) == rules.RevocationReplaces(b, a) {
				t.Fatalf("RevocationReplaces not a strict order on two different revocations")
			}
			if a.IssuedAt.Equal(b.IssuedAt) && !same(a, b) {
				ties++
			}
			if !ab.IssuedAt.Equal(a.IssuedAt) && !ab.IssuedAt.Equal(b.IssuedAt) || ab.IssuedAt.Before(a.IssuedAt) || ab.IssuedAt.Before(b.IssuedAt) {
				t.Fatalf("the later issued must win")
			}
			for _, c := range revs {
				if !same(rules.ChooseRevocation(rules.ChooseRevocation(a, b), c), rules.ChooseRevocation(a, rules.ChooseRevocation(b, c))) {
					t.Fatalf("not associative")
				}
			}
		}
	}
	if ties == 0 {
		t.Fatal("no two revocations issued in the same second: the tie rule is untested")
	}
	// Any arrival order, with repeats: one revocation stands everywhere.
	var want *crypto.Revocation
	for _, x := range revs {
		want = rules.ChooseRevocation(want, x)
	}
	for range 50 {
		order := slices.Clone(revs)
		order = append(order, revs[r.IntN(len(revs))])
		r.Shuffle(len(order), func(i, j int) { order[i], order[j] = order[j], order[i] })
		var held *crypto.Revocation
		for _, x := range order {
			if rules.RevocationReplaces(x, held) { // as agent stores them
				held = x
			}
		}
		if !same(held, want) {
			t.Fatal("arrival order changed which revocation stands")
		}
	}
}

// TestCutFrom: what a revocation cuts of a device's log in a space: the
// seqs past the space's cut-off (or the default one), nothing else.
func TestCutFrom(t *testing.T) {
	r := rand.New(rand.NewPCG(2, 9))
	for _, rev := range revocations(t, r, 8) {
		for s := range 5 {
			space := crypto.SpaceID{byte(s)}
			cut := rev.DefaultCutoff
			if c, ok := rev.Cutoffs[space]; ok {
				cut = c
			}
			for head := range uint64(12) {
				from, due := rules.CutFrom(rev, space, head)
				if due != (head > cut) || due && from != cut+1 {
					t.Fatalf("cut-off %d, head %d: CutFrom = %d, %v", cut, head, from, due)
				}
			}
		}
	}
	if _, due := rules.CutFrom(nil, crypto.SpaceID{1}, 1<<40); due {
		t.Fatal("a nil revocation cuts")
	}
}
