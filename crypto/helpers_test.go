package crypto

import (
	"errors"
	"io"
	"math/rand/v2"
	"testing"
	"time"
)

// detRand is a deterministic random source for tests and vectors.
func detRand(seed string) io.Reader {
	var s [32]byte
	copy(s[:], seed)
	return rand.NewChaCha8(s)
}

// mapKeyring is a Keyring over a map.
type mapKeyring map[KeyID]*SpaceKey

func (m mapKeyring) Key(_ SpaceID, e KeyID) (*SpaceKey, bool) { k, ok := m[e]; return k, ok }

var (
	t0 = time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	t1 = time.Date(2027, 1, 1, 0, 0, 0, 0, time.UTC)
)

// world is a fixed set of keys and objects made from fixed seeds.
type world struct {
	bureau, other *Bureau
	alice, bob    *Identity
	relay         *Identity
	aliceCert     *Certificate
	bobCert       *Certificate
	relayCert     *Certificate
	foreignCert   *Certificate // alice's keys, certified by the untrusted bureau
	trust         *TrustSet
	space         SpaceID
	key           *SpaceKey
	keys          mapKeyring
	aliceSalt     [32]byte
	aliceName     string
	nonce         [16]byte // w.space = SpaceIDFor(OMN, nonce)
}

// must returns v or panics (failing the test) on err.
func must[T any](v T, err error) T {
	if err != nil {
		panic(err)
	}
	return v
}

func newWorld(t testing.TB) *world {
	t.Helper()
	w := &world{}
	w.bureau = must(NewBureau("OMN", detRand("bureau omn")))
	w.other = must(NewBureau("KAZ", detRand("bureau kaz")))
	w.alice = must(NewIdentity(detRand("alice")))
	w.bob = must(NewIdentity(detRand("bob")))
	w.relay = must(NewIdentity(detRand("relay")))
	w.aliceName = "Aïcha Al-Fārābī عائشة"
	copy(w.aliceSalt[:], "alice name salt, 32 bytes long!!")
	w.aliceCert = must(w.bureau.Issue(NewRequest(w.alice, NameCommitment(w.aliceName, w.aliceSalt)), RoleOfficer, t0, t1))
	w.bobCert = must(w.bureau.Issue(NewRequest(w.bob, NameCommitment("Bob", [32]byte{1})), RoleOfficer, t0, t1))
	w.relayCert = must(w.bureau.Issue(NewRequest(w.relay, [32]byte{}), RoleRelay, t0, t1))
	w.foreignCert = must(w.other.Issue(NewRequest(w.alice, [32]byte{}), RoleOfficer, t0, t1))
	w.trust = NewTrustSet(w.bureau.Public())
	io.ReadFull(detRand("space"), w.nonce[:])
	w.space = SpaceIDFor(w.bureau.Public().Fingerprint(), w.nonce)
	w.key = must(NewSpaceKey(detRand("epoch 1")))
	w.keys = mapKeyring{w.key.ID(): w.key}
	return w
}

func (w *world) seal(t testing.TB, kind Kind, seq uint64, prev [32]byte, body []byte) []byte {
	t.Helper()
	h := Header{Kind: kind, Space: w.space, Seq: seq, Prev: prev, HLC: 42 << 16}
	var key *SpaceKey
	if kind.sealed() {
		key = w.key
	}
	return must(Seal(h, body, key, w.alice, detRand("nonce")))
}

func wantErr(t testing.TB, err error, targets ...error) {
	t.Helper()
	if err == nil {
		t.Fatalf("got no error, want %v", targets)
	}
	for _, target := range targets {
		if !errors.Is(err, target) {
			t.Fatalf("got %v, want errors.Is %v", err, target)
		}
	}
}
