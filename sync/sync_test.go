package sync_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"testing"
	"time"

	fsync "fieldsync/sync"
	"fieldsync/sync/synctest"
)

func TestTwoNodesExchange(t *testing.T) {
	c := synctest.NewCluster(t)
	nodes := c.Start(2, synctest.Options{})
	a, b := nodes[0], nodes[1]
	if !synctest.WaitMembers(10*time.Second, a, b) {
		t.Fatal("no membership")
	}
	sp := synctest.NewSpace()
	for i := 0; i < 5; i++ {
		a.Write(sp, []byte(fmt.Sprintf("a%d", i)))
		b.Write(sp, []byte(fmt.Sprintf("b%d", i)))
	}
	synctest.WaitConverged(t, 10*time.Second, a, b)
	if got := a.Store.Count(); got != 10 {
		t.Fatalf("a holds %d envelopes, want 10", got)
	}
	h, _ := b.Store.Heads(sp)
	if h[a.Dev.ID] != 5 || h[b.Dev.ID] != 5 {
		t.Fatalf("b heads %v", h)
	}
	// The store holds an envelope before the session that ingested it
	// counts it (at the end of its stream): wait for the counters.
	counted := func() bool { return a.Engine.Stats().Added > 0 && b.Engine.Stats().Added > 0 }
	if !synctest.WaitFor(10*time.Second, counted) {
		t.Fatalf("nothing received: %+v / %+v", a.Engine.Stats(), b.Engine.Stats())
	}
	peerSeen := func() bool {
		ps := a.Engine.Peers()
		return len(ps) == 1 && ps[0].Authenticated && ps[0].BytesSent > 0 && !ps[0].LastContact.IsZero()
	}
	if !synctest.WaitFor(10*time.Second, peerSeen) {
		t.Fatalf("peer status %+v", a.Engine.Peers())
	}
	_ = context.Background
	_ = fsync.ProfileLocal
}

func TestPartitionHeal(t *testing.T) {
	c := synctest.NewCluster(t)
	nodes := c.Start(5, synctest.Options{})
	if !synctest.WaitMembers(15*time.Second, nodes...) {
		t.Fatal("no membership")
	}
	sp := synctest.NewSpace()
	nodes[0].Write(sp, []byte("before"))
	synctest.WaitConverged(t, 15*time.Second, nodes...)

	left, right := nodes[:3], nodes[3:]
	c.Faults.Partition(left, right)
	for i, n := range nodes {
		for j := 0; j < 20; j++ {
			n.Write(sp, []byte(fmt.Sprintf("n%d-%d", i, j)))
		}
	}
	synctest.WaitConverged(t, 15*time.Second, left...)
	synctest.WaitConverged(t, 15*time.Second, right...)
	// Hold the partition until memberlist declares the other side dead, so
	// that healing needs the rejoin of remembered peers.
	if !synctest.WaitFor(30*time.Second, func() bool {
		return len(left[0].Engine.Members()) == 2 && len(right[0].Engine.Members()) == 1
	}) {
		t.Fatalf("partition not detected: members %d / %d", len(left[0].Engine.Members()), len(right[0].Engine.Members()))
	}
	if synctest.Converged(nodes...) {
		t.Fatal("partition leaked: all converged while partitioned")
	}
	if got, want := left[0].Store.Count(), 1+3*20; got != want {
		t.Fatalf("left side holds %d envelopes, want %d", got, want)
	}
	c.Faults.Heal()
	synctest.WaitConverged(t, 30*time.Second, nodes...)
	if got, want := nodes[4].Store.Count(), 1+5*20; got != want {
		t.Fatalf("after heal %d envelopes, want %d", got, want)
	}
	for _, n := range nodes {
		if n.Store.MaxAdded() > 1 {
			t.Fatalf("an envelope was applied twice on %s", n.Name())
		}
	}
}

func TestConvergeWithoutHints(t *testing.T) {
	c := synctest.NewCluster(t)
	nodes := c.Start(4, synctest.Options{DisableHints: true, SyncInterval: 300 * time.Millisecond})
	if !synctest.WaitMembers(15*time.Second, nodes...) {
		t.Fatal("no membership")
	}
	sp := synctest.NewSpace()
	for i, n := range nodes {
		for j := 0; j < 10; j++ {
			n.Write(sp, []byte(fmt.Sprintf("n%d-%d", i, j)))
		}
	}
	synctest.WaitConverged(t, 30*time.Second, nodes...)
	for _, n := range nodes {
		s := n.Engine.Stats()
		if s.HintsSent != 0 || s.HintsReceived != 0 {
			t.Fatalf("hints flowed with hints disabled: %+v", s)
		}
	}
}

func TestLargeEnvelopeAndCatchUp(t *testing.T) {
	c := synctest.NewCluster(t)
	var logs synctest.LogBuffer
	lg := logs.Logger(slog.LevelDebug)
	a := c.Add(synctest.Options{Logger: lg})
	sp := synctest.NewSpace()
	big := make([]byte, 20<<20)
	for i := range big {
		big[i] = byte(i * 7)
	}
	a.Write(sp, big)
	sp2 := synctest.NewSpace()
	for i := 0; i < 10_000; i++ {
		a.Write(sp2, []byte(fmt.Sprintf("record %d with a little payload", i)))
	}
	b := c.Add(synctest.Options{Logger: lg})
	synctest.WaitConverged(t, 40*time.Second, a, b)
	if got := b.Store.Count(); got != 10_001 {
		t.Fatalf("b holds %d envelopes", got)
	}
	got, err := b.Store.Get(sp, a.Dev.ID, 1)
	want, _ := a.Store.Get(sp, a.Dev.ID, 1)
	if err != nil || !bytes.Equal(got, want) {
		t.Fatalf("big envelope: %d bytes, %v", len(got), err)
	}
	for _, n := range []*synctest.Node{a, b} {
		if f := n.Engine.Stats().LargestFrameOut; f > fsync.MaxFrame {
			t.Fatalf("frame of %d bytes sent", f)
		}
	}
	if a.Engine.Stats().LargestFrameOut != fsync.MaxFrame {
		t.Fatalf("a's largest frame %d: the big envelope did not go in full frames", a.Engine.Stats().LargestFrameOut)
	}
	if !synctest.WaitFor(20*time.Second, func() bool {
		return a.Engine.Stats().BroadcastQueue == 0 && b.Engine.Stats().BroadcastQueue == 0
	}) {
		t.Fatalf("broadcast queues not empty: %d, %d", a.Engine.Stats().BroadcastQueue, b.Engine.Stats().BroadcastQueue)
	}
	for _, bad := range []string{"larger than", "exceeds", "too large"} {
		for _, r := range logs.Matching("") {
			if strings.Contains(r.Message, bad) || strings.Contains(fmt.Sprint(attrs(r)), bad) {
				t.Fatalf("log line about a size limit: %s %v", r.Message, attrs(r))
			}
		}
	}
	if b.Store.MaxAdded() != 1 {
		t.Fatal("an envelope was applied twice")
	}
}

func attrs(r slog.Record) map[string]string {
	m := map[string]string{}
	r.Attrs(func(a slog.Attr) bool { m[a.Key] = a.Value.String(); return true })
	return m
}

// idleSetup makes two nodes that hold the same envelopes of 3 authors, with
// no background rounds or hints.
func idleSetup(t testing.TB) (*synctest.Cluster, *synctest.Node, *synctest.Node, func(n int)) {
	c := synctest.NewCluster(t)
	o := synctest.Options{SyncInterval: -1, DisableHints: true}
	a := c.Add(o)
	b := c.Add(o)
	x := synctest.NewDevice(c.Bureau, fsync.RoleOfficer)
	for _, n := range []*synctest.Node{a, b} {
		if _, err := n.Auth.IngestMeshObject(fsync.Peer{}, x.Cert); err != nil {
			t.Fatal(err)
		}
	}
	sp := synctest.NewSpace()
	seq := map[fsync.PeerID]uint64{}
	authors := []*synctest.Device{a.Dev, b.Dev, x}
	// add brings both stores to n envelopes in total, spread over 3 authors.
	add := func(n int) {
		for total := a.Store.Count(); total < n; total++ {
			d := authors[total%3]
			seq[d.ID]++
			env := synctest.Seal(d, sp, seq[d.ID], []byte(fmt.Sprintf("change %d", total)))
			if err := a.Store.Put(env); err != nil {
				t.Fatal(err)
			}
			if err := b.Store.Put(env); err != nil {
				t.Fatal(err)
			}
		}
	}
	if !synctest.WaitMembers(10*time.Second, a, b) {
		t.Fatal("no membership")
	}
	return c, a, b, add
}

func TestIdleRoundCostIndependentOfRecords(t *testing.T) {
	_, a, b, add := idleSetup(t)
	ctx := context.Background()
	add(1000)
	if _, err := a.Engine.SyncWith(ctx, b.Dev.ID); err != nil { // warm: mesh objects
		t.Fatal(err)
	}
	r1, err := a.Engine.SyncWith(ctx, b.Dev.ID)
	if err != nil {
		t.Fatal(err)
	}
	add(10_000)
	r2, err := a.Engine.SyncWith(ctx, b.Dev.ID)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("idle round at 1,000: sent %d received %d; at 10,000: sent %d received %d",
		r1.BytesSent, r1.BytesReceived, r2.BytesSent, r2.BytesReceived)
	if r1.Sent+r1.Added+r2.Sent+r2.Added != 0 {
		t.Fatalf("idle rounds moved envelopes: %+v %+v", r1, r2)
	}
	if r1.BytesSent != r2.BytesSent || r1.BytesReceived != r2.BytesReceived {
		t.Fatalf("idle round cost grew with records: %+v vs %+v", r1, r2)
	}
	if r1.BytesSent == 0 || r1.BytesReceived == 0 {
		t.Fatal("no bytes counted")
	}
}

func TestUnauthenticatedPeerGetsNoSpace(t *testing.T) {
	c := synctest.NewCluster(t)
	o := synctest.Options{SyncInterval: 200 * time.Millisecond}
	a := c.Add(o)
	sp := synctest.NewSpace()
	a.Write(sp, []byte("secret routing metadata"))

	wrongKey := c.Add(synctest.Options{SyncInterval: 200 * time.Millisecond, WrongKey: true})
	noCert := c.Add(synctest.Options{SyncInterval: 200 * time.Millisecond, Device: synctest.NewDevice(nil, fsync.RoleOfficer)})
	otherBureau := synctest.NewBureau()
	untrusted := c.Add(synctest.Options{SyncInterval: 200 * time.Millisecond, Bureau: otherBureau, Trust: []*synctest.Bureau{c.Bureau, otherBureau}})
	honest := c.Add(o)
	rogues := []*synctest.Node{wrongKey, noCert, untrusted}

	synctest.WaitConverged(t, 15*time.Second, a, honest)
	if !synctest.WaitMembers(15*time.Second, append(rogues, a, honest)...) {
		t.Fatal("rogues with the mesh key should still be memberlist members")
	}
	// Several rounds each way, then check.
	if !synctest.WaitFor(15*time.Second, func() bool { return a.Engine.Stats().AuthFailures >= 6 }) {
		t.Fatalf("auth failures on a: %d", a.Engine.Stats().AuthFailures)
	}
	for _, r := range rogues {
		if _, err := r.Engine.SyncWith(context.Background(), a.Dev.ID); err == nil {
			t.Fatalf("rogue %s completed a round", r.Name())
		}
		if n := r.Store.Count(); n != 0 {
			t.Fatalf("rogue %s received %d envelopes", r.Name(), n)
		}
	}
	for _, p := range a.Engine.Peers() {
		for _, r := range rogues {
			if p.ID == r.Dev.ID && p.Authenticated {
				t.Fatalf("rogue %s marked authenticated", r.Name())
			}
		}
	}
}

func TestForgedEnvelopeCountedNeverForwarded(t *testing.T) {
	c := synctest.NewCluster(t)
	o := synctest.Options{SyncInterval: 200 * time.Millisecond}
	a := c.Add(o)
	b := c.Add(o)
	cc := c.Add(o)
	c.Faults.Cut(a, cc) // cc hears of a's envelopes only through b
	sp, good := synctest.NewSpace(), synctest.NewSpace()
	forger := synctest.NewDevice(nil, fsync.RoleOfficer)
	forged := synctest.Seal(forger, sp, 1, []byte("forged"))
	forged.Author = a.Dev.ID // claims a; signed by another key
	copy(forged.Data[20:36], a.Dev.ID[:])
	if err := a.Store.Put(forged); err != nil {
		t.Fatal(err)
	}
	a.Write(good, []byte("genuine"))
	synctest.WaitConverged(t, 15*time.Second, b, cc)
	if !synctest.WaitFor(15*time.Second, func() bool { return b.Store.Count() == 1 && cc.Store.Count() == 1 }) {
		t.Fatalf("genuine envelope did not spread: b %d, c %d", b.Store.Count(), cc.Store.Count())
	}
	if !synctest.WaitFor(10*time.Second, func() bool { return b.Engine.Stats().Rejected["signature"] > 0 }) {
		t.Fatalf("b's rejections: %v", b.Engine.Stats().Rejected)
	}
	if _, err := b.Store.Get(sp, a.Dev.ID, 1); err != fsync.ErrNotFound {
		t.Fatalf("b stored the forged envelope: %v", err)
	}
	time.Sleep(time.Second) // a few more rounds b <-> c
	if _, err := cc.Store.Get(sp, a.Dev.ID, 1); err != fsync.ErrNotFound {
		t.Fatal("c received the forged envelope")
	}
	if r := cc.Engine.Stats().Rejected; len(r) != 0 {
		t.Fatalf("c saw rejections %v: b forwarded something", r)
	}
}

func TestWrongMeshKeyFloodIsRateLimited(t *testing.T) {
	c := synctest.NewCluster(t)
	var logs synctest.LogBuffer
	every := 300 * time.Millisecond
	a := c.Add(synctest.Options{Logger: logs.Logger(slog.LevelInfo), LogEvery: every})
	otherKey := bytes.Repeat([]byte{7}, 32)
	// A device of the right bureau, with another mesh key.
	intruder := c.NewNode(synctest.Options{MeshKey: otherKey, Join: []string{}})
	if err := intruder.Engine.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	defer intruder.Engine.Close()

	start := time.Now()
	attempts := 0
	for ; attempts < 1000 && time.Since(start) < 30*time.Second; attempts++ {
		if n, err := intruder.Engine.Join(a.Engine.LocalAddr()); err == nil || n > 0 {
			t.Fatalf("join with another mesh key succeeded (attempt %d)", attempts)
		}
	}
	elapsed := time.Since(start)
	// The challenge also refuses it (HMAC proof of the mesh key).
	before := a.Engine.Stats().AuthFailures
	if _, err := intruder.Engine.SyncWithAddr(context.Background(), a.Dev.ID, a.Engine.LocalAddr()); !errors.Is(err, fsync.ErrUnauthenticated) {
		t.Fatalf("sync stream with another mesh key: %v", err)
	}
	if !synctest.WaitFor(5*time.Second, func() bool { return a.Engine.Stats().AuthFailures > before }) {
		t.Fatal("a did not refuse the intruder's stream")
	}
	if intruder.Store.Count() != 0 {
		t.Fatal("intruder received envelopes")
	}

	// A legitimate node still joins and syncs.
	b := c.Add(synctest.Options{})
	sp := synctest.NewSpace()
	b.Write(sp, []byte("after the flood"))
	synctest.WaitConverged(t, 15*time.Second, a, b)

	_ = a.Engine.Close() // flushes suppressed counts
	lines := logs.Matching("another mesh key")
	var suppressed int64
	for _, r := range lines {
		if v, ok := synctest.Attr(r, "suppressed"); ok {
			suppressed += int64(v.Uint64())
		}
	}
	t.Logf("%d join attempts in %v: %d log lines, %d suppressed", attempts, elapsed.Round(time.Millisecond), len(lines), suppressed)
	if len(lines) == 0 {
		t.Fatal("no log line says why the intruder was refused")
	}
	if v, ok := synctest.Attr(lines[0], "reason"); !ok || v.String() != "mesh key mismatch" {
		t.Fatalf("first line does not give the reason: %v", attrs(lines[0]))
	}
	maxLines := int(elapsed/every) + 3
	if len(lines) > maxLines {
		t.Fatalf("%d lines in %v: not rate-limited (max %d)", len(lines), elapsed, maxLines)
	}
	if suppressed < int64(attempts)/2 {
		t.Fatalf("suppressed count %d for %d attempts", suppressed, attempts)
	}
}

func TestInterruptedStreamResumes(t *testing.T) {
	c := synctest.NewCluster(t)
	o := synctest.Options{SyncInterval: -1, DisableHints: true}
	a := c.Add(o)
	b := c.Add(o)
	if !synctest.WaitMembers(10*time.Second, a, b) {
		t.Fatal("no membership")
	}
	// Let the join rounds (nothing to send) finish.
	synctest.WaitFor(2*time.Second, func() bool { return a.Engine.Stats().Rounds >= 2 })
	const n = 3000
	sp := synctest.NewSpace()
	payload := bytes.Repeat([]byte("x"), 1000)
	for i := 0; i < n; i++ {
		a.Write(sp, payload)
	}
	ctx := context.Background()
	c.Faults.CutStreamAfter(b, a, 1<<20) // about a third of the transfer
	if _, err := b.Engine.SyncWith(ctx, a.Dev.ID); err == nil {
		t.Fatal("cut round succeeded")
	}
	if c.Faults.Cuts() != 1 {
		t.Fatalf("%d cuts", c.Faults.Cuts())
	}
	partial := b.Store.Count()
	if partial == 0 || partial == n {
		t.Fatalf("after the cut b holds %d of %d: not a mid-transfer cut", partial, n)
	}
	r, err := b.Engine.SyncWith(ctx, a.Dev.ID)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("cut after %d envelopes; resumed round added %d, %d duplicates", partial, r.Added, r.Duplicates)
	if r.Added != uint64(n-partial) || r.Duplicates != 0 {
		t.Fatalf("resumed round added %d with %d duplicates, want %d and 0", r.Added, r.Duplicates, n-partial)
	}
	synctest.WaitConverged(t, 5*time.Second, a, b)
	if b.Store.MaxAdded() != 1 || b.Store.IngestCalls() > uint64(n)+1 {
		t.Fatalf("ingest calls %d for %d envelopes", b.Store.IngestCalls(), n)
	}
}
