package sync_test

import (
	"bytes"
	"testing"
	"time"

	fsync "fieldsync/sync"
	"fieldsync/sync/synctest"
)

// budgetPair is a node A holding envelopes of two other officers — X with a
// large value first, then a small change; Y with five small changes — and
// a client B of A: its rounds run only when asked (Notify), none on joins
// or timers, so each call of pull is exactly one round.
func budgetPair(t *testing.T, budget fsync.Budget) (a, b *synctest.Node, sp fsync.SpaceID, x, y *synctest.Device) {
	c := synctest.NewCluster(t)
	a = c.Add(synctest.Options{SyncInterval: -1, DisableHints: true, Tweak: func(cfg *fsync.Config) { cfg.Budget = budget }})
	b = c.Add(clientOpts(a.Engine.LocalAddr()))
	x, y = synctest.NewDevice(c.Bureau, fsync.RoleOfficer), synctest.NewDevice(c.Bureau, fsync.RoleOfficer)
	for _, n := range []*synctest.Node{a, b} {
		n.Auth.Know(x.Cert, y.Cert)
	}
	if !synctest.WaitFor(10*time.Second, func() bool { return watching(b) && a.Engine.Stats().Rounds > 0 }) {
		t.Fatalf("client not watching: %+v", b.Engine.Upstreams())
	}
	sp = synctest.NewSpace()
	return a, b, sp, x, y
}

func fill(t *testing.T, a *synctest.Node, sp fsync.SpaceID, x, y *synctest.Device) {
	t.Helper()
	put := func(env fsync.Envelope) {
		if err := a.Store.Put(env); err != nil {
			t.Fatal(err)
		}
	}
	put(synctest.Seal(x, sp, 1, bytes.Repeat([]byte("p"), 200<<10))) // a passport scan
	put(synctest.Seal(x, sp, 2, []byte("small change after the scan")))
	for i := uint64(1); i <= 5; i++ {
		put(synctest.Seal(y, sp, i, []byte("small change")))
	}
}

func heads(t *testing.T, n *synctest.Node, sp fsync.SpaceID, x, y *synctest.Device) (uint64, uint64) {
	t.Helper()
	h, err := n.Store.Heads(sp)
	if err != nil {
		t.Fatal(err)
	}
	return h[x.ID], h[y.ID]
}

// pull has the client b run one round with a and waits until both ends
// have booked it.
func pull(t *testing.T, b, a *synctest.Node) {
	t.Helper()
	ra, rb := a.Engine.Stats().Rounds, b.Engine.Stats().Rounds
	b.Engine.Notify()
	if !synctest.WaitFor(10*time.Second, func() bool {
		return a.Engine.Stats().Rounds > ra && b.Engine.Stats().Rounds > rb
	}) {
		t.Fatal("no round")
	}
}

// Small envelopes go before large ones, and a session budget holds the rest
// back for later rounds without ever stalling: each round sends at least
// one envelope.
func TestBudgetSessionSmallFirst(t *testing.T) {
	a, b, sp, x, y := budgetPair(t, fsync.Budget{SessionBytes: 20 << 10})
	fill(t, a, sp, x, y)

	pull(t, b, a)
	if hx, hy := heads(t, b, sp, x, y); hx != 0 || hy != 5 {
		t.Fatalf("after round 1: X at %d, Y at %d; want the small changes of Y (5) and not X's scan", hx, hy)
	}
	if st := a.Engine.Stats(); st.HeldBackEnvelopes != 1 || st.HeldBackBytes < 200<<10 || st.HeldBackSince.IsZero() {
		t.Errorf("held back %d envelopes, %d bytes, since %v: want the scan", st.HeldBackEnvelopes, st.HeldBackBytes, st.HeldBackSince)
	}
	pull(t, b, a)
	if hx, _ := heads(t, b, sp, x, y); hx != 1 {
		t.Fatalf("after round 2: X at %d, want 1 (the scan alone, over the budget but the round's first)", hx)
	}
	pull(t, b, a)
	if hx, _ := heads(t, b, sp, x, y); hx != 2 {
		t.Fatalf("after round 3: X at %d, want 2", hx)
	}
	if st := a.Engine.Stats(); st.HeldBackEnvelopes != 0 || !st.HeldBackSince.IsZero() {
		t.Errorf("still holding back %d envelopes", st.HeldBackEnvelopes)
	}
}

// Once the day's budget is spent, large values wait; small changes still go.
func TestBudgetDailyHoldsLargeValues(t *testing.T) {
	a, b, sp, x, y := budgetPair(t, fsync.Budget{DailyBytes: 1})
	if a.Engine.Stats().BudgetDayBytes == 0 { // the client's first round spent the day's byte
		t.Fatal("no bytes counted for today")
	}
	fill(t, a, sp, x, y)
	pull(t, b, a)
	pull(t, b, a)
	if hx, hy := heads(t, b, sp, x, y); hx != 0 || hy != 5 {
		t.Fatalf("X at %d, Y at %d: want Y's small changes only", hx, hy)
	}
	if st := a.Engine.Stats(); st.HeldBackEnvelopes != 1 {
		t.Errorf("held back %d envelopes, want 1", st.HeldBackEnvelopes)
	}
}

// A node sends its own log of a space first: it holds the key shares this
// node wrapped for the peer (a device just enrolled), without which the
// rest of the space arrives unreadable and waits. With a budget of one
// envelope a round, the first round carries A's own envelope although
// another author's log sorts before it (before, authors went in ID order
// and the key share came last).
func TestOwnLogFirst(t *testing.T) {
	c := synctest.NewCluster(t)
	a := c.Add(synctest.Options{SyncInterval: -1, DisableHints: true, Tweak: func(cfg *fsync.Config) { cfg.Budget = fsync.Budget{SessionBytes: 1} }})
	b := c.Add(clientOpts(a.Engine.LocalAddr()))
	var y *synctest.Device
	for range 64 {
		if d := synctest.NewDevice(c.Bureau, fsync.RoleOfficer); d.ID.Compare(a.Dev.ID) < 0 {
			y = d
			break
		}
	}
	if y == nil {
		t.Fatal("no device ID sorting before A's in 64 tries")
	}
	for _, n := range []*synctest.Node{a, b} {
		n.Auth.Know(y.Cert)
	}
	if !synctest.WaitFor(10*time.Second, func() bool { return watching(b) && a.Engine.Stats().Rounds > 0 }) {
		t.Fatalf("client not watching: %+v", b.Engine.Upstreams())
	}
	sp := synctest.NewSpace()
	for i := uint64(1); i <= 3; i++ {
		if err := a.Store.Put(synctest.Seal(y, sp, i, []byte("a change of Y"))); err != nil {
			t.Fatal(err)
		}
	}
	if err := a.Store.Put(a.Seal(sp, []byte("A's key share for B"))); err != nil {
		t.Fatal(err)
	}
	pull(t, b, a)
	h, err := b.Store.Heads(sp)
	if err != nil {
		t.Fatal(err)
	}
	if h[a.Dev.ID] != 1 || h[y.ID] != 0 {
		t.Fatalf("after one round of one envelope B holds A at %d and Y at %d; want A's own envelope first", h[a.Dev.ID], h[y.ID])
	}
}
