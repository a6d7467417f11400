package sync_test

// Adversarial tests of issue 12 (insiders and strangers): real engines, real
// memberlist, real sockets on 127.0.0.x. Each attack was first run against
// the unchanged engine and seen to work (see the report of branch h-sync).

import (
	"context"
	"encoding/binary"
	"fmt"
	"io"
	"math"
	"net"
	gosync "sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hashicorp/memberlist"

	fsync "fieldsync/sync"
	"fieldsync/sync/synctest"
)

// flood keeps n connections open from source IP src to target, each sending
// `first` (if any) and then nothing; a connection the server closes is
// re-opened after a short pause (a stranger does not give up).
type flood struct {
	opened atomic.Int64
	wg     gosync.WaitGroup
}

func startFlood(ctx context.Context, target, src string, n int, first []byte) *flood {
	f := &flood{}
	d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(src)}, Timeout: 2 * time.Second}
	for i := 0; i < n; i++ {
		f.wg.Add(1)
		go func() {
			defer f.wg.Done()
			for ctx.Err() == nil {
				c, err := d.DialContext(ctx, "tcp", target)
				if err == nil {
					f.opened.Add(1)
					stop := context.AfterFunc(ctx, func() { _ = c.Close() })
					if len(first) > 0 {
						_, _ = c.Write(first)
					}
					_, _ = io.Copy(io.Discard, c) // until the server hangs up
					stop()
					_ = c.Close()
				}
				select {
				case <-ctx.Done():
				case <-time.After(20 * time.Millisecond):
				}
			}
		}()
	}
	return f
}

// TestStrangerFloodsDoNotStarveSync: strangers without the mesh key hold
// connections to a node's port — one flood (160 connections) sends only 0x16
// (a ClientHello's first byte) and stalls, the other (300) sends nothing —
// while two legitimate
// engines run rounds with it and a third joins it. Every round and the join
// must succeed during the attack.
func TestStrangerFloodsDoNotStarveSync(t *testing.T) {
	type src struct {
		ip    string
		n     int
		first []byte
	}
	for _, tc := range []struct {
		name string
		srcs []src
	}{
		{"tls-byte-flood", []src{{"127.0.0.2", 160, []byte{0x16}}}},
		{"silent-flood", []src{{"127.0.0.3", 300, nil}}},
		// memberlist's own streams: a first byte of 0 (a memberlist
		// message type), then nothing.
		{"memberlist-byte-flood", []src{{"127.0.0.4", 300, []byte{0}}}},
		// All at once from several addresses: the global budgets hold.
		{"mixed-from-five-addresses", []src{{"127.0.0.5", 80, []byte{0x16}}, {"127.0.0.6", 80, []byte{0x16}},
			{"127.0.0.7", 100, nil}, {"127.0.0.8", 100, nil}, {"127.0.0.9", 100, []byte{0}}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := synctest.NewCluster(t)
			o := synctest.Options{SyncInterval: -1, DisableHints: true}
			a := c.Add(o)
			b := c.Add(o)
			if !synctest.WaitMembers(15*time.Second, a, b) {
				t.Fatal("no membership")
			}
			target := a.Engine.LocalAddr()
			ctx, cancel := context.WithCancel(context.Background())
			var floods []*flood
			total := 0
			for _, s := range tc.srcs {
				floods = append(floods, startFlood(ctx, target, s.ip, s.n, s.first))
				total += s.n
			}
			opened := func() (n int64) {
				for _, f := range floods {
					n += f.opened.Load()
				}
				return n
			}
			defer func() {
				cancel()
				for _, f := range floods {
					f.wg.Wait()
				}
			}()
			if !synctest.WaitFor(20*time.Second, func() bool { return opened() >= int64(total) }) {
				t.Fatalf("flood opened only %d connections", opened())
			}
			sp := synctest.NewSpace()
			const rounds = 5
			ok := 0
			for i := 0; i < rounds; i++ {
				b.Write(sp, []byte(fmt.Sprintf("during the attack %d", i)))
				rctx, rcancel := context.WithTimeout(ctx, 30*time.Second)
				r, err := b.Engine.SyncWith(rctx, a.Dev.ID)
				rcancel()
				if err == nil {
					ok++
				} else {
					t.Logf("round %d: sent %d, err %v", i, r.Sent, err)
				}
			}
			// A newcomer joins the attacked node (memberlist push/pull
			// over the same port).
			d := c.NewNode(synctest.Options{SyncInterval: -1, DisableHints: true, Join: []string{}})
			if err := d.Engine.Start(context.Background()); err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { _ = d.Engine.Close() })
			joined, jerr := d.Engine.Join(target)
			t.Logf("%s: %d connections opened by the attacker, %d refused by a limit; rounds ok %d/%d; join reached %d (err %v)",
				tc.name, opened(), a.Engine.Stats().StreamsRefused, ok, rounds, joined, jerr)
			if ok != rounds {
				t.Errorf("only %d of %d rounds succeeded during the attack", ok, rounds)
			}
			if joined != 1 || jerr != nil {
				t.Errorf("join during the attack: reached %d, err %v", joined, jerr)
			}
			if h, _ := a.Store.Heads(sp); h[b.Dev.ID] != rounds {
				t.Errorf("attacked node holds %d of the %d writes", h[b.Dev.ID], rounds)
			}
		})
	}
}

// rawMember is a memberlist node that holds the mesh key but runs no
// engine: a compromised member speaking memberlist directly.
func rawMember(t *testing.T, c *synctest.Cluster, join string) *memberlist.Memberlist {
	t.Helper()
	mc := memberlist.DefaultLocalConfig()
	mc.Name = synctest.NewDevice(nil, fsync.RoleOfficer).ID.String()
	mc.BindAddr, mc.BindPort, mc.AdvertisePort = "127.0.0.1", 0, 0
	kr, err := memberlist.NewKeyring(nil, c.MeshKey)
	if err != nil {
		t.Fatal(err)
	}
	mc.Keyring = kr
	mc.Label = fsync.DefaultLabel
	mc.EnableCompression = false
	mc.GossipVerifyIncoming, mc.GossipVerifyOutgoing = true, true
	mc.DelegateProtocolVersion, mc.DelegateProtocolMin, mc.DelegateProtocolMax = fsync.ProtocolVersion, fsync.ProtocolVersion, fsync.ProtocolVersion
	mc.LogOutput = io.Discard
	ml, err := memberlist.Create(mc)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = ml.Shutdown() })
	if _, err := ml.Join([]string{join}); err != nil {
		t.Fatal(err)
	}
	return ml
}

func hintBytes(origin fsync.PeerID, counter uint64) []byte {
	b := append([]byte{1, 1}, origin[:]...)
	return binary.BigEndian.AppendUint64(b, counter)
}

// sendHint sends a hint straight to node `to` as a memberlist user message.
// The node is looked up once per raw member and kept: during a storm of
// UDP messages on a loaded machine memberlist may suspect it for a while,
// and the hints are still sent to its address.
func sendHint(t *testing.T, ml *memberlist.Memberlist, to *synctest.Node, origin fsync.PeerID, counter uint64) {
	t.Helper()
	target := hintTargets[hintTarget{ml, to.Name()}]
	if target == nil {
		for _, m := range ml.Members() {
			if m.Name == to.Name() {
				target = m
				hintTargets[hintTarget{ml, to.Name()}] = m
			}
		}
	}
	if target == nil {
		t.Fatalf("raw member does not see %s", to.Name())
	}
	if err := ml.SendBestEffort(target, hintBytes(origin, counter)); err != nil {
		t.Fatal(err)
	}
}

type hintTarget struct {
	ml   *memberlist.Memberlist
	name string
}

// hintTargets: the node each raw member sends hints to (tests of this file
// do not run in parallel).
var hintTargets = map[hintTarget]*memberlist.Node{}

// TestHintMaxCounterDoesNotSilenceOrigin: a member sends a hint claiming
// origin B with counter 2^64-1. B's real later hints must still make A pull
// (no anti-entropy interval: hints are the only trigger here).
func TestHintMaxCounterDoesNotSilenceOrigin(t *testing.T) {
	c := synctest.NewCluster(t)
	o := synctest.Options{SyncInterval: -1}
	a := c.Add(o)
	b := c.Add(o)
	if !synctest.WaitMembers(15*time.Second, a, b) {
		t.Fatal("no membership")
	}
	m := rawMember(t, c, a.Engine.LocalAddr())
	before := a.Engine.Stats().HintsReceived
	sendHint(t, m, a, b.Dev.ID, math.MaxUint64)
	if !synctest.WaitFor(10*time.Second, func() bool { return a.Engine.Stats().HintsReceived > before }) {
		t.Fatal("the forged hint did not arrive")
	}
	synctest.WaitFor(2*time.Second, func() bool { return false }) // let the forged hint's pull end
	sp := synctest.NewSpace()
	b.Write(sp, []byte("after the forged hint"))
	got := synctest.WaitFor(20*time.Second, func() bool {
		h, _ := a.Store.Heads(sp)
		return h[b.Dev.ID] == 1
	})
	t.Logf("A pulled B's write after a forged max-counter hint: %v (A stats %+v)", got, a.Engine.Stats())
	if !got {
		t.Fatal("B's real hint was silenced by a forged counter of 2^64-1: A never pulled its write")
	}
}

// TestHintStormIsBounded: a member sends 2,000 hints with random origins
// and counters. A must not start a round per hint, nor re-broadcast hints of
// origins it does not know.
func TestHintStormIsBounded(t *testing.T) {
	c := synctest.NewCluster(t)
	// One hint round per origin (and one for all unknown origins) per
	// hour: the bound below is then a count, not a rate.
	o := synctest.Options{SyncInterval: -1, Tweak: func(cfg *fsync.Config) { cfg.Limits.HintRoundEvery = time.Hour }}
	a := c.Add(o)
	b := c.Add(o)
	if !synctest.WaitMembers(15*time.Second, a, b) {
		t.Fatal("no membership")
	}
	m := rawMember(t, c, a.Engine.LocalAddr())
	if !synctest.WaitFor(10*time.Second, func() bool { return len(a.Engine.Members()) == 2 }) {
		t.Fatal("raw member not seen")
	}
	// Let the join rounds end.
	synctest.WaitFor(2*time.Second, func() bool { return false })
	s0 := a.Engine.Stats()
	const storm = 2000
	for i := 0; i < storm; i++ {
		origin := synctest.NewDevice(nil, fsync.RoleOfficer).ID
		sendHint(t, m, a, origin, uint64(i+1))
		if i%100 == 99 {
			time.Sleep(10 * time.Millisecond) // let UDP keep up
		}
	}
	if !synctest.WaitFor(20*time.Second, func() bool { return a.Engine.Stats().HintsReceived-s0.HintsReceived >= storm/2 }) {
		t.Fatalf("storm did not arrive: %d hints", a.Engine.Stats().HintsReceived-s0.HintsReceived)
	}
	synctest.WaitFor(3*time.Second, func() bool { return false }) // let rounds run
	s1 := a.Engine.Stats()
	rounds := (s1.Rounds + s1.RoundErrors) - (s0.Rounds + s0.RoundErrors)
	requeued := s1.HintsRequeued - s0.HintsRequeued
	t.Logf("hint storm: %d hints received, %d rounds run, %d re-queued", s1.HintsReceived-s0.HintsReceived, rounds, requeued)
	if rounds > 2 {
		t.Errorf("%d rounds for a storm of forged hints (at most one for the unknown origins' budget and one scheduled)", rounds)
	}
	if s1.HintsUnknown-s0.HintsUnknown < storm/2 {
		t.Errorf("only %d hints counted as of unknown origins", s1.HintsUnknown-s0.HintsUnknown)
	}
	if requeued > 0 {
		t.Errorf("%d hints of unknown origins re-broadcast", requeued)
	}
}

// TestOversizeMeshObjectNotResentEveryRound: a node holds a mesh object over
// MaxMeshObject (fork evidence carrying large envelopes, say). It is never
// sent; it must not keep the digests apart so that every round resends
// (and the peer re-verifies) every other object.
func TestOversizeMeshObjectNotResentEveryRound(t *testing.T) {
	c := synctest.NewCluster(t)
	o := synctest.Options{SyncInterval: -1, DisableHints: true}
	a := c.Add(o)
	b := c.Add(o)
	a.Auth.SetExtra(make([]byte, fsync.MaxMeshObject+1))
	if !synctest.WaitMembers(15*time.Second, a, b) {
		t.Fatal("no membership")
	}
	ctx := context.Background()
	if _, err := a.Engine.SyncWith(ctx, b.Dev.ID); err != nil {
		t.Fatal(err)
	}
	// The rounds the join started may still run (slowly under -race): count
	// from when every round is over.
	quiesceRounds(t, a, b)
	n0 := b.Auth.MeshIngested.Load() + a.Auth.MeshIngested.Load()
	var sent uint64
	for i := 0; i < 3; i++ {
		r, err := a.Engine.SyncWith(ctx, b.Dev.ID)
		if err != nil {
			t.Fatal(err)
		}
		sent += r.BytesSent
	}
	resent := b.Auth.MeshIngested.Load() + a.Auth.MeshIngested.Load() - n0
	t.Logf("3 rounds in step: %d mesh objects re-ingested, %d bytes sent by A", resent, sent)
	if resent != 0 {
		t.Fatalf("%d mesh objects resent in 3 rounds between peers in step", resent)
	}
}

// TestChallengeFailedPeerNotRedialed: a mesh-key holder that fails the
// device challenge joins A, then disappears. A must never dial its address
// again (here: a listener that took over the port counts A's connections).
func TestChallengeFailedPeerNotRedialed(t *testing.T) {
	c := synctest.NewCluster(t)
	a := c.Add(synctest.Options{SyncInterval: 200 * time.Millisecond})
	bad := c.Add(synctest.Options{WrongKey: true, SyncInterval: -1})
	if !synctest.WaitMembers(15*time.Second, a, bad) {
		t.Fatal("no membership")
	}
	ctx := context.Background()
	if _, err := a.Engine.SyncWith(ctx, bad.Dev.ID); err == nil {
		t.Fatal("a peer signing with the wrong key passed the challenge")
	}
	addr := bad.Engine.LocalAddr()
	_ = bad.Engine.Close()
	if !synctest.WaitFor(20*time.Second, func() bool { return len(a.Engine.Members()) == 0 }) {
		t.Fatal("A still lists the departed peer")
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		t.Skipf("cannot take over the port: %v", err)
	}
	defer ln.Close()
	var dials atomic.Int64
	go func() {
		for {
			conn, err := ln.Accept()
			if err != nil {
				return
			}
			dials.Add(1)
			_ = conn.Close()
		}
	}()
	// The local profile's rejoin backoff is 0.2–2 s: wait several of them.
	synctest.WaitFor(6*time.Second, func() bool { return false })
	t.Logf("A dialed the address of a peer that failed the challenge %d times", dials.Load())
	if dials.Load() != 0 {
		t.Fatalf("A dialed the address of a peer that failed the challenge %d times", dials.Load())
	}
}

// stallStore is a compromised member's store: once a round reaches the
// envelope phase it sends nothing (stall) or trickles junk envelopes, one
// every 100 ms (trickle), until released, holding the session open.
type stallStore struct {
	*fsync.MemStore
	release <-chan struct{}
	trickle bool
	calls   *atomic.Int64
}

var hostileSpace = synctest.NewSpace()

func (s stallStore) Spaces() ([]fsync.SpaceID, error) { return []fsync.SpaceID{hostileSpace}, nil }

func (s stallStore) Since(sp fsync.SpaceID, have fsync.Vector, fn func(fsync.Envelope) error) error {
	s.calls.Add(1)
	for seq := uint64(1); ; seq++ {
		select {
		case <-s.release:
			return nil
		case <-time.After(100 * time.Millisecond):
		}
		if s.trickle {
			var au fsync.PeerID
			au[0] = byte(seq)
			// As large as the frame writer's buffer, so each goes out at
			// once, and no larger than LargeEnvelope, so the round's first
			// pass sends it rather than deferring it to the (never reached)
			// second pass for large values.
			if err := fn(fsync.Envelope{Space: sp, Author: au, Seq: 1, Data: make([]byte, fsync.LargeEnvelope)}); err != nil {
				return err
			}
		}
	}
}

// hostileEngines starts n engines that all hold the device dev (a
// compromised laptop running its own code, many processes at once), with a
// store that stalls or trickles. They do not join memberlist.
func hostileEngines(t *testing.T, c *synctest.Cluster, dev *synctest.Device, n int, trickle bool, release <-chan struct{}, calls *atomic.Int64) []*synctest.Node {
	var out []*synctest.Node
	for i := 0; i < n; i++ {
		nd := c.NewNode(synctest.Options{Device: dev, SyncInterval: -1, DisableHints: true, Join: []string{}, Tweak: func(cfg *fsync.Config) {
			cfg.Store = stallStore{MemStore: cfg.Store.(*fsync.MemStore), release: release, trickle: trickle, calls: calls}
		}})
		if err := nd.Engine.Start(context.Background()); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = nd.Engine.Close() })
		out = append(out, nd)
	}
	return out
}

// TestMemberCannotHoldAllSessions: a compromised member opens 36 sessions
// to A at once (9 processes, 4 rounds each) and stalls them all after
// authenticating. B's rounds with A must still succeed.
func TestMemberCannotHoldAllSessions(t *testing.T) {
	c := synctest.NewCluster(t)
	o := synctest.Options{SyncInterval: -1, DisableHints: true}
	a := c.Add(o)
	b := c.Add(o)
	if !synctest.WaitMembers(15*time.Second, a, b) {
		t.Fatal("no membership")
	}
	release := make(chan struct{})
	var calls atomic.Int64
	hostile := hostileEngines(t, c, synctest.NewDevice(c.Bureau, fsync.RoleOfficer), 9, false, release, &calls)
	var wg gosync.WaitGroup
	defer wg.Wait()
	defer close(release)
	for _, h := range hostile {
		for j := 0; j < 4; j++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				_, _ = h.Engine.SyncWithAddr(context.Background(), a.Dev.ID, a.Engine.LocalAddr())
			}()
		}
	}
	// Wait until A serves the member's sessions it admits (they stall in
	// the envelope phase), and let the rest queue.
	if !synctest.WaitFor(15*time.Second, func() bool { return calls.Load() >= 2 }) {
		t.Fatalf("the member's sessions never reached the envelope phase (%d)", calls.Load())
	}
	synctest.WaitFor(time.Second, func() bool { return false })
	sp := synctest.NewSpace()
	ok := 0
	for i := 0; i < 3; i++ {
		b.Write(sp, []byte(fmt.Sprintf("b %d", i)))
		rctx, rcancel := context.WithTimeout(context.Background(), 20*time.Second)
		_, err := b.Engine.SyncWith(rctx, a.Dev.ID)
		rcancel()
		if err == nil {
			ok++
		} else {
			t.Logf("round %d: %v", i, err)
		}
	}
	t.Logf("member holding stalled sessions: %d reached A's envelope phase; B's rounds ok %d/3; A refused %d streams",
		calls.Load(), ok, a.Engine.Stats().StreamsRefused)
	if ok != 3 {
		t.Fatalf("B's rounds: %d of 3 succeeded while a member stalled its sessions", ok)
	}
}

// TestSessionDeadline: an authenticated member trickles junk (one frame per
// 100 ms, within the idle timeout) for ever; A's session deadline ends it.
func TestSessionDeadline(t *testing.T) {
	c := synctest.NewCluster(t)
	a := c.Add(synctest.Options{SyncInterval: -1, DisableHints: true, Tweak: func(cfg *fsync.Config) {
		cfg.Limits.SessionTimeout = 2 * time.Second
	}})
	release := make(chan struct{})
	defer close(release)
	var calls atomic.Int64
	h := hostileEngines(t, c, synctest.NewDevice(c.Bureau, fsync.RoleOfficer), 1, true, release, &calls)[0]
	go func() { _, _ = h.Engine.SyncWithAddr(context.Background(), a.Dev.ID, a.Engine.LocalAddr()) }()
	// A's own view: its session with the member ends (as a failed round)
	// while the member is still trickling.
	ended := synctest.WaitFor(30*time.Second, func() bool { return a.Engine.Stats().RoundErrors > 0 })
	t.Logf("trickling member: A ended the session by its deadline: %v (junk envelopes received and rejected: %d)", ended, a.Engine.Stats().RejectedEnvs)
	if !ended {
		t.Fatal("a trickling member held a session past the session deadline")
	}
	if a.Engine.Stats().RejectedEnvs == 0 {
		t.Fatal("the member did not trickle: the test does not test the deadline")
	}
}

// quiesceRounds waits (≤ 10 s) until no round runs between the nodes: their
// round counters stay the same over a second.
func quiesceRounds(t *testing.T, nodes ...*synctest.Node) {
	t.Helper()
	synctest.Quiesce(time.Second, 10*time.Second, nodes...)
}
