package rules_test

import (
	"errors"
	"math/rand/v2"
	"testing"
	"time"

	"fieldsync/crypto"
	"fieldsync/internal/rules"
)

func TestMayErase(t *testing.T) {
	omn, kaz := newBureau(t, "OMN", 1), newBureau(t, "KAZ", 2)
	at := time.Unix(1_700_000_000, 0)
	issue := func(b *crypto.Bureau, seed byte, role crypto.Role) *crypto.Certificate {
		c, err := b.Issue(crypto.NewRequest(newDevice(t, seed), [32]byte{}), role, at.Add(-time.Hour), at.Add(time.Hour))
		if err != nil {
			t.Fatal(err)
		}
		return c
	}
	owner := omn.Public().Fingerprint()
	officer, relay, partner := issue(omn, 3, crypto.RoleOfficer), issue(omn, 4, crypto.RoleRelay), issue(kaz, 5, crypto.RoleOfficer)
	rev, err := omn.Revoke(officer.Device.ID(), nil, 1<<40, at)
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		name string
		cert *crypto.Certificate
		rev  *crypto.Revocation
		want error
	}{
		{"owner's officer", officer, nil, nil},
		{"owner's relay", relay, nil, crypto.ErrRole},
		{"partner's officer", partner, nil, crypto.ErrRole},
		{"owner's officer, revoked (even with a high cut-off)", officer, rev, crypto.ErrRevoked},
		{"unknown", nil, nil, crypto.ErrUntrusted},
	} {
		err := rules.MayErase(c.cert, c.rev, owner)
		if (c.want == nil) != (err == nil) || (c.want != nil && !errors.Is(err, c.want)) {
			t.Errorf("%s: %v, want %v", c.name, err, c.want)
		}
	}
}

// TestErasureReplacesConverges: whatever order a replica receives the
// markers of one space in, it keeps the same one.
func TestErasureReplacesConverges(t *testing.T) {
	b := newBureau(t, "OMN", 1)
	owner := b.Public().Fingerprint()
	var nonce [16]byte
	space := crypto.SpaceIDFor(owner, nonce)
	epoch := time.Unix(1_700_000_000, 0)
	var ms []*crypto.Erasure
	for i := range 6 {
		id := newDevice(t, byte(10+i))
		e, err := crypto.NewErasure(id, space, nonce, owner, epoch.Add(time.Duration(i%3)*time.Second)) // some tie
		if err != nil {
			t.Fatal(err)
		}
		ms = append(ms, e)
	}
	r := rand.New(rand.NewPCG(1, 2))
	var first []byte
	for range 200 {
		r.Shuffle(len(ms), func(i, j int) { ms[i], ms[j] = ms[j], ms[i] })
		var kept *crypto.Erasure
		for _, e := range ms {
			if rules.ErasureReplaces(e, kept) {
				kept = e
			}
		}
		if first == nil {
			first = kept.Marshal()
		} else if string(first) != string(kept.Marshal()) {
			t.Fatal("the kept marker depends on the order of arrival")
		}
	}
}
