package sync

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log"
	"log/slog"
	"math/rand/v2"
	"net"
	"sort"
	gosync "sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/memberlist"
)

// Engine runs fieldsync's sync protocol for one device: memberlist
// membership and hints, authenticated anti-entropy streams, peer
// bookkeeping. Create it with New, start it with Start (or Run), stop it
// with Close. All methods are safe for concurrent use.
type Engine struct {
	cfg    Config
	prof   profileParams
	log    *slog.Logger
	store  Store
	auth   Authenticator
	id     PeerID
	name   string
	label  string
	tlsCrt tls.Certificate
	logw   *logBridge

	keyring *memberlist.Keyring
	tr      *muxTransport
	ml      *memberlist.Memberlist
	queue   *memberlist.TransmitLimitedQueue

	ctx    context.Context
	cancel context.CancelFunc
	wg     gosync.WaitGroup

	roundSem   chan struct{}
	inboundSem chan struct{}

	hintCounter    atomic.Uint64
	inboundWaiting atomic.Int64 // inbound streams waiting for or holding a slot

	mu        gosync.Mutex
	started   bool
	localAddr string
	closed    bool
	peers     map[PeerID]*peerState
	hintSeen  map[PeerID]uint64
	rejected  map[string]uint64
	stats     Stats
	roundDur  roundHistograms // round durations (metrics.go)
}

type peerState struct {
	id            PeerID
	addr          string
	alive         bool
	role          Role
	bureau        string
	authenticated bool
	lastContact   time.Time
	pendingOut    uint64
	pendingIn     uint64
	bytesSent     uint64
	bytesRecv     uint64
	rounds        uint64
	lastErr       string
	running       bool
	again         bool
	inbound       int // inbound sessions from this peer in progress
}

// Stats are the engine's counters since New.
type Stats struct {
	Rejected        map[string]uint64 // envelopes and mesh objects refused by the verifier, by reason
	AuthFailures    uint64            // streams whose peer failed the challenge (either direction)
	BadGossip       uint64            // undecodable gossip messages dropped
	HintsSent       uint64            // own hints queued
	HintsReceived   uint64            // hints received (any origin)
	HintsRequeued   uint64            // hints not seen before, queued again
	Rounds          uint64            // completed anti-entropy rounds (either direction)
	RoundErrors     uint64            // failed or cut rounds
	Added           uint64            // envelopes stored (Ingest added=true)
	Duplicates      uint64            // envelopes received that were already held
	Sent            uint64            // envelopes sent
	RejectedEnvs    uint64            // envelopes received in rounds and refused by the verifier
	BroadcastQueue  int               // hints waiting in memberlist's queue
	GossipBytesIn   uint64            // memberlist bytes (UDP + its streams) received
	GossipBytesOut  uint64            // memberlist bytes sent
	SyncBytesIn     uint64            // sync stream bytes on the socket, received
	SyncBytesOut    uint64            // sync stream bytes on the socket, sent
	LargestFrameOut int               // largest frame payload sent
}

// PeerStatus is what the engine knows of one peer (DESIGN §9 `status`).
type PeerStatus struct {
	ID            PeerID
	Addr          string
	Alive         bool // a live memberlist member now
	Authenticated bool // passed the challenge at least once
	Role          Role
	Bureau        string
	LastContact   time.Time // end of the last successful round
	PendingOut    uint64    // envelopes it lacked that we hold, as of the last round
	PendingIn     uint64    // envelopes we lacked that it holds, as of the last round
	BytesSent     uint64    // sync stream bytes on the socket
	BytesReceived uint64
	Rounds        uint64
	LastError     string
}

// Round reports one anti-entropy round (SyncWith).
type Round struct {
	Peer          PeerID
	BytesSent     uint64 // on the socket, TLS included
	BytesReceived uint64
	Sent          uint64 // envelopes sent
	Added         uint64 // envelopes received and stored
	Duplicates    uint64
	Rejected      uint64
	Duration      time.Duration
}

// New checks cfg and prepares an engine; nothing listens until Start.
func New(cfg Config) (*Engine, error) {
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("sync config: %w", err)
	}
	prof, _ := profileOf(cfg.Profile)
	if cfg.Role == 0 {
		cfg.Role = RoleOfficer
	}
	if cfg.Label == "" {
		cfg.Label = DefaultLabel
	}
	if cfg.LogEvery <= 0 {
		cfg.LogEvery = 10 * time.Second
	}
	if cfg.SyncInterval == 0 {
		cfg.SyncInterval = prof.syncInterval
	}
	lg := cfg.Logger
	if lg == nil {
		lg = slog.New(slog.DiscardHandler)
	}
	lg = lg.With("subsys", "sync")
	crt, err := cfg.Auth.TLSCertificate()
	if err != nil {
		return nil, fmt.Errorf("sync: tls certificate: %w", err)
	}
	kr, err := memberlist.NewKeyring(cfg.MeshKeys, cfg.MeshKeys[0])
	if err != nil {
		return nil, fmt.Errorf("sync: keyring: %v", err)
	}
	id := cfg.Auth.LocalID()
	e := &Engine{
		cfg: cfg, prof: prof, log: lg, store: cfg.Store, auth: cfg.Auth,
		id: id, name: id.String(), label: cfg.Label, tlsCrt: crt, keyring: kr,
		roundSem:   make(chan struct{}, MaxOutboundRounds),
		inboundSem: make(chan struct{}, MaxInboundSessions),
		peers:      make(map[PeerID]*peerState),
		hintSeen:   make(map[PeerID]uint64),
		rejected:   make(map[string]uint64),
	}
	e.logw = newLogBridge(lg, cfg.LogEvery)
	// Hint counters start at the clock so that a restarted node's hints are
	// newer than the ones peers remember.
	e.hintCounter.Store(uint64(time.Now().UnixNano()))
	return e, nil
}

// ID returns the local device ID (the memberlist node name).
func (e *Engine) ID() PeerID { return e.id }

// Start binds the port, starts memberlist and the engine's loops, and joins
// the configured and remembered peers (in the background: Start does not
// wait for them). It returns once the node listens.
func (e *Engine) Start(ctx context.Context) error {
	e.mu.Lock()
	if e.started {
		e.mu.Unlock()
		return errors.New("sync: engine already started")
	}
	e.started = true
	e.mu.Unlock()

	host, port, _ := splitHostPort(e.cfg.BindAddr)
	mlLog := log.New(e.logw, "", 0)
	tr, err := newMuxTransport(host, port, mlLog, e.cfg.Faults)
	if err != nil {
		return fmt.Errorf("sync: listen %s: %w", e.cfg.BindAddr, err)
	}
	name := e.name
	tr.name.Store(&name)
	e.tr = tr
	e.ctx, e.cancel = context.WithCancel(context.WithoutCancel(ctx))
	tr.onSync = e.serveInbound

	mc := e.memberlistConfig(host, tr.inner.GetAutoBindPort(), mlLog)
	mc.Transport = tr

	e.queue = &memberlist.TransmitLimitedQueue{RetransmitMult: e.prof.retransmit, NumNodes: func() int {
		if ml := e.memberlist(); ml != nil {
			return ml.NumMembers()
		}
		return 1
	}}

	ml, err := memberlist.Create(mc)
	if err != nil {
		_ = tr.Shutdown()
		return fmt.Errorf("sync: start memberlist: %w", err)
	}
	local := ml.LocalNode().Address() // before any other node can touch its state
	e.mu.Lock()
	e.ml = ml
	e.localAddr = local
	e.mu.Unlock()
	e.log.Info("sync started", "node", e.name, "addr", e.LocalAddr(), "profile", string(e.cfg.Profile), "role", e.cfg.Role.String())

	e.wg.Add(2)
	go e.rejoinLoop()
	go e.antiEntropyLoop()
	return nil
}

// memberlistConfig builds memberlist's configuration from the profile and
// Config (DESIGN §6): node name = device ID, explicit bind address, tuned
// gossip, no compression, keyring, label, logs into slog.
func (e *Engine) memberlistConfig(host string, port int, mlLog *log.Logger) *memberlist.Config {
	mc := e.prof.base()
	mc.Name = e.name
	mc.BindAddr = host
	mc.BindPort = port
	mc.AdvertiseAddr, mc.AdvertisePort = "", 0
	if e.cfg.Advertise != "" {
		mc.AdvertiseAddr, mc.AdvertisePort, _ = splitHostPort(e.cfg.Advertise)
	}
	mc.GossipNodes = e.prof.gossipNodes
	mc.GossipInterval = e.prof.gossipEvery
	mc.RetransmitMult = e.prof.retransmit
	// A laptop that crashed and comes back with another address (new
	// Wi-Fi, DHCP) keeps its name (device ID); memberlist's default (0)
	// refuses that name forever. Impostors gain nothing: sync streams
	// authenticate the device key.
	mc.DeadNodeReclaimTime = e.prof.reclaim
	mc.EnableCompression = false
	mc.Keyring = e.keyring
	mc.GossipVerifyIncoming, mc.GossipVerifyOutgoing = true, true
	mc.Label = e.label
	mc.Logger = mlLog
	mc.LogOutput = nil
	d := &delegate{e: e}
	mc.Delegate = d
	mc.Events = d
	mc.DelegateProtocolVersion = ProtocolVersion
	mc.DelegateProtocolMin = ProtocolVersion
	mc.DelegateProtocolMax = ProtocolVersion

	return mc
}

// Run starts the engine and blocks until ctx is done, then closes it.
func (e *Engine) Run(ctx context.Context) error {
	if err := e.Start(ctx); err != nil {
		return err
	}
	<-ctx.Done()
	return e.Close()
}

// Close leaves the mesh (briefly), stops memberlist, the loops and every
// stream, and flushes suppressed-log counts. Safe to call twice.
func (e *Engine) Close() error {
	e.mu.Lock()
	if e.closed || !e.started {
		e.closed = true
		e.mu.Unlock()
		return nil
	}
	e.closed = true
	ml := e.ml
	e.mu.Unlock()
	e.cancel()
	var err error
	if ml != nil {
		_ = ml.Leave(200 * time.Millisecond)
		err = ml.Shutdown()
	}
	e.wg.Wait()
	e.logw.flush(true)
	return err
}

func (e *Engine) memberlist() *memberlist.Memberlist {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.ml
}

// LocalAddr returns the advertised host:port of this node.
func (e *Engine) LocalAddr() string {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.localAddr
}

// Join joins the mesh through the given host:port addresses now and
// returns how many answered.
func (e *Engine) Join(addrs ...string) (int, error) {
	ml := e.memberlist()
	if ml == nil {
		return 0, errors.New("sync: engine not started")
	}
	return ml.Join(addrs)
}

// Members returns the IDs of the live memberlist members, self excluded.
// (Kept from memberlist's events: the *Node values memberlist.Members
// returns are mutated under its lock and cannot be read safely after.)
func (e *Engine) Members() []PeerID {
	e.mu.Lock()
	var out []PeerID
	for id, p := range e.peers {
		if p.alive {
			out = append(out, id)
		}
	}
	e.mu.Unlock()
	sort.Slice(out, func(i, j int) bool { return out[i].Compare(out[j]) < 0 })
	return out
}

// Notify tells the engine that this node has stored new local changes: a
// hint goes out through memberlist's broadcast queue. Never blocks.
func (e *Engine) Notify() {
	if e.cfg.DisableHints || e.queue == nil {
		return
	}
	c := e.hintCounter.Add(1)
	e.queue.QueueBroadcast(&hintBroadcast{origin: e.id, msg: hint{Origin: e.id, Counter: c}.encode()})
	e.mu.Lock()
	e.stats.HintsSent++
	e.mu.Unlock()
}

// Stats returns a snapshot of the engine's counters.
func (e *Engine) Stats() Stats {
	e.mu.Lock()
	s := e.stats
	s.Rejected = make(map[string]uint64, len(e.rejected))
	for k, v := range e.rejected {
		s.Rejected[k] = v
	}
	e.mu.Unlock()
	if e.queue != nil {
		s.BroadcastQueue = e.queue.NumQueued()
	}
	if e.tr != nil {
		s.GossipBytesIn = e.tr.gossipIn.Load()
		s.GossipBytesOut = e.tr.gossipOut.Load()
	}
	return s
}

// Peers returns what the engine knows of each peer, by ID.
func (e *Engine) Peers() []PeerStatus {
	e.mu.Lock()
	defer e.mu.Unlock()
	out := make([]PeerStatus, 0, len(e.peers))
	for _, p := range e.peers {
		out = append(out, PeerStatus{
			ID: p.id, Addr: p.addr, Alive: p.alive, Authenticated: p.authenticated, Role: p.role,
			Bureau: p.bureau, LastContact: p.lastContact, PendingOut: p.pendingOut, PendingIn: p.pendingIn,
			BytesSent: p.bytesSent, BytesReceived: p.bytesRecv, Rounds: p.rounds, LastError: p.lastErr,
		})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].ID.Compare(out[j].ID) < 0 })
	return out
}

// peerLocked returns (creating) the state of a peer. e.mu must be held.
func (e *Engine) peerLocked(id PeerID) *peerState {
	p := e.peers[id]
	if p == nil {
		p = &peerState{id: id}
		e.peers[id] = p
	}
	return p
}

// SyncWith runs one anti-entropy round with a peer now, as initiator, and
// waits for it. The peer must be a live member or a remembered peer.
func (e *Engine) SyncWith(ctx context.Context, id PeerID) (Round, error) {
	addr := e.addrOf(id)
	if addr == "" {
		return Round{Peer: id}, fmt.Errorf("sync with %s: no address known", id)
	}
	return e.round(ctx, id, addr)
}

// SyncWithAddr runs one round with the peer id at addr (host:port of its
// engine), whether or not it is a memberlist member: a node that cannot be
// reached back (DESIGN §10) can still pull and push over a stream it opens.
func (e *Engine) SyncWithAddr(ctx context.Context, id PeerID, addr string) (Round, error) {
	if e.tr == nil {
		return Round{Peer: id}, errors.New("sync: engine not started")
	}
	return e.round(ctx, id, addr)
}

func (e *Engine) addrOf(id PeerID) string {
	e.mu.Lock()
	defer e.mu.Unlock()
	if p := e.peers[id]; p != nil {
		return p.addr
	}
	return ""
}

// requestSync starts a round with a peer in the background, unless one is
// running (then one more runs after it).
func (e *Engine) requestSync(id PeerID, why string) {
	if id == e.id {
		return
	}
	e.mu.Lock()
	if e.closed {
		e.mu.Unlock()
		return
	}
	p := e.peerLocked(id)
	if p.running {
		p.again = true
		e.mu.Unlock()
		return
	}
	p.running = true
	e.wg.Add(1)
	e.mu.Unlock()
	go func() {
		defer e.wg.Done()
		for {
			// While the peer runs a round with us, wait for it to end
			// rather than start a second one doing the same work; then
			// run ours (it may carry changes newer than that round).
			for e.ctx.Err() == nil {
				e.mu.Lock()
				busy := p.inbound > 0
				e.mu.Unlock()
				if !busy {
					break
				}
				select {
				case <-e.ctx.Done():
				case <-time.After(50 * time.Millisecond):
				}
			}
			if addr := e.addrOf(id); addr != "" && e.ctx.Err() == nil {
				if _, err := e.round(e.ctx, id, addr); err != nil && e.ctx.Err() == nil {
					e.log.Debug("sync round failed", "peer", id.String(), "why", why, "err", err)
				}
			}
			e.mu.Lock()
			if !p.again || e.closed {
				p.running = false
				e.mu.Unlock()
				return
			}
			p.again = false
			e.mu.Unlock()
		}
	}()
}

// antiEntropyLoop runs a round with a random live peer on a jittered interval.
func (e *Engine) antiEntropyLoop() {
	defer e.wg.Done()
	if e.cfg.SyncInterval < 0 {
		<-e.ctx.Done()
		return
	}
	for {
		d := e.cfg.SyncInterval/2 + rand.N(e.cfg.SyncInterval)
		select {
		case <-e.ctx.Done():
			return
		case <-time.After(d):
		}
		e.logw.flush(false)
		if m := e.Members(); len(m) > 0 {
			e.requestSync(m[rand.IntN(len(m))], "interval")
		}
	}
}

// rejoinLoop joins configured and remembered peers on start, then retries
// the ones that are not live members with exponential backoff.
func (e *Engine) rejoinLoop() {
	defer e.wg.Done()
	if known, err := e.store.LoadPeers(); err != nil {
		e.log.Warn("load known peers", "err", err)
	} else {
		e.mu.Lock()
		for _, k := range known {
			if k.ID == e.id {
				continue
			}
			p := e.peerLocked(k.ID)
			if p.addr == "" {
				p.addr = k.Addr
			}
			if p.role == 0 {
				p.role = k.Role
			}
		}
		e.mu.Unlock()
	}
	delay := e.prof.rejoinMin
	for {
		targets := e.offlineTargets()
		if len(targets) > 0 {
			if ml := e.memberlist(); ml != nil {
				n, err := ml.Join(targets)
				e.log.Debug("rejoin", "tried", len(targets), "reached", n, "err", err)
				if n > 0 {
					delay = e.prof.rejoinMin
				} else {
					delay = min(delay*2, e.prof.rejoinMax)
				}
			}
		} else {
			delay = e.prof.rejoinMin
		}
		select {
		case <-e.ctx.Done():
			return
		case <-time.After(delay/2 + rand.N(delay)):
		}
	}
}

// offlineTargets lists addresses of remembered peers that are not live
// members, plus the configured join addresses while we are alone.
func (e *Engine) offlineTargets() []string {
	var out []string
	live := 0
	e.mu.Lock()
	for _, p := range e.peers {
		if p.alive {
			live++
		} else if p.addr != "" {
			out = append(out, p.addr)
		}
	}
	e.mu.Unlock()
	if live == 0 {
		out = append(out, e.cfg.Join...)
	}
	return dedup(out)
}

func dedup(s []string) []string {
	seen := map[string]bool{}
	out := s[:0]
	for _, x := range s {
		if !seen[x] {
			seen[x] = true
			out = append(out, x)
		}
	}
	return out
}

// onHint handles a received hint (from NotifyMsg: must not block).
func (e *Engine) onHint(h hint) {
	e.mu.Lock()
	e.stats.HintsReceived++
	if h.Origin == e.id || h.Counter <= e.hintSeen[h.Origin] {
		e.mu.Unlock()
		return
	}
	if _, ok := e.hintSeen[h.Origin]; !ok && len(e.hintSeen) >= MaxHintOrigins {
		for k := range e.hintSeen { // forget one at random
			delete(e.hintSeen, k)
			break
		}
	}
	e.hintSeen[h.Origin] = h.Counter
	requeue := !e.cfg.DisableHints
	if requeue {
		e.stats.HintsRequeued++
	}
	e.mu.Unlock()
	if requeue {
		e.queue.QueueBroadcast(&hintBroadcast{origin: h.Origin, msg: h.encode()})
	}
	// Pull from the origin if it is a member; else from any member (the
	// hint reached us through someone who may have it).
	target := h.Origin
	if e.addrOfMember(target) == "" {
		m := e.Members()
		if len(m) == 0 {
			return
		}
		target = m[rand.IntN(len(m))]
	}
	e.requestSync(target, "hint")
}

func (e *Engine) addrOfMember(id PeerID) string {
	e.mu.Lock()
	defer e.mu.Unlock()
	if p := e.peers[id]; p != nil && p.alive {
		return p.addr
	}
	return ""
}

// count adds to the engine's counters.
func (e *Engine) countReject(reason string) {
	e.mu.Lock()
	e.rejected[reason]++
	e.mu.Unlock()
}

// hintBroadcast is one hint in memberlist's queue; a newer hint from the same
// origin replaces an older one (so the queue holds at most one per origin).
type hintBroadcast struct {
	origin PeerID
	msg    []byte
}

var _ memberlist.NamedBroadcast = (*hintBroadcast)(nil)

func (b *hintBroadcast) Invalidates(o memberlist.Broadcast) bool {
	ob, ok := o.(*hintBroadcast)
	return ok && ob.origin == b.origin
}
func (b *hintBroadcast) Message() []byte { return b.msg }
func (b *hintBroadcast) Finished()       {}
func (b *hintBroadcast) Name() string    { return "hint:" + b.origin.String() }

// delegate adapts memberlist's callbacks; they run on memberlist's
// goroutines and never block.
type delegate struct{ e *Engine }

var (
	_ memberlist.Delegate      = (*delegate)(nil)
	_ memberlist.EventDelegate = (*delegate)(nil)
)

func (d *delegate) NodeMeta(limit int) []byte { return encodeMeta(d.e.cfg.Role) }

func (d *delegate) NotifyMsg(b []byte) {
	h, err := decodeHint(b) // decodes from b without keeping it
	if err != nil {
		d.e.mu.Lock()
		d.e.stats.BadGossip++
		d.e.mu.Unlock()
		d.e.logw.limited("bad-gossip", slog.LevelDebug, "dropped undecodable gossip", "err", err)
		return
	}
	d.e.onHint(h)
}

func (d *delegate) GetBroadcasts(overhead, limit int) [][]byte {
	if d.e.cfg.DisableHints {
		return nil
	}
	return d.e.queue.GetBroadcasts(overhead, limit)
}

func (d *delegate) LocalState(join bool) []byte            { return nil }
func (d *delegate) MergeRemoteState(buf []byte, join bool) {}

func (d *delegate) NotifyJoin(n *memberlist.Node) { d.e.onMember(n, true) }
func (d *delegate) NotifyLeave(n *memberlist.Node) {
	d.e.onMember(n, false)
}
func (d *delegate) NotifyUpdate(n *memberlist.Node) { d.e.onMember(n, true) }

// onMember records a member's address and state; a member that (re)appears
// gets an anti-entropy round.
func (e *Engine) onMember(n *memberlist.Node, alive bool) {
	if n.Name == e.name {
		return
	}
	id, err := ParsePeerID(n.Name)
	if err != nil {
		e.logw.limited("bad-node-name", slog.LevelWarn, "member with a name that is not a device id", "name", n.Name)
		return
	}
	addr := n.Address()
	e.tr.setName(addr, n.Name)
	role, _, _ := decodeMeta(n.Meta)
	e.mu.Lock()
	p := e.peerLocked(id)
	was := p.alive
	p.alive = alive
	p.addr = addr
	if role != 0 {
		p.role = role
	}
	e.mu.Unlock()
	// A round runs both ways, so one per pair is enough: the side with the
	// lower ID starts it (halves the round storm when a mesh starts; the
	// interval covers a side that never sees the event).
	if alive && !was && e.id.Compare(id) < 0 {
		e.requestSync(id, "join")
	}
}

// dialTimeout for sync streams.
func (e *Engine) dialTimeout() time.Duration { return HandshakeTimeout }

// serveInbound runs an inbound sync stream (called by the transport, in its
// own goroutine, with the first byte peeked).
func (e *Engine) serveInbound(c net.Conn) {
	// When every slot is taken (a hint makes every peer pull from the
	// writer at once), wait a little for one instead of refusing: this runs
	// on the stream's own goroutine, and the dialer's handshake deadline
	// bounds the wait from its side.
	if e.inboundWaiting.Add(1) > 4*MaxInboundSessions {
		e.inboundWaiting.Add(-1)
		_ = c.Close()
		return
	}
	t := time.NewTimer(InboundQueueWait)
	defer t.Stop()
	defer e.inboundWaiting.Add(-1)
	select {
	case e.inboundSem <- struct{}{}:
	case <-t.C:
		_ = c.Close()
		return
	case <-e.ctx.Done():
		_ = c.Close()
		return
	}
	defer func() { <-e.inboundSem }()
	e.mu.Lock()
	if e.closed {
		e.mu.Unlock()
		_ = c.Close()
		return
	}
	e.wg.Add(1)
	e.mu.Unlock()
	defer e.wg.Done()
	_, _ = e.runSession(e.ctx, c, false, PeerID{})
}

// round dials a peer and runs one session as initiator.
func (e *Engine) round(ctx context.Context, id PeerID, addr string) (Round, error) {
	select {
	case e.roundSem <- struct{}{}:
	case <-ctx.Done():
		return Round{Peer: id}, ctx.Err()
	}
	defer func() { <-e.roundSem }()
	c, err := e.tr.dialSync(addr, id.String(), e.dialTimeout())
	if err != nil {
		e.mu.Lock()
		e.stats.RoundErrors++
		e.peerLocked(id).lastErr = err.Error()
		e.mu.Unlock()
		return Round{Peer: id}, fmt.Errorf("dial %s: %w", addr, err)
	}
	return e.runSession(ctx, c, true, id)
}
