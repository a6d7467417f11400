package sync

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"fmt"
	"net"
	"testing"
	"time"

	"github.com/hashicorp/memberlist"
)

func startStubEngine(t *testing.T, store Store) *Engine {
	t.Helper()
	_, key, _ := ed25519.GenerateKey(rand.Reader)
	e, err := New(Config{Store: store, Auth: stubAuth{key}, Profile: ProfileLocal, BindAddr: "127.0.0.1:0",
		MeshKeys: [][]byte{make([]byte, 32)}, SyncInterval: -1, DisableHints: true})
	if err != nil {
		t.Fatal(err)
	}
	if err := e.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = e.Close() })
	return e
}

func fakeID(i int) PeerID {
	var id PeerID
	// Below the stub's own ID (1): the other side would start the join
	// round, so none is dialed here.
	i++
	id[12], id[13], id[14], id[15] = byte(i>>24), byte(i>>16), byte(i>>8), byte(i)
	return id
}

// TestPeerTableBoundedUnderMemberFlood: a member holding the mesh key can
// gossip alive messages for any number of invented nodes at addresses of
// its choosing (memberlist calls NotifyJoin for each). The engine's peer
// table must stay bounded, and once those nodes are gone none of their
// addresses may be dialed: nobody ever authenticated at them.
func TestPeerTableBoundedUnderMemberFlood(t *testing.T) {
	e := startStubEngine(t, NewMemStore(nil))
	d := &delegate{e: e}
	const n = 20_000
	for i := 0; i < n; i++ {
		node := &memberlist.Node{Name: fakeID(i).String(), Addr: net.IPv4(192, 0, 2, byte(i)), Port: uint16(1000 + i%50000)}
		d.NotifyJoin(node)
	}
	e.mu.Lock()
	size := len(e.peers)
	e.mu.Unlock()
	for i := 0; i < n; i++ {
		d.NotifyLeave(&memberlist.Node{Name: fakeID(i).String(), Addr: net.IPv4(192, 0, 2, byte(i)), Port: uint16(1000 + i%50000)})
	}
	targets := e.offlineTargets()
	e.mu.Lock()
	after := len(e.peers)
	e.mu.Unlock()
	t.Logf("peer table: %d entries after %d forged joins, %d after they left; %d rejoin targets", size, n, after, len(targets))
	if size > 4096 {
		t.Errorf("peer table grew to %d entries", size)
	}
	if len(targets) != 0 {
		t.Errorf("%d addresses no authenticated peer named would be dialed by the rejoin loop", len(targets))
	}
}

// TestStaleRememberedPeersExpire: peers remembered long ago are not
// rejoined for ever, and the remembered list loaded is bounded.
func TestStaleRememberedPeersExpire(t *testing.T) {
	st := NewMemStore(nil)
	old := time.Now().Add(-400 * 24 * time.Hour)
	for i := 0; i < 10_000; i++ {
		_ = st.SavePeer(KnownPeer{ID: fakeID(i), Addr: fmt.Sprintf("192.0.2.%d:%d", i%250, 1000+i), Role: RoleOfficer, LastSeen: old})
	}
	fresh := fakeID(1 << 20)
	_ = st.SavePeer(KnownPeer{ID: fresh, Addr: "192.0.2.1:7946", Role: RoleOfficer, LastSeen: time.Now()})
	e := startStubEngine(t, st)
	var targets []string
	for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
		if targets = e.offlineTargets(); len(targets) > 0 {
			break
		}
	}
	t.Logf("rejoin targets from 10,001 remembered peers (10,000 unseen for 400 days): %d", len(targets))
	if len(targets) != 1 || targets[0] != "192.0.2.1:7946" {
		t.Fatalf("rejoin targets %d (want only the recently seen peer)", len(targets))
	}
}
