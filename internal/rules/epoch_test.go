package rules_test

import (
	"bytes"
	"math/rand/v2"
	"slices"
	"testing"

	"fieldsync/crypto"
	"fieldsync/internal/rules"
)

const omn, kaz, tjk = "omn-fp", "kaz-fp", "tjk-fp" // tjk: not released

var released = []string{kaz, omn}

// fact is one thing a replica learns of an epoch: a key share of it by a
// device of bureau, listing what it replaces; or, with bureau "", that
// this replica began it with that list.
type fact struct {
	epoch    crypto.KeyID
	bureau   string
	replaces []crypto.KeyID
}

// learn folds facts into what a replica knows, in the order given.
func learn(facts []fact) rules.Epochs {
	known := map[crypto.KeyID]rules.Epoch{}
	for _, f := range facts {
		e := known[f.epoch]
		if f.bureau == "" {
			e.Mine, e.Own = true, slices.Clone(f.replaces)
		} else {
			if e.By == nil {
				e.By = map[string][]crypto.KeyID{}
			}
			e.By[f.bureau] = append(e.By[f.bureau], f.replaces...)
		}
		known[f.epoch] = e
	}
	return rules.Epochs{Known: known, Released: released}
}

func newKeyID(r *rand.Rand) crypto.KeyID {
	var k crypto.KeyID
	for i := range k {
		k[i] = byte(r.Uint32())
	}
	if r.IntN(3) == 0 {
		k[0] = byte(r.IntN(2)) * 0xf8 // text order differs from byte order here
	}
	return k
}

func shuffledFacts(r *rand.Rand, facts []fact) []fact {
	out := slices.Clone(facts)
	for range r.IntN(3) {
		if len(facts) > 0 {
			out = append(out, facts[r.IntN(len(facts))])
		}
	}
	r.Shuffle(len(out), func(i, j int) { out[i], out[j] = out[j], out[i] })
	for i := range out { // lists in any order, with repeats
		l := slices.Clone(out[i].replaces)
		if len(l) > 0 && r.IntN(2) == 0 {
			l = append(l, l[r.IntN(len(l))])
		}
		r.Shuffle(len(l), func(a, b int) { l[a], l[b] = l[b], l[a] })
		out[i].replaces = l
	}
	return out
}

func larger(a, b crypto.KeyID) crypto.KeyID {
	if bytes.Compare(a[:], b[:]) > 0 {
		return a
	}
	return b
}

// TestEpochCases: the rules of docs/crdt.md "Epochs" on small cases, each
// the same whatever order the shares come in.
func TestEpochCases(t *testing.T) {
	r := rand.New(rand.NewPCG(12, 1))
	id := make([]crypto.KeyID, 6)
	for i := range id {
		id[i] = newKeyID(r)
	}
	pick := func(held []int, facts []fact) crypto.KeyID {
		t.Helper()
		var hk []crypto.KeyID
		for _, h := range held {
			hk = append(hk, id[h])
		}
		want, ok := learn(facts).Current(hk)
		if !ok {
			t.Fatal("no current epoch")
		}
		for range 10 {
			if got, _ := learn(shuffledFacts(r, facts)).Current(hk); got != want {
				t.Fatalf("order changed the answer: %s, then %s", want, got)
			}
		}
		return want
	}
	f := func(epoch int, bureau string, replaces ...int) fact {
		x := fact{epoch: id[epoch], bureau: bureau}
		for _, r := range replaces {
			x.replaces = append(x.replaces, id[r])
		}
		return x
	}
	chain := []fact{f(0, omn), f(1, omn, 0), f(2, kaz, 1)}
	if got := pick([]int{0, 1, 2}, chain); got != id[2] {
		t.Fatalf("chain: %s, want the last rotation %s", got, id[2])
	}
	if got := pick([]int{0, 1}, chain); got != id[1] {
		t.Fatalf("chain without the last key: %s, want %s", got, id[1])
	}
	conc := []fact{f(0, omn), f(1, omn, 0), f(2, omn, 0)}
	if got, want := pick([]int{0, 1, 2}, conc), larger(id[1], id[2]); got != want {
		t.Fatalf("concurrent: %s, want the larger %s", got, want)
	}
	deep := []fact{f(0, omn), f(1, omn, 0), f(2, omn, 0), f(3, omn, 2)}
	if got := pick([]int{0, 1, 3}, deep); got != id[3] {
		t.Fatalf("deeper: %s, want %s", got, id[3])
	}
	hostile := []fact{f(0, omn), f(1, omn, 0), f(4, tjk, 0, 1), f(5, tjk, 4, 1)}
	if got := pick([]int{0, 1, 4, 5}, hostile); got != id[1] {
		t.Fatalf("lists of a bureau not released: %s, want %s", got, id[1])
	}
	if got := pick([]int{4, 5}, []fact{f(4, tjk), f(5, tjk)}); got != larger(id[4], id[5]) {
		t.Fatalf("unbacked only: %s, want the larger", got)
	}
	mine := []fact{f(0, omn), f(1, omn, 0), f(2, "", 0)}
	if got := pick([]int{0, 1, 2}, mine); got != larger(id[1], id[2]) {
		t.Fatalf("own rotation concurrent with another: %s", got)
	}
}

// TestEpochCycleVisitOrder pins the answer on a hostile two-epoch cycle:
// the epochs are visited in the order of their IDs' text form, where a
// key ID starting with byte 0xf8 ("7…") comes before one starting with
// 0x00 ("a…"), though it is larger. The first visited is the deeper, so it
// is current — the answer agents gave before the rules moved here.
func TestEpochCycleVisitOrder(t *testing.T) {
	p, q := crypto.KeyID{0xf8, 1}, crypto.KeyID{0x00, 2}
	if p.String() > q.String() {
		t.Fatalf("test premise: %s sorts before %s", p, q)
	}
	es := learn([]fact{{p, omn, []crypto.KeyID{q}}, {q, omn, []crypto.KeyID{p}}})
	_, depth := es.Order()
	if depth[p] != 2 || depth[q] != 1 {
		t.Fatalf("depths %d, %d; want 2, 1", depth[p], depth[q])
	}
	for _, held := range [][]crypto.KeyID{{p, q}, {q, p}} {
		if got, _ := es.Current(held); got != p {
			t.Fatalf("current %s, want %s", got, p)
		}
	}
}

// epochHistory makes random facts over n epochs. Honest: each epoch's
// shares list only earlier epochs (a rotation replaces what it knew);
// hostile: lists name any epoch, themselves and epochs never known, and
// bureaus not released write shares too.
func epochHistory(r *rand.Rand, n int, hostile bool) ([]crypto.KeyID, []fact) {
	ids := make([]crypto.KeyID, n)
	for i := range ids {
		ids[i] = newKeyID(r)
	}
	var facts []fact
	for i, id := range ids {
		bureaus := []string{omn, kaz}
		if hostile {
			bureaus = append(bureaus, tjk)
		}
		var list []crypto.KeyID
		if i > 0 {
			for range 1 + r.IntN(2) {
				list = append(list, ids[r.IntN(i)])
			}
		}
		if hostile {
			for range r.IntN(3) {
				switch r.IntN(3) {
				case 0:
					list = append(list, ids[r.IntN(n)])
				case 1:
					list = append(list, id)
				default:
					list = append(list, newKeyID(r))
				}
			}
		}
		if r.IntN(6) == 0 {
			facts = append(facts, fact{id, "", list})
		}
		for range 1 + r.IntN(3) { // shares by several devices, each its list
			facts = append(facts, fact{id, bureaus[r.IntN(len(bureaus))], list})
		}
	}
	return ids, facts
}

func heldOf(r *rand.Rand, ids []crypto.KeyID) []crypto.KeyID {
	var held []crypto.KeyID
	for _, id := range ids {
		if r.IntN(4) > 0 {
			held = append(held, id)
		}
	}
	if len(held) == 0 {
		held = append(held, ids[0])
	}
	return held
}

// TestCurrentEpochProperty: over random honest and hostile histories, the
// current epoch, the heads a rotation would list and every share list
// are the same whatever order (and repetition) the facts and the held keys
// come in; the current epoch is held, backed if any held key is, and not
// replaced if any backed key is not; lists of a bureau the space is not
// released to change nothing while a backed key is held; a rotation
// becomes current on its rotator; and of two rotations concurrent over the
// same heads, the larger key ID is current everywhere.
func TestCurrentEpochProperty(t *testing.T) {
	r := rand.New(rand.NewPCG(12, 12))
	var cyclic, unbacked int
	for trial := range 400 {
		hostile := trial%2 == 1
		ids, facts := epochHistory(r, 2+r.IntN(8), hostile)
		held := heldOf(r, ids)
		es := learn(facts)
		cur, ok := es.Current(held)
		if !ok || !slices.Contains(held, cur) {
			t.Fatalf("trial %d: current %s (%v) not one of the held keys", trial, cur, ok)
		}
		heads := es.Heads(held, cur)
		replaced, _ := es.Order()
		anyBacked, anyFree := false, false
		for _, h := range held {
			if es.Backed(h) {
				anyBacked = true
				anyFree = anyFree || !replaced[h]
			}
		}
		if !anyBacked {
			unbacked++
		}
		if anyBacked && !es.Backed(cur) {
			t.Fatalf("trial %d: current %s not backed though a backed key is held", trial, cur)
		}
		if anyFree && replaced[cur] {
			t.Fatalf("trial %d: current %s is replaced though a backed key is not", trial, cur)
		}
		if !anyFree && anyBacked {
			cyclic++
		}
		for range 8 {
			perm := learn(shuffledFacts(r, facts))
			ph := slices.Clone(held)
			r.Shuffle(len(ph), func(i, j int) { ph[i], ph[j] = ph[j], ph[i] })
			ph = append(ph, ph[r.IntN(len(ph))])
			if got, _ := perm.Current(ph); got != cur {
				t.Fatalf("trial %d: order changed the current epoch: %s vs %s", trial, got, cur)
			}
			if got := perm.Heads(ph, cur); !slices.Equal(got, heads) {
				t.Fatalf("trial %d: order changed the heads: %v vs %v", trial, got, heads)
			}
			for _, id := range ids {
				if a, b := perm.ShareList(id), es.ShareList(id); !slices.Equal(a, b) {
					t.Fatalf("trial %d: order changed the share list of %s: %v vs %v", trial, id, a, b)
				}
			}
		}
		if anyBacked {
			extra := slices.Clone(facts)
			for range 1 + r.IntN(4) {
				extra = append(extra, fact{ids[r.IntN(len(ids))], tjk, []crypto.KeyID{ids[r.IntN(len(ids))], cur}})
			}
			if got, _ := learn(extra).Current(held); got != cur {
				t.Fatalf("trial %d: shares of a bureau not released moved the current epoch: %s vs %s", trial, got, cur)
			}
		}
		// This replica rotates: the new key replaces the heads and is current.
		n := newKeyID(r)
		rot := learn(append(slices.Clone(facts), fact{n, "", heads}))
		if got, _ := rot.Current(append(slices.Clone(held), n)); got != n {
			t.Fatalf("trial %d: own rotation %s not current (got %s)", trial, n, got)
		}
		// Two other devices rotate concurrently from the same heads.
		n1, n2 := newKeyID(r), newKeyID(r)
		conc := append(slices.Clone(facts), fact{n1, omn, heads}, fact{n2, kaz, heads})
		want := larger(n1, n2)
		for range 4 {
			both := append(slices.Clone(held), n1, n2)
			r.Shuffle(len(both), func(i, j int) { both[i], both[j] = both[j], both[i] })
			if got, _ := learn(shuffledFacts(r, conc)).Current(both); got != want {
				t.Fatalf("trial %d: concurrent rotations settle on %s, want the larger %s", trial, got, want)
			}
		}
	}
	t.Logf("histories where every backed key is replaced (hostile cycles): %d, with no backed key held: %d", cyclic, unbacked)
	if cyclic == 0 {
		t.Errorf("the generator made no history where every backed key is replaced")
	}
}

// TestShareListBounded: a share carries at most crypto.MaxReplaces epochs,
// the smallest key IDs, never the epoch itself.
func TestShareListBounded(t *testing.T) {
	r := rand.New(rand.NewPCG(5, 8))
	e := newKeyID(r)
	list := []crypto.KeyID{e}
	for range crypto.MaxReplaces + 20 {
		list = append(list, newKeyID(r))
	}
	got := learn([]fact{{e, omn, list}}).ShareList(e)
	want := slices.DeleteFunc(slices.Clone(list), func(k crypto.KeyID) bool { return k == e })
	slices.SortFunc(want, func(x, y crypto.KeyID) int { return bytes.Compare(x[:], y[:]) })
	if !slices.Equal(got, want[:crypto.MaxReplaces]) {
		t.Fatalf("share list: %d entries, want the %d smallest", len(got), crypto.MaxReplaces)
	}
	if got := learn([]fact{{e, tjk, list}}).ShareList(e); len(got) != 0 {
		t.Fatalf("a list given only by a bureau not released is carried on: %v", got)
	}
}
