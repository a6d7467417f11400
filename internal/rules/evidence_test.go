package rules_test

import (
	"math/rand/v2"
	"slices"
	"testing"
	"time"

	"fieldsync/crypto"
	"fieldsync/internal/rules"
)

func hdr(space, author byte, seq uint64, prev [32]byte) crypto.Header {
	return crypto.Header{Kind: crypto.KindChange, Space: crypto.SpaceID{space}, Author: crypto.DeviceID{author}, Seq: seq, Prev: prev}
}

// TestForkPoint: what a pair of envelopes proves, in either order.
func TestForkPoint(t *testing.T) {
	h1, h1b := [32]byte{1}, [32]byte{2}
	cases := []struct {
		name   string
		a, b   crypto.Header
		sa, sb [32]byte
		want   uint64 // 0: no fork
	}{
		{"same seq, other contents", hdr(1, 1, 4, [32]byte{9}), hdr(1, 1, 4, [32]byte{9}), h1, h1b, 4},
		{"same envelope", hdr(1, 1, 4, [32]byte{9}), hdr(1, 1, 4, [32]byte{9}), h1, h1, 0},
		{"next does not chain", hdr(1, 1, 4, [32]byte{9}), hdr(1, 1, 5, h1b), h1, [32]byte{3}, 4},
		{"next chains", hdr(1, 1, 4, [32]byte{9}), hdr(1, 1, 5, h1), h1, [32]byte{3}, 0},
		{"seqs apart", hdr(1, 1, 4, [32]byte{9}), hdr(1, 1, 6, h1b), h1, [32]byte{3}, 0},
		{"other author", hdr(1, 1, 4, [32]byte{9}), hdr(1, 2, 4, [32]byte{9}), h1, h1b, 0},
		{"other space", hdr(1, 1, 4, [32]byte{9}), hdr(2, 1, 4, [32]byte{9}), h1, h1b, 0},
	}
	for _, c := range cases {
		for _, swap := range []bool{false, true} {
			a, b, sa, sb := c.a, c.b, c.sa, c.sb
			if swap {
				a, b, sa, sb = b, a, sb, sa
			}
			seq, err := rules.ForkPoint(a, sa, b, sb)
			if (err == nil) != (c.want != 0) || seq != c.want {
				t.Errorf("%s (swapped %v): ForkPoint = %d, %v; want %d", c.name, swap, seq, err, c.want)
			}
		}
	}
}

// TestFreezePointProperty: with several pieces of evidence the lowest seq
// wins, in any order and with repeats, and the point moves only when new
// evidence lowers it.
func TestFreezePointProperty(t *testing.T) {
	r := rand.New(rand.NewPCG(4, 4))
	for range 300 {
		var seqs []uint64
		for range 1 + r.IntN(6) {
			seqs = append(seqs, uint64(1+r.IntN(20)))
		}
		want := slices.Min(seqs)
		for range 5 {
			order := append(slices.Clone(seqs), seqs[r.IntN(len(seqs))])
			r.Shuffle(len(order), func(i, j int) { order[i], order[j] = order[j], order[i] })
			var point uint64
			for _, s := range order {
				next, moved := rules.FreezePoint(point, s)
				if moved != (point == 0 || s < point) {
					t.Fatalf("FreezePoint(%d, %d) moved = %v", point, s, moved)
				}
				point = next
			}
			if point != want {
				t.Fatalf("freeze point %d, want the lowest %d of %v", point, want, order)
			}
		}
	}
	if p, moved := rules.FreezePoint(5, 0); p != 5 || moved {
		t.Fatal("seq 0 proves nothing")
	}
}

func newDevice(t *testing.T, seed byte) *crypto.Identity {
	t.Helper()
	id, err := crypto.NewIdentity(rand.NewChaCha8([32]byte{seed}))
	if err != nil {
		t.Fatal(err)
	}
	return id
}

func certify(t *testing.T, b *crypto.Bureau, id *crypto.Identity, notAfter time.Time, countersign bool) *crypto.Certificate {
	t.Helper()
	c, err := b.Issue(crypto.NewRequest(id, [32]byte{}), crypto.RoleOfficer, notAfter.Add(-time.Hour), notAfter)
	if err != nil {
		t.Fatal(err)
	}
	if countersign {
		if c, err = c.Countersign(id); err != nil {
			t.Fatal(err)
		}
	}
	return c
}

// TestPinCertificate: the first pin wins; only a renewal by the pinned
// bureau for the same keys replaces it; another bureau or other keys are a
// conflict; this device's own certificate is never replaced from outside.
func TestPinCertificate(t *testing.T) {
	omn, kaz := newBureau(t, "OMN", 1), newBureau(t, "KAZ", 2)
	dev, other := newDevice(t, 3), newDevice(t, 4)
	at := time.Unix(1_800_000_000, 0)
	pinned := certify(t, omn, dev, at, true)
	cases := []struct {
		name string
		c    *crypto.Certificate
		own  bool
		want rules.Pin
	}{
		{"renewal", certify(t, omn, dev, at.Add(time.Hour), true), false, rules.PinRenew},
		{"older", certify(t, omn, dev, at.Add(-time.Hour), true), false, rules.PinKeep},
		{"same validity", certify(t, omn, dev, at, true), false, rules.PinKeep},
		{"another bureau", certify(t, kaz, dev, at.Add(time.Hour), true), false, rules.PinConflict},
		{"other keys", certify(t, omn, other, at.Add(time.Hour), true), false, rules.PinConflict},
		{"own renewal from outside", certify(t, omn, dev, at.Add(time.Hour), true), true, rules.PinKeep},
		{"own, another bureau", certify(t, kaz, dev, at, true), true, rules.PinConflict},
	}
	for _, c := range cases {
		if got := rules.PinCertificate(pinned, c.c, c.own); got != c.want {
			t.Errorf("%s: %v, want %v", c.name, got, c.want)
		}
	}
	v1 := certify(t, omn, dev, at, false)
	if got := rules.PinCertificate(v1, pinned, false); got != rules.PinRenew {
		t.Errorf("countersigned form of a version 1 pin: %v, want renewal", got)
	}
	if got := rules.PinCertificate(v1, certify(t, omn, dev, at.Add(-time.Hour), true), false); got != rules.PinKeep {
		t.Errorf("older countersigned form of a version 1 pin: %v, want keep", got)
	}
	if !rules.SameEnrollment(pinned, v1) || rules.SameEnrollment(pinned, certify(t, kaz, dev, at, true)) {
		t.Error("SameEnrollment")
	}
}

// TestEntitled: officers of released bureaus read; relays never; a
// withdrawal ends reading but not the right to have written
// (EverReleased).
func TestEntitled(t *testing.T) {
	omn, kaz := newBureau(t, "OMN", 1), newBureau(t, "KAZ", 2)
	at := time.Unix(1_800_000_000, 0)
	officer := certify(t, kaz, newDevice(t, 5), at, true)
	relayCert, err := kaz.Issue(crypto.NewRequest(newDevice(t, 6), [32]byte{}), crypto.RoleRelay, at.Add(-time.Hour), at)
	if err != nil {
		t.Fatal(err)
	}
	ownerFP, kazFP := omn.Public().Fingerprint(), kaz.Public().Fingerprint()
	recs := []rules.Routing{rec("d1", 1, []string{ownerFP, kazFP}), rec("d1", 2, []string{ownerFP})}
	now := rules.ReleaseList(ownerFP, recs)
	if rules.Entitled(officer, now) || rules.Entitled(relayCert, now) {
		t.Fatal("entitled after the withdrawal")
	}
	if !rules.Entitled(officer, []string{ownerFP, kazFP}) || rules.Entitled(relayCert, []string{ownerFP, kazFP}) {
		t.Fatal("an officer of a released bureau reads; a relay never")
	}
	if !rules.EverReleased(officer, ownerFP, recs) || rules.EverReleased(relayCert, ownerFP, recs) {
		t.Fatal("EverReleased: an officer of a bureau once released; never a relay")
	}
	if rules.EverReleased(officer, ownerFP, recs[1:]) {
		t.Fatal("EverReleased for a bureau no record names")
	}
	if !rules.EverReleased(certify(t, omn, newDevice(t, 7), at, true), ownerFP, nil) {
		t.Fatal("the owner's officers may always write")
	}
}
