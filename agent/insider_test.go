package agent

// Insider tests (issue 12): what a compromised officer laptop of an
// entitled bureau, or a device of a trusted bureau the space was never
// released to, can send. Each hostile envelope is validly signed and
// chained by a real enrolled device; real agents on Badger receive it.

import (
	"context"
	"crypto/rand"
	"errors"
	"io"
	"testing"
	"time"

	"fieldsync/agent/api"
	"fieldsync/crdt"
	"fieldsync/crypto"
)

// insForgeChange signs the next envelope of the author's log in the space:
// a change whose plaintext body is given as it is, sealed under key. It is
// not stored: the caller ingests it, into the author too.
func insForgeChange(t testing.TB, author *Agent, space crypto.SpaceID, key *crypto.SpaceKey, body func(seq uint64, hlc crdt.Timestamp) []byte) []byte {
	t.Helper()
	author.stateMu.Lock()
	defer author.stateMu.Unlock()
	var hd head
	if sp := author.spaces[space]; sp != nil {
		hd = sp.heads[author.dev]
	}
	hlc := author.clock.Now(author.physMillis())
	h := crypto.Header{Kind: crypto.KindChange, Space: space, Seq: hd.Seq + 1, HLC: hlc.Pack(), Prev: hd.Hash}
	env, err := crypto.Seal(h, body(h.Seq, hlc), key, author.id, rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return env
}

// insChange is a well-formed change body with the given ops (and deps).
func insChange(author crypto.DeviceID, ops []crdt.Op, deps []crdt.Dep) func(uint64, crdt.Timestamp) []byte {
	return func(seq uint64, hlc crdt.Timestamp) []byte {
		ch := &crdt.Change{Author: crdt.ReplicaID(author), Seq: seq, HLC: hlc, Ops: ops, Deps: deps}
		b, err := ch.MarshalBinary()
		if err != nil {
			panic(err)
		}
		return b
	}
}

func insHead(a *Agent, space crypto.SpaceID, dev crypto.DeviceID) head {
	a.stateMu.Lock()
	defer a.stateMu.Unlock()
	return a.spaces[space].heads[dev]
}

// insRepairSame closes the agent, runs repair on its data directory, opens
// it again and checks that the space's state is what it was.
func insRepairSame(t testing.TB, a *Agent, space string) *Agent {
	t.Helper()
	before := advDigest(t, a, space)
	cfg := a.cfg
	a.Close()
	if err := Repair(context.Background(), cfg, io.Discard); err != nil {
		t.Fatal(err)
	}
	a = openTestAgent(t, cfg)
	if after := advDigest(t, a, space); after != before {
		t.Fatalf("repair changed the state: %+v, was %+v", after, before)
	}
	return a
}

func insContextBytes(a *Agent, space crypto.SpaceID) int {
	a.stateMu.Lock()
	defer a.stateMu.Unlock()
	b, _ := a.spaces[space].ctx.MarshalBinary()
	return len(b)
}

// Item 4: a hostile member names "seen" dots its victim has not written
// yet. It must not cancel the victim's later writes — on the victim's own
// replica or any other — and a change naming a huge number of dots must
// not bloat the space's context.
func TestInsiderFutureDotsCancelNothing(t *testing.T) {
	omn := newTestBureau(t, "OMN")
	victim := openTestAgent(t, newTestDevice(t, omn, "Victim", crypto.RoleOfficer))
	evil := openTestAgent(t, newTestDevice(t, omn, "Evil", crypto.RoleOfficer))
	other := openTestAgent(t, newTestDevice(t, omn, "Other", crypto.RoleOfficer))
	sp, err := victim.CreateSpace("case", nil)
	if err != nil {
		t.Fatal(err)
	}
	id := advSpaceID(t, sp.ID)
	advPut(t, victim, sp.ID, "p1", "first")
	advSettle(t, victim, evil, other)
	key := advKey(t, evil, id)
	next := insHead(victim, id, victim.dev).Seq + 1
	// The victim's next change will be a one-op put on p1: its dot is
	// (victim, next, 0). The hostile change names it, and the next 100,000
	// ops of that seq, as seen.
	seen := make([]crdt.Dot, 0, 100_001)
	for op := range 100_001 {
		seen = append(seen, crdt.Dot{Replica: crdt.ReplicaID(victim.dev), Seq: next, Op: uint32(op)})
	}
	vh := insHead(evil, id, victim.dev)
	hostile := insForgeChange(t, evil, id, key, insChange(evil.dev,
		[]crdt.Op{{Kind: crdt.OpPut, Record: "p1", Field: "v", Value: []byte("decoy"), Seen: seen}},
		[]crdt.Dep{{Replica: crdt.ReplicaID(victim.dev), Seq: next, Hash: vh.Hash}}))
	for _, x := range []*Agent{evil, victim, other} {
		if _, err := x.Ingest(hostile); err != nil {
			var re *RejectError
			if !errors.As(err, &re) {
				t.Fatalf("ingest on %s: %v", x.dev, err)
			}
		}
	}
	for _, x := range []*Agent{victim, other} {
		if n := insContextBytes(x, id); n > 64<<10 {
			t.Errorf("%s: one hostile change grew the space context to %d bytes", x.dev, n)
		}
	}
	// The victim writes p1 again; its write must stand everywhere.
	advPut(t, victim, sp.ID, "p1", "second")
	advSettle(t, victim, evil, other)
	for _, x := range []*Agent{victim, other, evil} {
		if v, err := advValue(x, sp.ID, "p1"); err != nil || v != "second" {
			t.Errorf("%s reads p1 = %q (%v), want the victim's acknowledged write %q", x.dev, v, err, "second")
		}
	}
	if d1, d2 := advDigest(t, victim, sp.ID), advDigest(t, other, sp.ID); d1 != d2 {
		t.Errorf("replicas differ: %+v vs %+v", d1, d2)
	}
	// Judged on every replica, the victim's own included (its write
	// resolved what the hostile change waited for), and shown in history
	// as a change that changed nothing — not as a write that replaced the
	// victim's.
	for _, x := range []*Agent{victim, other} {
		if n := x.Status().Rejected[RejectCausality]; n != 1 {
			t.Errorf("%s counts %d changes outside their causal context, want 1", x.dev, n)
		}
		hist, err := x.History(api.RecordRef{Space: sp.ID, Record: "p1"})
		if err != nil {
			t.Fatal(err)
		}
		found := false
		for _, e := range hist {
			if e.Author != evil.dev.String() {
				continue
			}
			found = true
			if e.Signature != "valid" || e.Outcome != api.OutcomeNoop || len(e.Ops) != 0 {
				t.Errorf("%s: history shows the hostile change as %+v", x.dev, e)
			}
		}
		if !found {
			t.Errorf("%s: history of p1 does not list the hostile change", x.dev)
		}
	}
	insRepairSame(t, other, sp.ID)
}

// Item 5: a validly signed, chained change whose body does not decode (or
// whose body is of a newer version) must get the same decision on every
// replica: one that holds the key and a relay (which never opens it) end
// with the same envelopes, and the author's later changes still apply.
func TestInsiderUndecodableChangeSameEverywhere(t *testing.T) {
	omn := newTestBureau(t, "OMN")
	evil := openTestAgent(t, newTestDevice(t, omn, "Evil", crypto.RoleOfficer))
	member := openTestAgent(t, newTestDevice(t, omn, "Member", crypto.RoleOfficer))
	relay := openTestAgent(t, newTestDevice(t, omn, "", crypto.RoleRelay))
	sp, err := member.CreateSpace("case", nil)
	if err != nil {
		t.Fatal(err)
	}
	id := advSpaceID(t, sp.ID)
	advPut(t, member, sp.ID, "p1", "first")
	advSettle(t, member, evil, relay)
	key := advKey(t, evil, id)
	bodies := []func(uint64, crdt.Timestamp) []byte{
		func(uint64, crdt.Timestamp) []byte { return append([]byte{2}, "not a change at all"...) },
		func(seq uint64, hlc crdt.Timestamp) []byte { // a newer version this build does not know
			b := insChange(evil.dev, []crdt.Op{{Kind: crdt.OpPut, Record: "p9", Field: "v", Value: []byte("x")}}, nil)(seq, hlc)
			b[0] = 99
			return b
		},
	}
	for _, body := range bodies {
		env := insForgeChange(t, evil, id, key, body)
		for _, x := range []*Agent{evil, relay, member} {
			x.Ingest(env) // the decision is checked below through the envelope sets
		}
	}
	advPut(t, evil, sp.ID, "p2", "after")
	advSettle(t, member, evil, relay)
	dm, dr := advDigest(t, member, sp.ID), advDigest(t, relay, sp.ID)
	if dm.Envelopes != dr.Envelopes || dm.Count != dr.Count {
		t.Fatalf("member and relay hold different envelopes: %+v vs %+v", dm, dr)
	}
	if v, err := advValue(member, sp.ID, "p2"); err != nil || v != "after" {
		t.Fatalf("the author's later change: p2 = %q (%v)", v, err)
	}
	if st := member.Status(); st.Rejected[RejectUndecoded] != 1 {
		t.Errorf("the undecodable change is not counted as evidence once: %v", st.Rejected)
	}
	insRepairSame(t, member, sp.ID)
}

// Item 2: a device of a bureau the space was never released to wraps a key
// it made to a member and writes under it: neither its key share nor its
// change may be accepted, and the member must not adopt the key.
func TestInsiderUnreleasedBureauCannotWrite(t *testing.T) {
	omn, tjk := newTestBureau(t, "OMN"), newTestBureau(t, "TJK")
	o1 := openTestAgent(t, newTestDevice(t, omn, "Owner", crypto.RoleOfficer, tjk))
	tj := openTestAgent(t, newTestDevice(t, tjk, "Outsider", crypto.RoleOfficer, omn))
	sp, err := o1.CreateSpace("omn only", nil)
	if err != nil {
		t.Fatal(err)
	}
	id := advSpaceID(t, sp.ID)
	advPut(t, o1, sp.ID, "p1", "owner's value")
	advSettle(t, o1, tj)
	fresh, err := crypto.NewSpaceKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	share, err := crypto.WrapKey(fresh, id, certOf(t, tj, o1.dev).Device, rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	senv := advForge(t, tj, id, crypto.KindKeyShare, share)
	tj.Ingest(senv)
	o1.Ingest(senv)
	if keys := advStateOf(t, o1, id).keys; len(keys) != 1 {
		t.Errorf("o1 holds %d epoch keys: it adopted one wrapped by a device of a bureau the space is not released to", len(keys))
	}
	cenv := insForgeChange(t, tj, id, fresh, insChange(tj.dev, []crdt.Op{{Kind: crdt.OpPut, Record: "p1", Field: "v", Value: []byte("outsider's value")}}, nil))
	tj.Ingest(cenv)
	o1.Ingest(cenv)
	r, err := o1.GetRecord(api.RecordRef{Space: sp.ID, Record: "p1"})
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range r.Fields["v"].Siblings {
		if s.Value == "outsider's value" {
			t.Fatalf("o1 shows a value written by a device of a bureau the space was never released to: %+v", r.Fields["v"])
		}
	}
	if n := len(advHeaders(t, o1, id, tj.dev)); n != 0 {
		t.Errorf("o1 stored %d envelopes of a device not entitled to the space", n)
	}
}

// Item 2: key shares for random space IDs must not create spaces (each one
// reloaded at every start).
func TestInsiderRandomSpacesBounded(t *testing.T) {
	omn := newTestBureau(t, "OMN")
	victim := openTestAgent(t, newTestDevice(t, omn, "Victim", crypto.RoleOfficer))
	evil := openTestAgent(t, newTestDevice(t, omn, "Evil", crypto.RoleOfficer))
	advCerts(t, victim, evil)
	key, _ := crypto.NewSpaceKey(rand.Reader)
	const n = 300
	for range n {
		var id crypto.SpaceID
		rand.Read(id[:])
		share, err := crypto.WrapKey(key, id, certOf(t, victim, victim.dev).Device, rand.Reader)
		if err != nil {
			t.Fatal(err)
		}
		victim.Ingest(advForge(t, evil, id, crypto.KindKeyShare, share))
	}
	if got := len(victim.SpaceIDs()); got > maxOrphanSpaces {
		t.Errorf("%d key shares for random spaces made %d spaces", n, got)
	}
	victim = advReopen(t, victim)
	if got := len(victim.SpaceIDs()); got != 0 {
		t.Errorf("after a restart %d spaces without a routing record were loaded", got)
	}
}

// A change that depends on another author's envelope it saw waits where
// that envelope is not held yet, and applies once it arrives; if that
// author is revoked below the envelope instead, the change applies anyway
// (what it saw is void everywhere) — the same state on every replica.
func TestInsiderDependentChangeWaitsThenApplies(t *testing.T) {
	omn := newTestBureau(t, "OMN")
	a := openTestAgent(t, newTestDevice(t, omn, "Alpha", crypto.RoleOfficer))
	x := openTestAgent(t, newTestDevice(t, omn, "Xray", crypto.RoleOfficer))
	b := openTestAgent(t, newTestDevice(t, omn, "Bravo", crypto.RoleOfficer))
	c := openTestAgent(t, newTestDevice(t, omn, "Charlie", crypto.RoleOfficer))
	sp, err := a.CreateSpace("case", nil)
	if err != nil {
		t.Fatal(err)
	}
	id := advSpaceID(t, sp.ID)
	advSettle(t, a, x, b, c)
	xBefore := insHead(x, id, x.dev).Seq
	advPut(t, x, sp.ID, "p1", "x's value")
	advMove(t, x, a)
	advPut(t, a, sp.ID, "p1", "a's overwrite") // saw x's value: depends on it
	// b gets a's log first: its overwrite waits for x's envelope.
	advEnvelopes(t, a, b, id, a)
	if _, err := advValue(b, sp.ID, "p1"); err == nil {
		t.Fatal("b applied a change before the change it overwrote")
	}
	if st := b.Status(); st.Rejected[RejectCausality] != 0 {
		t.Fatalf("a waiting change was counted as bad: %v", st.Rejected)
	}
	advEnvelopes(t, x, b, id, x)
	if v, err := advValue(b, sp.ID, "p1"); err != nil || v != "a's overwrite" {
		t.Fatalf("b after x's envelope: %q, %v", v, err)
	}
	// c gets a's log, then x is revoked below its write: a's overwrite
	// applies on c without x's envelope.
	advEnvelopes(t, a, c, id, a)
	rev := advRevoke(t, omn, x.dev, map[crypto.SpaceID]uint64{id: xBefore}, 0, time.Now())
	for _, r := range []*Agent{a, b, c} {
		advAddRev(t, r, rev)
	}
	if v, err := advValue(c, sp.ID, "p1"); err != nil || v != "a's overwrite" {
		t.Fatalf("c after the revocation: %q, %v", v, err)
	}
	advSameDigests(t, sp.ID, a, b, c)
	c = advReopen(t, c)
	advSameDigests(t, sp.ID, a, b, c)
	// repair rebuilds the same state from the envelopes.
	var again []*Agent
	for _, r := range []*Agent{a, c} {
		cfg := r.cfg
		r.Close()
		if err := Repair(context.Background(), cfg, io.Discard); err != nil {
			t.Fatal(err)
		}
		again = append(again, openTestAgent(t, cfg))
	}
	advSameDigests(t, sp.ID, append(again, b)...)
}

// Seen dots past a revoked device's cut-off name writes every replica
// removes: a change naming 100,000 of them changes nothing and does not
// grow the space's context.
func TestInsiderVoidDotsDoNotBloat(t *testing.T) {
	omn := newTestBureau(t, "OMN")
	a := openTestAgent(t, newTestDevice(t, omn, "Alpha", crypto.RoleOfficer))
	evil := openTestAgent(t, newTestDevice(t, omn, "Evil", crypto.RoleOfficer))
	x := openTestAgent(t, newTestDevice(t, omn, "Xray", crypto.RoleOfficer))
	sp, err := a.CreateSpace("case", nil)
	if err != nil {
		t.Fatal(err)
	}
	id := advSpaceID(t, sp.ID)
	advPut(t, a, sp.ID, "p1", "a's value")
	advSettle(t, a, evil, x)
	cut := insHead(a, id, x.dev).Seq
	rev := advRevoke(t, omn, x.dev, map[crypto.SpaceID]uint64{id: cut}, 0, time.Now())
	advAddRev(t, a, rev)
	advAddRev(t, evil, rev)
	seen := make([]crdt.Dot, 0, 100_000)
	for op := range 100_000 {
		seen = append(seen, crdt.Dot{Replica: crdt.ReplicaID(x.dev), Seq: cut + 1, Op: uint32(op)})
	}
	env := insForgeChange(t, evil, id, advKey(t, evil, id), insChange(evil.dev,
		[]crdt.Op{{Kind: crdt.OpPut, Record: "p2", Field: "v", Value: []byte("evil"), Seen: seen}},
		[]crdt.Dep{{Replica: crdt.ReplicaID(x.dev), Seq: cut + 1}}))
	advAccept(t, env, evil, a)
	if n := insContextBytes(a, id); n > 64<<10 {
		t.Errorf("a change naming 100,000 void dots grew the space context to %d bytes", n)
	}
	if v, err := advValue(a, sp.ID, "p2"); err != nil || v != "evil" {
		t.Errorf("the change's own write: %q, %v", v, err)
	}
	advSameDigests(t, sp.ID, a, evil)
	insRepairSame(t, a, sp.ID)
}
