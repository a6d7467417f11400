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
	lim    Limits
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

	roundSem     chan struct{}
	inboundSem   chan struct{} // authenticated inbound sessions
	handshakeSem chan struct{} // inbound streams in TLS handshake or challenge

	hintCounter    atomic.Uint64
	inboundWaiting atomic.Int64 // inbound streams waiting for or holding a slot

	mu        gosync.Mutex
	started   bool
	localAddr string
	closed    bool
	peers     map[PeerID]*peerState
	hintSeen  map[PeerID]*hintOrigin // known origins only
	hintAnon  hintOrigin             // shared budget of origins we do not know
	rejected  map[string]uint64
	joinBurst float64   // join rounds that may start now (joinRoundLocked)
	joinLast  time.Time // when joinBurst was last refilled
	stats     Stats
	roundDur  roundHistograms     // round durations (metrics.go)
	watchers  map[PeerID]*watcher // clients' idle watch streams (watch.go)

	upstreams []*upstream // client mode: set by Start, then read only (client.go)

	day      string // UTC date of dayBytes (budget.go)
	dayBytes uint64 // sync bytes on the wire today

	refutes     []time.Time // recent refutations (DetectUnreachable)
	unreachable bool        // OnUnreachable was called

	// fetching: chunks some session is fetching now (e.mu; chunks.go), so
	// two rounds at once never ask for the same chunk.
	fetching map[chunkWant]bool
	// resuming: slots of large envelopes some session is writing to the
	// PartialStore now (e.mu; resume.go).
	resuming map[envKey]bool
	// sendTamper, tests only: replaces the offset and bytes a resumable
	// send puts on the wire (a hostile peer announcing one hash and sending
	// other bytes, or an offset the receiver never announced).
	sendTamper func(env Envelope, offset uint32, data []byte) (uint32, []byte)
}

type peerState struct {
	id            PeerID
	addr          string // the member address memberlist gives (or the vouched one)
	vouched       string // an address an authenticated peer named, or we reached it at
	lastSeen      time.Time
	dialBlocked   time.Time // no automatic dial before (it failed the challenge)
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
	// background is our own background round with this peer once it has
	// authenticated (nil otherwise): the node with the higher ID ends it
	// when the peer's round with us is admitted (one session per pair).
	background *session
	// waiters are told how the next round with this peer that starts
	// after they were added ends (requestSyncThen).
	waiters []func(error)
}

// Stats are the engine's counters since New.
type Stats struct {
	Rejected          map[string]uint64 // envelopes and mesh objects refused by the verifier, by reason
	AuthFailures      uint64            // streams whose peer failed the challenge (either direction)
	BadGossip         uint64            // undecodable gossip messages dropped
	HintsSent         uint64            // own hints queued
	HintsReceived     uint64            // hints received (any origin)
	HintsRequeued     uint64            // hints queued again, naming this node as holder once its pull completed
	HintsUnknown      uint64            // hints whose origin is not a known peer (never re-queued)
	StreamsRefused    uint64            // inbound streams closed by a limit (per address, budgets, per peer)
	MeshSkipped       uint64            // own mesh objects not offered: over MaxMeshObject or the per-round caps
	Rounds            uint64            // completed anti-entropy rounds (either direction)
	RoundErrors       uint64            // failed or cut rounds
	Added             uint64            // envelopes stored (Ingest added=true)
	Duplicates        uint64            // envelopes received that were already held
	Sent              uint64            // envelopes sent
	RejectedEnvs      uint64            // envelopes received in rounds and refused by the verifier
	BroadcastQueue    int               // hints waiting in memberlist's queue
	GossipBytesIn     uint64            // memberlist bytes (UDP + its streams) received
	GossipBytesOut    uint64            // memberlist bytes sent
	SyncBytesIn       uint64            // sync stream bytes on the socket, received
	SyncBytesOut      uint64            // sync stream bytes on the socket, sent
	LargestFrameOut   int               // largest frame payload sent
	RoundsMerged      uint64            // own background rounds ended because the peer's round with us does the same work
	JoinRoundsSkipped uint64            // members that appeared while the join-round budget was spent (the interval covers them)
	HintPulls         uint64            // rounds hints started (or joined, when one with the target was running)
	HintPullsFailed   uint64            // of those, rounds that failed: the hint's counter is forgotten, so another holder's hint starts one
	Watchers          int               // clients' watch streams open now (client mode, docs/sync.md)
	NudgesSent        uint64            // NUDGE frames sent to watching clients
	WatchesSuperseded uint64            // watch streams ended by a newer one of the same client (it moved)
	Refutations       uint64            // times memberlist refuted that this node is suspect or dead
	HeldBackEnvelopes uint64            // envelopes the last round held back for the budget (Config.Budget)
	HeldBackBytes     uint64            // their bytes (the first of each author's held run)
	HeldBackSince     time.Time         // since when rounds have been holding something back (zero: nothing held)
	BudgetDayBytes    uint64            // sync bytes on the wire today (UTC)
	Chunks            ChunkStats        // attachment chunks (docs/sync.md "Attachment chunks")
	Resume            ResumeStats       // large envelopes sent and received resumably (docs/sync.md "Resumable envelopes")
}

// PeerStatus is what the engine knows of one peer (docs/design.md §9 `status`).
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
	lim := cfg.Limits.withDefaults(prof)
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
		cfg: cfg, prof: prof, lim: lim, log: lg, store: cfg.Store, auth: cfg.Auth,
		id: id, name: id.String(), label: cfg.Label, tlsCrt: crt, keyring: kr,
		roundSem:     make(chan struct{}, MaxOutboundRounds),
		inboundSem:   make(chan struct{}, lim.InboundSessions),
		handshakeSem: make(chan struct{}, lim.Handshakes),
		peers:        make(map[PeerID]*peerState),
		hintSeen:     make(map[PeerID]*hintOrigin),
		rejected:     make(map[string]uint64),
		watchers:     make(map[PeerID]*watcher),
	}
	e.logw = newLogBridge(lg, cfg.LogEvery)
	e.logw.onRefute = e.noteRefute
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
	if e.cfg.Client {
		e.ctx, e.cancel = context.WithCancel(context.WithoutCancel(ctx))
		e.startClient()
		return nil
	}

	host, port, _ := splitHostPort(e.cfg.BindAddr)
	mlLog := log.New(e.logw, "", 0)
	tr, err := newMuxTransport(host, port, mlLog, e.cfg.Faults, e.lim)
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
// Config (docs/design.md §6): node name = device ID, explicit bind address, tuned
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
	if e.cfg.TuneMemberlist != nil {
		e.cfg.TuneMemberlist(mc)
	}
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
	e.mu.Lock()
	e.nudgeWatchersLocked(PeerID{})
	e.mu.Unlock()
	if e.cfg.Client {
		e.notifyUpstreams()
		return
	}
	e.queueHint()
}

// queueHint queues a hint naming this node as origin and holder. Never
// with e.mu held: the queue's GetBroadcasts holds its lock while it asks
// NumNodes, which takes e.mu.
func (e *Engine) queueHint() {
	if e.cfg.DisableHints || e.queue == nil {
		return
	}
	c := e.hintCounter.Add(1)
	e.queue.QueueBroadcast(&hintBroadcast{origin: e.id, msg: hint{Origin: e.id, Counter: c, Holder: e.id}.encode()})
	e.mu.Lock()
	e.stats.HintsSent++
	e.mu.Unlock()
}

// Stats returns a snapshot of the engine's counters.
func (e *Engine) Stats() Stats {
	e.mu.Lock()
	s := e.stats
	s.Watchers = len(e.watchers)
	e.rollDayLocked(time.Now())
	s.BudgetDayBytes = e.dayBytes
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
		s.StreamsRefused += e.tr.refused.Load()
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
	return e.round(ctx, id, addr, false)
}

// SyncWithAddr runs one round with the peer id at addr (host:port of its
// engine), whether or not it is a memberlist member: a node that cannot be
// reached back (docs/design.md §10) can still pull and push over a stream it opens.
func (e *Engine) SyncWithAddr(ctx context.Context, id PeerID, addr string) (Round, error) {
	e.mu.Lock()
	started := e.started && e.ctx != nil
	e.mu.Unlock()
	if !started {
		return Round{Peer: id}, errors.New("sync: engine not started")
	}
	return e.round(ctx, id, addr, false)
}

// addrOf is the address to dial a peer at: its member address while
// memberlist lists it as live, else one an authenticated peer vouched for;
// nothing while it is blocked for failing the challenge.
func (e *Engine) addrOf(id PeerID) string {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.addrOfLocked(id)
}

func (e *Engine) addrOfLocked(id PeerID) string {
	p := e.peers[id]
	if p == nil || time.Now().Before(p.dialBlocked) {
		return ""
	}
	if p.alive {
		return p.addr
	}
	return p.vouched
}

// requestSync starts a round with a peer in the background, unless one is
// running (then one more runs after it).
func (e *Engine) requestSync(id PeerID, why string) { e.requestSyncThen(id, why, nil) }

// requestSyncThen is requestSync that also calls done (if not nil, outside
// e.mu) with the outcome of the first round with the peer that starts after
// the call: nil once it completed, else why not. A round merged into the
// peer's round with us does not count; the one that runs after it does.
func (e *Engine) requestSyncThen(id PeerID, why string, done func(error)) {
	if id == e.id {
		if done != nil {
			done(errors.New("sync: a round with ourselves"))
		}
		return
	}
	e.mu.Lock()
	if e.closed {
		e.mu.Unlock()
		if done != nil {
			done(errors.New("sync: engine closed"))
		}
		return
	}
	p := e.peerLocked(id)
	if done != nil {
		p.waiters = append(p.waiters, done)
	}
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
			e.mu.Lock()
			waiters := p.waiters
			p.waiters = nil
			e.mu.Unlock()
			err := errors.New("sync: no address to dial")
			if e.ctx.Err() != nil {
				err = e.ctx.Err()
			} else if addr := e.addrOf(id); addr != "" {
				_, err = e.round(e.ctx, id, addr, true)
				if errors.Is(err, errMerged) {
					// The peer's round with us does this work; one more
					// (cheap) round after it carries anything newer, and
					// tells the waiters.
					e.mu.Lock()
					p.again = true
					p.waiters = append(waiters, p.waiters...)
					waiters = nil
					e.mu.Unlock()
				} else if err != nil && e.ctx.Err() == nil {
					e.log.Debug("sync round failed", "peer", id.String(), "why", why, "err", err)
				}
			}
			for _, w := range waiters {
				w(err)
			}
			e.mu.Lock()
			if !p.again || e.closed {
				p.running = false
				waiters := p.waiters
				p.waiters = nil
				e.mu.Unlock()
				for _, w := range waiters {
					w(errors.New("sync: engine closed"))
				}
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
		if m := e.dialableMembers(); len(m) > 0 {
			e.requestSync(m[rand.IntN(len(m))], "interval")
		}
	}
}

// rejoinLoop joins configured and remembered peers on start, then retries
// the ones that are not live members with exponential backoff. Only
// addresses an authenticated peer vouched for (or the configured ones) are
// ever dialed here; remembered peers unseen for PeerExpiry are forgotten.
func (e *Engine) rejoinLoop() {
	defer e.wg.Done()
	if known, err := e.store.LoadPeers(); err != nil {
		e.log.Warn("load known peers", "err", err)
	} else {
		e.loadKnown(known)
	}
	delay := e.prof.rejoinMin
	var lastPrune time.Time
	for {
		// Pruning walks the whole table; expiry is counted in days, so
		// once a minute is enough (and at once over the table's bound).
		if time.Since(lastPrune) >= pruneEvery || e.peerCount() > e.lim.MaxPeers {
			e.prunePeers()
			lastPrune = time.Now()
		}
		targets := e.offlineTargets()
		if len(targets) > 0 {
			if ml := e.memberlist(); ml != nil {
				// One address at a time, so that Close waits for one
				// dial at most.
				n := 0
				for _, t := range targets {
					if e.ctx.Err() != nil {
						return
					}
					if k, _ := ml.Join([]string{t}); k > 0 {
						n += k
					}
				}
				e.log.Debug("rejoin", "tried", len(targets), "reached", n)
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

// pruneEvery is how often the rejoin loop prunes the peer table.
const pruneEvery = time.Minute

func (e *Engine) peerCount() int {
	e.mu.Lock()
	defer e.mu.Unlock()
	return len(e.peers)
}

// loadKnown takes the remembered peers into the table: the most recently
// seen first, at most MaxPeers, none unseen for PeerExpiry.
func (e *Engine) loadKnown(known []KnownPeer) {
	sort.Slice(known, func(i, j int) bool { return known[i].LastSeen.After(known[j].LastSeen) })
	cutoff := time.Now().Add(-e.lim.PeerExpiry)
	skipped := 0
	e.mu.Lock()
	defer e.mu.Unlock()
	for _, k := range known {
		if k.ID == e.id || k.Addr == "" {
			continue
		}
		if (!k.LastSeen.IsZero() && k.LastSeen.Before(cutoff)) || len(e.peers) >= e.lim.MaxPeers {
			skipped++
			continue
		}
		if _, _, err := net.SplitHostPort(k.Addr); err != nil {
			skipped++
			continue
		}
		p := e.peerLocked(k.ID)
		if p.vouched == "" {
			p.vouched = k.Addr
		}
		if p.addr == "" {
			p.addr = k.Addr
		}
		if k.LastSeen.After(p.lastSeen) {
			p.lastSeen = k.LastSeen
		}
		if p.role == 0 {
			p.role = k.Role
		}
	}
	if skipped > 0 {
		e.log.Info("remembered peers not rejoined: unseen too long or over the peer table's bound", "skipped", skipped,
			"expiry", e.lim.PeerExpiry.String(), "max_peers", e.lim.MaxPeers)
	}
}

// maxRejoinTargets bounds the addresses one rejoin attempt dials.
const maxRejoinTargets = 16

// offlineTargets lists vouched addresses of remembered peers that are not
// live members (at most maxRejoinTargets, chosen at random), plus the
// configured join addresses while we are alone.
func (e *Engine) offlineTargets() []string {
	var out []string
	live := 0
	now := time.Now()
	e.mu.Lock()
	for _, p := range e.peers {
		if p.alive {
			live++
		} else if p.vouched != "" && !now.Before(p.dialBlocked) {
			out = append(out, p.vouched)
		}
	}
	e.mu.Unlock()
	out = dedup(out)
	if len(out) > maxRejoinTargets {
		rand.Shuffle(len(out), func(i, j int) { out[i], out[j] = out[j], out[i] })
		out = out[:maxRejoinTargets]
	}
	if live == 0 {
		out = append(out, e.cfg.Join...)
	}
	return dedup(out)
}

// prunePeers forgets peers that are neither live nor running a round and
// that no authenticated contact vouches for (or not for PeerExpiry), then,
// over MaxPeers, the longest unseen of the rest that are not live.
func (e *Engine) prunePeers() {
	cutoff := time.Now().Add(-e.lim.PeerExpiry)
	e.mu.Lock()
	defer e.mu.Unlock()
	busy := func(p *peerState) bool { return p.alive || p.running || p.inbound > 0 }
	for id, p := range e.peers {
		if busy(p) {
			continue
		}
		seen := p.lastSeen
		if p.lastContact.After(seen) {
			seen = p.lastContact
		}
		if (!p.authenticated && p.vouched == "") || seen.Before(cutoff) {
			e.forgetPeerLocked(id)
		}
	}
	if len(e.peers) <= e.lim.MaxPeers {
		return
	}
	var idle []*peerState
	for _, p := range e.peers {
		if !busy(p) {
			idle = append(idle, p)
		}
	}
	sort.Slice(idle, func(i, j int) bool { return idle[i].lastSeen.Before(idle[j].lastSeen) })
	for _, p := range idle {
		if len(e.peers) <= e.lim.MaxPeers {
			break
		}
		e.forgetPeerLocked(p.id)
	}
}

func (e *Engine) forgetPeerLocked(id PeerID) {
	if p := e.peers[id]; p != nil && p.addr != "" && e.tr != nil {
		e.tr.forgetName(p.addr)
	}
	delete(e.peers, id)
	delete(e.hintSeen, id)
}

// dialableMembers are the live members we may start a round with now.
func (e *Engine) dialableMembers() []PeerID {
	now := time.Now()
	e.mu.Lock()
	var out []PeerID
	for id, p := range e.peers {
		if p.alive && p.addr != "" && !now.Before(p.dialBlocked) {
			out = append(out, id)
		}
	}
	e.mu.Unlock()
	sort.Slice(out, func(i, j int) bool { return out[i].Compare(out[j]) < 0 })
	return out
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

// hintRecent is how many counters per origin are remembered to recognise
// a hint already seen.
const hintRecent = 16

// hintOrigin is what the engine keeps per hint origin: the counters seen
// lately (a set, not a maximum: a forged counter of 2^64-1 must not
// silence the origin's real hints), the pace of rounds its hints start, and
// the newest hint's counter and holder (whom the next pull goes to).
type hintOrigin struct {
	recent  [hintRecent]uint64
	n       int // counters stored (ring)
	lastReq time.Time
	pending bool // a round is scheduled for the end of the interval
	counter uint64
	holder  PeerID
}

func (h *hintOrigin) seen(c uint64) bool {
	for i := 0; i < min(h.n, hintRecent); i++ {
		if h.recent[i] == c {
			return true
		}
	}
	return false
}

func (h *hintOrigin) add(c uint64) {
	h.recent[h.n%hintRecent] = c
	h.n++
	if h.n >= 2*hintRecent {
		h.n -= hintRecent
	}
}

// forget drops c from the counters seen, so that the next hint naming it
// (from another holder) starts a pull again.
func (h *hintOrigin) forget(c uint64) {
	for i := 0; i < min(h.n, hintRecent); i++ {
		if h.recent[i] == c {
			h.recent[i] = 0
		}
	}
}

// onHint handles a received hint (from NotifyMsg: must not block). Hints
// are unauthenticated claims of any mesh-key holder, so: a hint is
// recognised as seen by its exact (origin, counter), not by a maximum;
// only hints of known peers (live members or authenticated) are re-queued
// and remembered (at most MaxHintOrigins); and the rounds hints start are
// paced per origin (Limits.HintRoundEvery), origins we do not know sharing
// one budget.
//
// Fan-out (docs/sync.md): a hint names a holder of the change, and the
// pull goes to it; only once that round has completed is the hint re-queued,
// naming this node as the holder. A holder's hint reaches about
// RetransmitMult·log10(N) nodes, so no node serves more pulls than that per
// write, and the change spreads in O(log N) hops instead of N-1 sessions to
// the writer.
func (e *Engine) onHint(h hint) {
	e.mu.Lock()
	e.stats.HintsReceived++
	if h.Origin == e.id || e.closed {
		e.mu.Unlock()
		return
	}
	p := e.peers[h.Origin]
	known := p != nil && (p.alive || p.authenticated)
	var st *hintOrigin
	if known {
		st = e.hintSeen[h.Origin]
		if st == nil {
			if len(e.hintSeen) >= MaxHintOrigins {
				for k := range e.hintSeen { // forget one at random
					delete(e.hintSeen, k)
					break
				}
			}
			st = &hintOrigin{}
			e.hintSeen[h.Origin] = st
		}
		if st.seen(h.Counter) {
			e.mu.Unlock()
			return
		}
		st.add(h.Counter)
	} else {
		e.stats.HintsUnknown++
		st = &e.hintAnon
	}
	st.counter, st.holder = h.Counter, h.Holder
	requeueNow := known && !e.cfg.DisableHints && e.cfg.PullFromWriter
	if requeueNow {
		e.stats.HintsRequeued++
	}
	now := time.Now()
	var wait time.Duration
	start := false
	switch {
	case st.pending:
	case now.Sub(st.lastReq) >= e.lim.HintRoundEvery:
		st.lastReq = now
		start = true
	default:
		st.pending = true
		wait = st.lastReq.Add(e.lim.HintRoundEvery).Sub(now)
	}
	e.mu.Unlock()
	if requeueNow {
		e.queue.QueueBroadcast(&hintBroadcast{origin: h.Origin, msg: h.encode()})
	}
	origin := h.Origin
	if start {
		e.hintPull(origin, st, known)
	} else if wait > 0 {
		time.AfterFunc(wait, func() {
			e.mu.Lock()
			st.pending = false
			st.lastReq = time.Now()
			e.mu.Unlock()
			e.hintPull(origin, st, known)
		})
	}
}

// hintPull pulls the change a hint announced: from the holder it names if
// that is a live member (fan-out), else from the origin if it is one, else
// from a random member (the hint reached us through someone who may have
// it). When the round completes and the origin is known, the hint goes on
// naming this node as its holder; when it fails, its counter is forgotten so
// that another holder's hint starts a pull.
func (e *Engine) hintPull(origin PeerID, st *hintOrigin, known bool) {
	e.mu.Lock()
	counter, holder := st.counter, st.holder
	e.mu.Unlock()
	target := origin
	if !e.cfg.PullFromWriter && holder != e.id && e.addrOfMember(holder) != "" {
		target = holder
	} else if e.addrOfMember(target) == "" {
		m := e.dialableMembers()
		if len(m) == 0 {
			return
		}
		target = m[rand.IntN(len(m))]
	}
	e.mu.Lock()
	e.stats.HintPulls++
	e.mu.Unlock()
	e.requestSyncThen(target, "hint", func(err error) {
		if err != nil {
			e.mu.Lock()
			e.stats.HintPullsFailed++
			if known {
				st.forget(counter)
			}
			e.mu.Unlock()
			return
		}
		if !known || e.cfg.DisableHints || e.cfg.PullFromWriter {
			return
		}
		e.mu.Lock()
		e.stats.HintsRequeued++
		e.mu.Unlock()
		e.queue.QueueBroadcast(&hintBroadcast{origin: origin, msg: hint{Origin: origin, Counter: counter, Holder: e.id}.encode()})
	})
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
// gets an anti-entropy round. memberlist reports whatever any mesh-key
// holder gossips, so the table is bounded (MaxPeers) and a member that
// leaves without ever having authenticated is forgotten.
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
	role, _, _ := decodeMeta(n.Meta)
	e.mu.Lock()
	p := e.peers[id]
	if p == nil {
		if !alive {
			e.mu.Unlock()
			return
		}
		if len(e.peers) >= e.lim.MaxPeers { // the rejoin loop prunes
			e.mu.Unlock()
			e.logw.limited("peer-table-full", slog.LevelWarn, "member not tracked: the peer table is full",
				"max_peers", e.lim.MaxPeers)
			return
		}
		p = e.peerLocked(id)
	}
	was := p.alive
	p.alive = alive
	// A round runs both ways, so one per pair is enough: the side with the
	// lower ID starts it (halves the round storm when a mesh starts; the
	// interval covers a side that never sees the event).
	joinRound := alive && !was && e.id.Compare(id) < 0 && e.joinRoundLocked()
	if p.addr != addr {
		if p.addr != "" {
			e.tr.forgetName(p.addr)
		}
		p.dialBlocked = time.Time{} // a new address gets a new chance
	}
	p.addr = addr
	if role != 0 {
		p.role = role
	}
	if !alive && !p.authenticated && p.vouched == "" && !p.running && p.inbound == 0 {
		e.forgetPeerLocked(id)
		e.mu.Unlock()
		return
	}
	e.mu.Unlock()
	e.tr.setName(addr, n.Name)
	if joinRound {
		e.requestSync(id, "join")
	}
}

// joinRoundBurst is how many join rounds may start at once; then one more
// per quarter of the sync interval. A device that rejoins a mesh of a
// thousand sees a thousand members appear: it syncs with a few at once and
// leaves the rest to the interval, instead of opening a session to each
// (docs/sync.md "Fan-out").
const joinRoundBurst = 4

// joinRoundLocked takes one join round from the budget, if any is left.
// e.mu held.
func (e *Engine) joinRoundLocked() bool {
	now := time.Now()
	every := e.cfg.SyncInterval / 4
	if every <= 0 {
		every = e.prof.syncInterval / 4
	}
	if e.joinLast.IsZero() {
		e.joinBurst = joinRoundBurst
	} else {
		e.joinBurst = min(joinRoundBurst, e.joinBurst+float64(now.Sub(e.joinLast))/float64(every))
	}
	e.joinLast = now
	if e.joinBurst < 1 {
		e.stats.JoinRoundsSkipped++
		return false
	}
	e.joinBurst--
	return true
}

// dialTimeout for sync streams.
func (e *Engine) dialTimeout() time.Duration { return e.lim.TLSHandshakeTimeout }

// errBusy refuses a session over a limit.
var errBusy = errors.New("busy: too many sessions")

// serveInbound runs an inbound sync stream (called by the transport, in its
// own goroutine, with the first byte peeked). Until the peer authenticates
// the stream holds a handshake slot (Limits.Handshakes) and counts against
// its source address (releaseSource); then it needs one of the peer's own
// slots (Limits.SessionsPerPeer) and a session slot (Limits.InboundSessions).
func (e *Engine) serveInbound(c net.Conn, releaseSource func()) {
	defer releaseSource()
	select {
	case e.handshakeSem <- struct{}{}:
	default:
		releaseSource()
		e.refused(c)
		return
	}
	handshaking := true
	endHandshake := func() {
		if handshaking {
			handshaking = false
			<-e.handshakeSem
			releaseSource()
		}
	}
	defer endHandshake()
	e.mu.Lock()
	if e.closed {
		e.mu.Unlock()
		_ = c.Close()
		return
	}
	e.wg.Add(1)
	e.mu.Unlock()
	defer e.wg.Done()
	holding := false
	defer func() {
		if holding {
			<-e.inboundSem
		}
	}()
	// take waits for a session slot (a little, instead of refusing at once).
	take := func() error {
		t := time.NewTimer(InboundQueueWait)
		defer t.Stop()
		select {
		case e.inboundSem <- struct{}{}:
			holding = true
			return nil
		case <-t.C:
			e.mu.Lock()
			e.stats.StreamsRefused++
			e.mu.Unlock()
			return fmt.Errorf("%w: no session slot within %v", errBusy, InboundQueueWait)
		case <-e.ctx.Done():
			return e.ctx.Err()
		}
	}
	admit := func(s *session) error {
		endHandshake()
		e.mu.Lock()
		p := e.peerLocked(s.peer.ID)
		if p.inbound >= e.lim.SessionsPerPeer {
			e.stats.StreamsRefused++
			e.mu.Unlock()
			return fmt.Errorf("%w: %d sessions of this peer already", errBusy, p.inbound)
		}
		p.inbound++
		s.countedInbound = true
		e.supersedeLocked(p, true)
		e.mu.Unlock()
		// When every slot is taken (a hint makes every peer pull from the
		// writer at once), wait a little for one instead of refusing; the
		// dialer's idle deadline bounds the wait from its side.
		if e.inboundWaiting.Add(1) > int64(4*e.lim.InboundSessions) {
			e.inboundWaiting.Add(-1)
			e.mu.Lock()
			e.stats.StreamsRefused++
			e.mu.Unlock()
			return fmt.Errorf("%w: too many sessions waiting", errBusy)
		}
		defer e.inboundWaiting.Add(-1)
		if err := take(); err != nil {
			return err
		}
		// A watch stream gives its slot back while idle and takes one
		// again for each round (watch.go).
		s.idle = func() {
			if holding {
				holding = false
				<-e.inboundSem
			}
		}
		s.busy = take
		return nil
	}
	_, _ = e.runSession(e.ctx, c, false, PeerID{}, admit, nil)
}

// errMerged ends a background round superseded by the peer's round with us.
var errMerged = errors.New("merged into the peer's round with us")

// admitBackground runs when our background round has authenticated the
// peer: it registers the round so that the peer's round with us can
// supersede it, and supersedes it at once if that round is already in.
func (e *Engine) admitBackground(s *session) error {
	e.mu.Lock()
	defer e.mu.Unlock()
	p := e.peerLocked(s.peer.ID)
	if p.background == nil {
		p.background = s
		s.registered = true
	}
	if e.supersedeLocked(p, false) == s {
		return errMerged
	}
	return nil
}

// supersedeLocked ends our background round with p if the peer's round
// with us is also in and our ID is the higher (the tie-break both ends
// agree on without a message), and returns it. closeConn: the round runs in
// another goroutine, which its closed stream stops; otherwise the caller is
// that round, and returns errMerged. e.mu held.
func (e *Engine) supersedeLocked(p *peerState, closeConn bool) *session {
	s := p.background
	if s == nil || p.inbound == 0 || e.id.Compare(p.id) < 0 {
		return nil
	}
	p.background = nil
	s.registered = false
	s.merged.Store(true)
	e.stats.RoundsMerged++
	if closeConn {
		_ = s.conn.Close() // its session goroutine returns errMerged
	}
	return s
}

func (e *Engine) refused(c net.Conn) {
	e.mu.Lock()
	e.stats.StreamsRefused++
	e.mu.Unlock()
	_ = c.Close()
}

// round dials a peer and runs one session as initiator.
//
// background rounds (requestSync's) may be merged: when both ends of a pair
// start a round at once, each session would carry the whole delta both
// ways. The end with the higher ID ends its own background round as soon as
// both are authenticated (supersede), and runs one more after the peer's.
// Explicit rounds (SyncWith) are never ended this way.
func (e *Engine) round(ctx context.Context, id PeerID, addr string, background bool) (Round, error) {
	select {
	case e.roundSem <- struct{}{}:
	case <-ctx.Done():
		return Round{Peer: id}, ctx.Err()
	}
	defer func() { <-e.roundSem }()
	var c net.Conn
	var err error
	if e.tr != nil {
		c, err = e.tr.dialSync(addr, id.String(), e.dialTimeout())
	} else { // client mode: nothing listens, a plain dial
		c, err = net.DialTimeout("tcp", addr, e.dialTimeout())
	}
	if err != nil {
		e.mu.Lock()
		e.stats.RoundErrors++
		if p := e.peers[id]; p != nil {
			p.lastErr = err.Error()
		}
		e.mu.Unlock()
		return Round{Peer: id}, fmt.Errorf("dial %s: %w", addr, err)
	}
	var admit func(*session) error
	if background {
		admit = e.admitBackground
	}
	r, err := e.runSession(ctx, c, true, id, admit, nil)
	if errors.Is(err, ErrUnauthenticated) {
		// Whoever answers there is not the device we expected (or no longer
		// passes the challenge): no automatic dial of it until memberlist
		// gives it a new address or the rejoin backoff's maximum passes,
		// and the address is no longer vouched for.
		e.mu.Lock()
		if p := e.peers[id]; p != nil {
			p.dialBlocked = time.Now().Add(e.prof.rejoinMax)
			if p.vouched == addr {
				p.vouched = ""
			}
		}
		e.mu.Unlock()
	}
	return r, err
}
