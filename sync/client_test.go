package sync_test

import (
	"context"
	"testing"
	"time"

	fsync "fieldsync/sync"
	"fieldsync/sync/synctest"
)

// clientOpts makes a client-mode node whose only upstream is addr.
func clientOpts(addr string) synctest.Options {
	return synctest.Options{SyncInterval: -1, Join: []string{addr}, Tweak: func(c *fsync.Config) {
		c.Client = true
		c.BindAddr = "" // a client listens on nothing
	}}
}

func watching(n *synctest.Node) bool {
	for _, u := range n.Engine.Upstreams() {
		if u.State != "watching" {
			return false
		}
	}
	return len(n.Engine.Upstreams()) > 0
}

// Two clients that nobody can reach, a relay and a reachable officer:
// changes flow both ways through the relay's watch streams and hints, with
// no periodic rounds anywhere, and the clients never become members.
func TestClientModeThroughRelay(t *testing.T) {
	c := synctest.NewCluster(t)
	relay := c.Add(synctest.Options{Device: synctest.NewDevice(c.Bureau, fsync.RoleRelay), SyncInterval: -1})
	// The officer learns the clients' writes from the relay's hints, one
	// best-effort gossip message each; under the whole suite's load one was
	// seen lost (twice in seven runs), and then only anti-entropy brings the
	// write, as in the field: the officer has a short interval of it. The
	// clients get everything by the relay's nudges (checked below).
	officer := c.Add(synctest.Options{SyncInterval: 2 * time.Second})
	a := c.Add(clientOpts(relay.Engine.LocalAddr()))
	b := c.Add(clientOpts(relay.Engine.LocalAddr()))
	if a.Engine.LocalAddr() != "" || !a.Engine.IsClient() {
		t.Fatalf("client listens at %q", a.Engine.LocalAddr())
	}
	if !synctest.WaitFor(10*time.Second, func() bool {
		return watching(a) && watching(b) && relay.Engine.Stats().Watchers == 2 && len(relay.Engine.Members()) == 1
	}) {
		t.Fatalf("clients not watching: a %+v b %+v relay watchers %d", a.Engine.Upstreams(), b.Engine.Upstreams(), relay.Engine.Stats().Watchers)
	}
	sp := synctest.NewSpace()
	a.Write(sp, []byte("written behind a NAT"))
	synctest.WaitConverged(t, 10*time.Second, a, b, relay, officer)
	officer.Write(sp, []byte("written by a reachable officer"))
	synctest.WaitConverged(t, 10*time.Second, a, b, relay, officer)
	b.Write(sp, []byte("the other client answers"))
	synctest.WaitConverged(t, 10*time.Second, a, b, relay, officer)

	if got := relay.Engine.Members(); len(got) != 1 || got[0] != officer.Dev.ID {
		t.Errorf("relay's members %v, want only the officer: clients are not members", got)
	}
	if st := relay.Engine.Stats(); st.NudgesSent == 0 {
		t.Errorf("relay sent no nudges: %+v", st)
	}
	for _, n := range []*synctest.Node{a, b} {
		u := n.Engine.Upstreams()
		if len(u) != 1 || u[0].Peer != relay.Dev.ID || u[0].Streams != 1 || u[0].Nudges == 0 {
			t.Errorf("upstream status %+v: want one stream to the relay, nudged", u)
		}
		if st := n.Engine.Stats(); st.Duplicates != 0 {
			t.Errorf("client received %d duplicates", st.Duplicates)
		}
	}
}

// A client whose upstream goes away dials again with backoff, and the
// first round of its new stream carries what it wrote meanwhile.
func TestClientModeRedialsAndResumes(t *testing.T) {
	c := synctest.NewCluster(t)
	relayDev := synctest.NewDevice(c.Bureau, fsync.RoleRelay)
	relay := c.NewNode(synctest.Options{Device: relayDev, SyncInterval: -1})
	if err := relay.Engine.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	addr := relay.Engine.LocalAddr()
	a := c.Add(clientOpts(addr))
	sp := synctest.NewSpace()
	a.Write(sp, []byte("one"))
	synctest.WaitConverged(t, 10*time.Second, a, relay)
	_ = relay.Engine.Close()

	a.Write(sp, []byte("two, while the relay is away"))
	if !synctest.WaitFor(10*time.Second, func() bool {
		u := a.Engine.Upstreams()
		return len(u) == 1 && u[0].State == "backoff" && u[0].LastErr != ""
	}) {
		t.Fatalf("client did not notice: %+v", a.Engine.Upstreams())
	}
	// The relay comes back at the same address (its store kept).
	relay2, err := fsync.New(fsync.Config{Store: relay.Store, Auth: relay.Auth, Role: fsync.RoleRelay, Profile: fsync.ProfileLocal,
		BindAddr: addr, MeshKeys: [][]byte{c.MeshKey}, SyncInterval: -1})
	if err != nil {
		t.Fatal(err)
	}
	if err := relay2.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = relay2.Close() })
	relay.Engine = relay2
	synctest.WaitConverged(t, 20*time.Second, a, relay)
	if u := a.Engine.Upstreams(); u[0].Streams < 2 {
		t.Errorf("upstream %+v: want a second stream", u[0])
	}
	if st := relay2.Stats(); st.Duplicates != 0 {
		t.Errorf("relay received %d duplicates after the redial", st.Duplicates)
	}
}
