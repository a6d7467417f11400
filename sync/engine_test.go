package sync_test

import (
	"context"
	"fmt"
	"net"
	gosync "sync"
	"testing"
	"time"

	fsync "fieldsync/sync"
	"fieldsync/sync/synctest"
)

func TestHintsAlonePropagate(t *testing.T) {
	c := synctest.NewCluster(t)
	nodes := c.Start(4, synctest.Options{SyncInterval: -1})
	if !synctest.WaitMembers(10*time.Second, nodes...) {
		t.Fatal("no membership")
	}
	time.Sleep(300 * time.Millisecond) // join rounds done
	sp := synctest.NewSpace()
	nodes[2].Write(sp, []byte("hinted"))
	synctest.WaitConverged(t, 10*time.Second, nodes...)
	var got uint64
	for _, n := range nodes {
		got += n.Engine.Stats().HintsReceived
	}
	if got == 0 {
		t.Fatal("converged without any hint: the test proves nothing")
	}
}

func TestEntitlementLimitsSpaces(t *testing.T) {
	c := synctest.NewCluster(t)
	shared, private := synctest.NewSpace(), synctest.NewSpace()
	out := synctest.NewDevice(c.Bureau, fsync.RoleOfficer)
	entitle := func(p fsync.Peer, s fsync.SpaceID) bool { return s != private || p.ID != out.ID }
	o := synctest.Options{SyncInterval: 200 * time.Millisecond, Entitle: entitle}
	nodes := c.Start(2, o)
	o.Device = out
	nodes = append(nodes, c.Add(o))
	nodes[0].Write(shared, []byte("for everyone"))
	nodes[0].Write(private, []byte("not for the outsider"))
	if !synctest.WaitFor(10*time.Second, func() bool {
		return nodes[1].Store.Count() == 2 && nodes[2].Store.Count() == 1
	}) {
		t.Fatalf("counts %d %d", nodes[1].Store.Count(), nodes[2].Store.Count())
	}
	time.Sleep(time.Second) // more rounds
	if h, _ := nodes[2].Store.Heads(private); len(h) != 0 {
		t.Fatalf("outsider holds %v of the private space", h)
	}
}

func TestRestartRejoinsRememberedPeers(t *testing.T) {
	c := synctest.NewCluster(t)
	o := synctest.Options{SyncInterval: 200 * time.Millisecond}
	a := c.Add(o)
	b := c.Add(o)
	sp := synctest.NewSpace()
	a.Write(sp, []byte("one"))
	synctest.WaitConverged(t, 10*time.Second, a, b)
	if ps, _ := b.Store.LoadPeers(); len(ps) != 1 || ps[0].ID != a.Dev.ID || ps[0].Addr != a.Engine.LocalAddr() {
		t.Fatalf("b remembers %+v", ps)
	}
	b2 := c.Restart(b, o) // new port, no join addresses
	a.Write(sp, []byte("two"))
	synctest.WaitConverged(t, 15*time.Second, a, b2)
	if b2.Store.Count() != 2 {
		t.Fatalf("b holds %d", b2.Store.Count())
	}
}

// A client that opens a TCP connection and sends nothing (or garbage that
// looks like TLS) must not stall memberlist or sync.
func TestSlowAndGarbageStreams(t *testing.T) {
	c := synctest.NewCluster(t)
	a := c.Add(synctest.Options{SyncInterval: 200 * time.Millisecond})
	var idle []net.Conn
	for i := 0; i < 20; i++ {
		conn, err := net.Dial("tcp", a.Engine.LocalAddr())
		if err != nil {
			t.Fatal(err)
		}
		idle = append(idle, conn)
		defer conn.Close()
	}
	for i := 0; i < 20; i++ {
		conn, err := net.Dial("tcp", a.Engine.LocalAddr())
		if err != nil {
			t.Fatal(err)
		}
		fmt.Fprintf(conn, "\x16\x03\x01garbage that is not a client hello")
		conn.Close()
	}
	b := c.Add(synctest.Options{SyncInterval: 200 * time.Millisecond})
	sp := synctest.NewSpace()
	b.Write(sp, []byte("through"))
	synctest.WaitConverged(t, 10*time.Second, a, b)
	if _, err := b.Engine.SyncWith(context.Background(), a.Dev.ID); err != nil {
		t.Fatalf("round with idle clients connected: %v", err)
	}
	_ = idle
}

type observingStore struct {
	fsync.Store
	mu   gosync.Mutex
	seen map[fsync.PeerID]fsync.Vector
}

func (o *observingStore) ObservePeerHeads(peer fsync.PeerID, space fsync.SpaceID, heads fsync.Vector) {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.seen[peer] = heads
}

func TestPeerHeadsObserverSeesPeerVectors(t *testing.T) {
	c := synctest.NewCluster(t)
	obs := &observingStore{seen: map[fsync.PeerID]fsync.Vector{}}
	a := c.Add(synctest.Options{SyncInterval: 200 * time.Millisecond, Tweak: func(cfg *fsync.Config) {
		obs.Store = cfg.Store
		cfg.Store = obs
	}})
	b := c.Add(synctest.Options{SyncInterval: 200 * time.Millisecond})
	sp := synctest.NewSpace()
	a.Write(sp, []byte("x"))
	a.Write(sp, []byte("y"))
	if !synctest.WaitFor(10*time.Second, func() bool {
		obs.mu.Lock()
		defer obs.mu.Unlock()
		return obs.seen[b.Dev.ID][a.Dev.ID] == 2
	}) {
		t.Fatalf("a never learned that b holds its 2 writes: %v", obs.seen)
	}
}

// A node that crashes (others declare it dead, it never leaves) and comes
// back from another address keeps its name and is accepted again.
func TestCrashedNodeReturnsFromNewAddress(t *testing.T) {
	c := synctest.NewCluster(t)
	o := synctest.Options{SyncInterval: 300 * time.Millisecond}
	nodes := c.Start(3, o)
	a, b, x := nodes[0], nodes[1], nodes[2]
	sp := synctest.NewSpace()
	a.Write(sp, []byte("before"))
	synctest.WaitConverged(t, 10*time.Second, nodes...)
	c.Faults.Partition([]*synctest.Node{a, b}, []*synctest.Node{x})
	start := time.Now()
	if !synctest.WaitFor(30*time.Second, func() bool { return len(a.Engine.Members()) == 1 }) {
		t.Fatal("x not declared dead")
	}
	t.Logf("x declared dead after %v", time.Since(start))
	oldAddr := x.Engine.LocalAddr()
	_ = x.Engine.Close() // its leave message is lost in the partition: a crash, as far as a and b know
	c.Faults.Heal()
	x2 := c.Restart(x, o)
	if x2.Engine.LocalAddr() == oldAddr {
		t.Fatal("restarted on the same address: the test proves nothing")
	}
	if !synctest.WaitFor(20*time.Second, func() bool {
		for _, id := range a.Engine.Members() {
			if id == x2.Dev.ID {
				return true
			}
		}
		return false
	}) {
		t.Fatalf("a does not accept x back from %s (was %s)", x2.Engine.LocalAddr(), oldAddr)
	}
	t.Logf("x back after %v", time.Since(start))
	a.Write(sp, []byte("after"))
	synctest.WaitConverged(t, 10*time.Second, a, b, x2)
}

// TestSimultaneousRoundsMerge: two nodes that each wrote a batch learn of
// the other's at about the same time (hints) and both start a round; over a
// slow link both rounds run at the same time. Only one may carry the batches: the
// node with the higher ID ends its own background round for the peer's, so
// no envelope crosses twice.
func TestSimultaneousRoundsMerge(t *testing.T) {
	c := synctest.NewCluster(t)
	o := synctest.Options{SyncInterval: -1}
	a := c.Add(o)
	b := c.Add(o)
	if !synctest.WaitMembers(15*time.Second, a, b) {
		t.Fatal("no membership")
	}
	quiesceRounds(t, a, b)
	c.Faults.SlowStreams(100 * time.Millisecond)
	sp := synctest.NewSpace()
	const n = 400
	for _, node := range []*synctest.Node{a, b} {
		for i := 0; i < n; i++ {
			if err := node.Store.Put(node.Seal(sp, []byte(fmt.Sprintf("%s %d", node.Name(), i)))); err != nil {
				t.Fatal(err)
			}
		}
	}
	a.Engine.Notify()
	b.Engine.Notify()
	synctest.WaitConverged(t, 30*time.Second, a, b)
	quiesceRounds(t, a, b)
	sa, sb := a.Engine.Stats(), b.Engine.Stats()
	t.Logf("added %d+%d, duplicates %d+%d, rounds merged %d+%d", sa.Added, sb.Added, sa.Duplicates, sb.Duplicates, sa.RoundsMerged, sb.RoundsMerged)
	if sa.Added != n || sb.Added != n {
		t.Fatalf("added %d and %d, want %d each", sa.Added, sb.Added, n)
	}
	if d := sa.Duplicates + sb.Duplicates; d != 0 {
		t.Fatalf("%d envelopes crossed twice: two rounds between one pair carried the same batches", d)
	}
	if sa.RoundsMerged+sb.RoundsMerged == 0 {
		t.Fatal("no round merged: the rounds did not overlap, the test proves nothing")
	}
}

// TestHintsFanOut: one write reaches every node through hints alone, and the
// writer does not serve a session to every other node: a hint names a
// holder, receivers pull from it and only then pass the hint on naming
// themselves. The writer's own hint goes out RetransmitMult·⌈log10(N+1)⌉
// times (10 at 16 nodes), so fewer than N-1 nodes can pull from it; the rest
// pull from nodes that already hold the write. With PullFromWriter (the
// behaviour before fan-out) the writer serves all N-1, and this test fails.
func TestHintsFanOut(t *testing.T) {
	const n = 16
	c := synctest.NewCluster(t)
	nodes := c.Start(n, synctest.Options{SyncInterval: -1})
	if !synctest.WaitMembers(30*time.Second, nodes...) {
		t.Fatal("no full membership")
	}
	quiesceRounds(t, nodes...) // the join rounds are over
	before := make([]fsync.Stats, n)
	for i, x := range nodes {
		before[i] = x.Engine.Stats()
	}
	sp := synctest.NewSpace()
	writer := nodes[3]
	writer.Write(sp, []byte("fan out"))
	synctest.WaitConverged(t, 30*time.Second, nodes...)
	quiesceRounds(t, nodes...)
	served := 0 // nodes other than the writer that served or ran a hint round
	var pulls uint64
	for i, x := range nodes {
		st := x.Engine.Stats()
		pulls += st.HintPulls - before[i].HintPulls
		if x != writer && st.Rounds-before[i].Rounds > st.HintPulls-before[i].HintPulls {
			served++
		}
	}
	ws := writer.Engine.Stats()
	writerRounds := ws.Rounds - before[3].Rounds
	t.Logf("%d nodes: the writer ran %d rounds, %d hint pulls in all, %d other nodes served pulls", n, writerRounds, pulls, served)
	if writerRounds >= n-1 {
		t.Errorf("the writer served %d rounds for one write: every node pulled from it", writerRounds)
	}
	if served == 0 {
		t.Error("no node but the writer served a pull: the write did not fan out")
	}
}
