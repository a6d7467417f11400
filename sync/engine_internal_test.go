package sync

import (
	"crypto/ed25519"
	"crypto/rand"
	"crypto/tls"
	"log"
	"log/slog"
	"slices"
	"strings"
	"testing"
	"time"
)

// stubAuth is the least Authenticator New needs.
type stubAuth struct{ key ed25519.PrivateKey }

func (a stubAuth) LocalID() PeerID                                { return PeerID{1} }
func (a stubAuth) TLSCertificate() (tls.Certificate, error)       { return SelfSignedTLS(a.key) }
func (a stubAuth) Certificate() []byte                            { return nil }
func (a stubAuth) SignChallenge(Transcript, Side) ([]byte, error) { return nil, nil }
func (a stubAuth) VerifyPeer([]byte, Transcript, Side, []byte) (Peer, error) {
	return Peer{}, ErrUnauthenticated
}
func (a stubAuth) Entitled(Peer, SpaceID) bool                 { return false }
func (a stubAuth) MeshObjects() ([][]byte, error)              { return nil, nil }
func (a stubAuth) IngestMeshObject(Peer, []byte) (bool, error) { return false, nil }

func TestMemberlistConfigPerProfile(t *testing.T) {
	_, key, _ := ed25519.GenerateKey(rand.Reader)
	for _, p := range []Profile{"", ProfileWAN, ProfileLAN, ProfileLocal} {
		e, err := New(Config{Store: NewMemStore(nil), Auth: stubAuth{key}, Profile: p, BindAddr: "127.0.0.1:0",
			Advertise: "192.0.2.7:7000", MeshKeys: [][]byte{make([]byte, 32)}})
		if err != nil {
			t.Fatal(err)
		}
		mc := e.memberlistConfig("127.0.0.1", 7946, log.New(e.logw, "", 0))
		if mc.Name != (PeerID{1}).String() || mc.BindAddr != "127.0.0.1" || mc.AdvertiseAddr != "192.0.2.7" || mc.AdvertisePort != 7000 {
			t.Errorf("%q: addressing %s %s %s:%d", p, mc.Name, mc.BindAddr, mc.AdvertiseAddr, mc.AdvertisePort)
		}
		if mc.EnableCompression || mc.Keyring == nil || mc.Label != DefaultLabel || mc.LogOutput != nil || mc.Logger == nil {
			t.Errorf("%q: compression %v keyring %v label %q", p, mc.EnableCompression, mc.Keyring != nil, mc.Label)
		}
		if mc.DeadNodeReclaimTime <= 0 {
			t.Errorf("%q: a crashed node could never come back with a new address", p)
		}
		if mc.GossipNodes < 4 || mc.RetransmitMult < 4 || mc.GossipInterval > 300*time.Millisecond {
			t.Errorf("%q: gossip nodes %d, retransmit %d, interval %v", p, mc.GossipNodes, mc.RetransmitMult, mc.GossipInterval)
		}
		if role, v, err := decodeMeta(mc.Delegate.NodeMeta(512)); err != nil || role != RoleOfficer || v != ProtocolVersion {
			t.Errorf("%q: meta %v %v %v", p, role, v, err)
		}
	}
}

func TestLogBridgeLevelsAndRateLimit(t *testing.T) {
	var got []string
	h := slog.NewTextHandler(writerFunc(func(p []byte) (int, error) { got = append(got, string(p)); return len(p), nil }),
		&slog.HandlerOptions{Level: slog.LevelDebug})
	b := newLogBridge(slog.New(h), time.Hour)
	l := log.New(b, "", 0)
	l.Printf("[DEBUG] memberlist: Stream connection from=127.0.0.1:1")
	for i := 0; i < 50; i++ {
		l.Printf("[ERR] memberlist: failed to receive: no installed keys could decrypt the message from=127.0.0.1:%d", 1000+i)
	}
	b.flush(true)
	if len(got) != 3 {
		t.Fatalf("%d lines: %q", len(got), got)
	}
	if !strings.Contains(got[0], "level=DEBUG") {
		t.Errorf("routine line not at debug: %s", got[0])
	}
	if !strings.Contains(got[1], "level=ERROR") || !strings.Contains(got[1], `reason="mesh key mismatch"`) {
		t.Errorf("problem line: %s", got[1])
	}
	if !strings.Contains(got[2], "suppressed=49") {
		t.Errorf("flush line: %s", got[2])
	}
}

type writerFunc func([]byte) (int, error)

func (f writerFunc) Write(p []byte) (int, error) { return f(p) }

// TestJoinRoundBudget: a node that sees many members appear at once (it
// rejoined a large mesh) starts a few join rounds, then one per quarter
// of the sync interval; the rest are counted and left to the interval.
func TestJoinRoundBudget(t *testing.T) {
	_, key, _ := ed25519.GenerateKey(rand.Reader)
	e, err := New(Config{Store: NewMemStore(nil), Auth: stubAuth{key}, Profile: ProfileLocal, BindAddr: "127.0.0.1:0",
		MeshKeys: [][]byte{make([]byte, 32)}, SyncInterval: 8 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	started := 0
	for i := 0; i < 1000; i++ { // a thousand members appear at once
		if e.joinRoundLocked() {
			started++
		}
	}
	if started != joinRoundBurst || e.stats.JoinRoundsSkipped != 1000-joinRoundBurst {
		t.Fatalf("%d join rounds started, %d skipped; want %d and %d", started, e.stats.JoinRoundsSkipped, joinRoundBurst, 1000-joinRoundBurst)
	}
	e.joinLast = e.joinLast.Add(-2 * time.Second) // a quarter of the interval later
	if !e.joinRoundLocked() || e.joinRoundLocked() {
		t.Fatal("a quarter interval later, want exactly one more join round")
	}
	e.joinLast = e.joinLast.Add(-time.Hour) // long after: the budget is full again, not more
	started = 0
	for i := 0; i < 10; i++ {
		if e.joinRoundLocked() {
			started++
		}
	}
	if started != joinRoundBurst {
		t.Fatalf("after a long quiet, %d join rounds at once; want %d", started, joinRoundBurst)
	}
}

// Memberlist refuting, again and again, that this node is suspect or dead
// (peers cannot reach it) calls OnUnreachable once, relays first; a
// refutation or two (a lossy link) does not, and nothing does without
// DetectUnreachable.
func TestDetectUnreachable(t *testing.T) {
	_, key, _ := ed25519.GenerateKey(rand.Reader)
	for _, detect := range []bool{false, true} {
		got := make(chan []string, 2)
		e, err := New(Config{Store: NewMemStore(nil), Auth: stubAuth{key}, Profile: ProfileLocal, BindAddr: "127.0.0.1:0",
			MeshKeys: [][]byte{make([]byte, 32)}, Join: []string{"198.51.100.9:7946"},
			DetectUnreachable: detect, OnUnreachable: func(up []string) { got <- up }})
		if err != nil {
			t.Fatal(err)
		}
		e.mu.Lock()
		relay := e.peerLocked(PeerID{7})
		relay.authenticated, relay.role, relay.vouched = true, RoleRelay, "203.0.113.5:7946"
		officer := e.peerLocked(PeerID{8})
		officer.authenticated, officer.alive, officer.vouched, officer.lastContact = true, true, "203.0.113.6:7946", time.Now()
		e.mu.Unlock()
		refute := func() { _, _ = e.logw.Write([]byte("[WARN] memberlist: Refuting a suspect message (from: x)\n")) }
		refute()
		_, _ = e.logw.Write([]byte("[WARN] memberlist: Refuting a dead message (from: y)\n"))
		select {
		case up := <-got:
			t.Fatalf("detect=%v: called after two refutations with %v", detect, up)
		case <-time.After(50 * time.Millisecond):
		}
		refute()
		refute()
		if !detect {
			select {
			case up := <-got:
				t.Fatalf("called with detection off: %v", up)
			case <-time.After(50 * time.Millisecond):
			}
			continue
		}
		select {
		case up := <-got:
			if want := []string{"203.0.113.5:7946", "198.51.100.9:7946"}; !slices.Equal(up, want) {
				t.Errorf("upstreams %v, want %v (the relay, then the join address)", up, want)
			}
		case <-time.After(5 * time.Second):
			t.Fatal("not called after three refutations")
		}
		select {
		case up := <-got:
			t.Fatalf("called twice: %v", up)
		case <-time.After(50 * time.Millisecond):
		}
		if st := e.Stats(); st.Refutations != 4 {
			t.Errorf("refutations %d, want 4", st.Refutations)
		}
	}
}
