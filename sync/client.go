package sync

import (
	"errors"
	"math/rand/v2"
	"net"
	"sort"
	gosync "sync"
	"sync/atomic"
	"time"
)

// Client mode (docs/sync.md "Client mode"). A laptop behind address
// translation, on hotel Wi-Fi or a phone tether cannot accept connections:
// memberlist's probes and pushes to it fail, and every member would keep
// suspecting it. In client mode the engine runs no memberlist and listens on
// nothing. It keeps one outbound watch stream (watch.go) to each upstream —
// a relay, or any reachable peer — runs a round on it at once, then
// whenever the upstream nudges or this device writes, and answers nothing
// but its upstreams. The upstreams keep their full membership; to them the
// client is an authenticated peer with no address. Its own address may
// change at any time: the stream breaks (or its keepalives go unanswered),
// the client dials again from wherever it is now, and the next round's
// summary resumes where the last stopped: envelopes are named by (space,
// author, seq), so nothing is sent twice once a round has ended.

// Upstream states (UpstreamStatus.State).
const (
	upstreamConnecting = "connecting"
	upstreamSyncing    = "syncing"
	upstreamWatching   = "watching"
	upstreamBackoff    = "backoff"
	upstreamPolling    = "polling" // the upstream does not serve watch streams
)

// upstream is one address a client keeps a watch stream with.
type upstream struct {
	addr   string
	notify chan struct{} // capacity 1: local writes coalesce
	nudges atomic.Uint64 // NUDGE frames received

	mu       gosync.Mutex
	peer     PeerID
	state    string
	since    time.Time
	lastErr  string
	streams  uint64 // watch streams opened
	lastOpen time.Time
}

func (u *upstream) setState(state, lastErr string) {
	u.mu.Lock()
	defer u.mu.Unlock()
	if u.state != state {
		u.state, u.since = state, time.Now()
	}
	if lastErr != "" || state == upstreamWatching {
		u.lastErr = lastErr
	}
}

// UpstreamStatus is a client's view of one upstream (`status`).
type UpstreamStatus struct {
	Addr    string
	Peer    PeerID // who answered there last (zero before the first answer)
	State   string // connecting, syncing, watching, backoff or polling
	Since   time.Time
	LastErr string
	Streams uint64 // watch streams opened (one more each time the address or link changed)
	Nudges  uint64 // rounds the upstream asked for
}

// Upstreams returns the client's upstreams (nil unless in client mode).
func (e *Engine) Upstreams() []UpstreamStatus {
	out := make([]UpstreamStatus, 0, len(e.upstreams))
	for _, u := range e.upstreams {
		u.mu.Lock()
		out = append(out, UpstreamStatus{Addr: u.addr, Peer: u.peer, State: u.state, Since: u.since,
			LastErr: u.lastErr, Streams: u.streams, Nudges: u.nudges.Load()})
		u.mu.Unlock()
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Addr < out[j].Addr })
	return out
}

// IsClient reports whether the engine runs in client mode.
func (e *Engine) IsClient() bool { return e.cfg.Client }

// keepalive is the interval of a client's keepalives on an idle watch
// stream: Config.Keepalive, or the profile's.
func (e *Engine) keepalive() time.Duration {
	if e.cfg.Keepalive > 0 {
		return e.cfg.Keepalive
	}
	return e.prof.keepalive
}

// startClient starts one loop per upstream: the configured join addresses,
// or, without any, the remembered relays.
func (e *Engine) startClient() {
	addrs := append([]string(nil), e.cfg.Join...)
	if len(addrs) == 0 {
		if known, err := e.store.LoadPeers(); err == nil {
			for _, k := range known {
				if k.Role == RoleRelay && k.Addr != "" {
					addrs = append(addrs, k.Addr)
				}
			}
		}
	}
	addrs = dedup(addrs)
	if len(addrs) == 0 {
		e.log.Warn("client mode with no upstream: give --join the address of a relay; until then this device syncs nothing")
	}
	for _, a := range addrs {
		u := &upstream{addr: a, notify: make(chan struct{}, 1), state: upstreamConnecting, since: time.Now()}
		e.upstreams = append(e.upstreams, u)
	}
	e.log.Info("sync started in client mode", "node", e.name, "upstreams", addrs, "profile", string(e.cfg.Profile))
	for _, u := range e.upstreams {
		e.wg.Add(1)
		go e.upstreamLoop(u)
	}
}

// notifyUpstreams asks every upstream loop for a round (a local write).
func (e *Engine) notifyUpstreams() {
	for _, u := range e.upstreams {
		select {
		case u.notify <- struct{}{}:
		default:
		}
	}
}

// upstreamLoop keeps a watch stream open to u until the engine closes:
// dial, round, watch; on any failure wait (a backoff that a local write
// cuts short, at most once a second) and dial again.
func (e *Engine) upstreamLoop(u *upstream) {
	defer e.wg.Done()
	backoff := e.prof.rejoinMin
	for e.ctx.Err() == nil {
		u.setState(upstreamConnecting, "")
		u.mu.Lock()
		u.streams++
		u.lastOpen = time.Now()
		u.mu.Unlock()
		r, err := e.upstreamSession(u)
		if e.ctx.Err() != nil {
			return
		}
		if !r.Peer.IsZero() {
			u.mu.Lock()
			u.peer = r.Peer
			u.mu.Unlock()
			backoff = e.prof.rejoinMin // it answered: the link works
		}
		wait := backoff
		switch {
		case err == nil:
			// A plain round: the upstream does not serve watch streams.
			// Poll it on the sync interval, or at once after a write.
			u.setState(upstreamPolling, "")
			wait = e.cfg.SyncInterval
			if wait <= 0 {
				wait = e.prof.syncInterval
			}
		default:
			u.setState(upstreamBackoff, err.Error())
			e.logw.limited("upstream-"+u.addr, 0, "upstream stream ended; dialing again",
				"upstream", u.addr, "err", err.Error(), "retry_in", wait.String())
			backoff = min(2*backoff, e.prof.rejoinMax)
		}
		t := time.NewTimer(jitter(wait))
		select {
		case <-e.ctx.Done():
			t.Stop()
			return
		case <-t.C:
		case <-u.notify:
			t.Stop()
			// A write wants out: try now, but not more than once a second.
			if d := time.Until(u.lastOpen.Add(time.Second)); d > 0 {
				select {
				case <-time.After(d):
				case <-e.ctx.Done():
					return
				}
			}
			// The write is carried by the round the new stream starts with.
		}
	}
}

// jitter spreads d over [0.75 d, 1.25 d): clients that lost the same relay
// do not all dial it again at once.
func jitter(d time.Duration) time.Duration {
	if d <= 0 {
		return 0
	}
	return d*3/4 + rand.N(d/2+1)
}

// errNoUpstreamAnswer is returned for a dial that failed.
var errNoUpstreamAnswer = errors.New("upstream did not answer")

// upstreamSession dials u and runs the watch stream until it ends.
func (e *Engine) upstreamSession(u *upstream) (Round, error) {
	d := net.Dialer{Timeout: e.dialTimeout()}
	c, err := d.DialContext(e.ctx, "tcp", u.addr)
	if err != nil {
		return Round{}, errors.Join(errNoUpstreamAnswer, err)
	}
	// Keepalives of the watch stream find a dead link; the kernel's own
	// would send more and tell later.
	if tc, ok := c.(*net.TCPConn); ok {
		_ = tc.SetKeepAlive(false)
	}
	stop := make(chan struct{})
	defer close(stop)
	go e.watchLocalAddr(c, stop)
	return e.runSession(e.ctx, c, true, PeerID{}, nil, u)
}

// watchLocalAddr closes c once its local address is no longer on any
// interface of this machine (Wi-Fi to a tether, a new DHCP lease): the
// stream is dead even if no read has timed out yet, and the loop dials
// again from the new address at once instead of after an idle timeout.
// It looks once per keepalive interval (at most once a second), until stop.
func (e *Engine) watchLocalAddr(c net.Conn, stop <-chan struct{}) {
	la, ok := c.LocalAddr().(*net.TCPAddr)
	if !ok || la.IP.IsLoopback() {
		return
	}
	t := time.NewTicker(max(e.keepalive(), time.Second))
	defer t.Stop()
	for {
		select {
		case <-stop:
			return
		case <-t.C:
		}
		if !hasLocalIP(la.IP) {
			e.log.Info("local address gone; dialing the upstream again from the new one", "addr", la.IP.String())
			_ = c.Close()
			return
		}
	}
}

// hasLocalIP reports whether ip is an address of one of this machine's
// interfaces (true when they cannot be listed: never close on doubt).
func hasLocalIP(ip net.IP) bool {
	addrs, err := net.InterfaceAddrs()
	if err != nil {
		return true
	}
	for _, a := range addrs {
		if n, ok := a.(*net.IPNet); ok && n.IP.Equal(ip) {
			return true
		}
	}
	return false
}

// Detecting that nobody can reach this node (Config.DetectUnreachable). A
// member behind address translation can probe and push to others, but
// their probes of it fail: they suspect it, declare it dead, and it learns
// so from the state it pulls, and refutes. Refuting now and then is normal
// on a lossy link; refuting again and again is not.
const (
	UnreachableRefutes = 3
	UnreachableWindow  = 10 * time.Minute
)

// noteRefute counts one refutation and, past the threshold, tells
// OnUnreachable once.
func (e *Engine) noteRefute() {
	if !e.cfg.DetectUnreachable || e.cfg.Client {
		return
	}
	now := time.Now()
	e.mu.Lock()
	e.stats.Refutations++
	kept := e.refutes[:0]
	for _, t := range e.refutes {
		if now.Sub(t) < UnreachableWindow {
			kept = append(kept, t)
		}
	}
	e.refutes = append(kept, now)
	fire := len(e.refutes) >= UnreachableRefutes && !e.unreachable
	if fire {
		e.unreachable = true
	}
	e.mu.Unlock()
	if fire {
		up := e.upstreamCandidates()
		e.log.Warn("peers cannot reach this device: memberlist keeps refuting that it is suspect or dead",
			"refutations", UnreachableRefutes, "window", UnreachableWindow.String(), "upstreams", up)
		if e.cfg.OnUnreachable != nil {
			go e.cfg.OnUnreachable(up)
		}
	}
}

// upstreamCandidates are where a node that cannot be reached would keep
// watch streams: the relays it has authenticated, then the configured join
// addresses, then (without either) up to three live members it reached.
func (e *Engine) upstreamCandidates() []string {
	var relays, others []string
	e.mu.Lock()
	for _, p := range e.peers {
		addr := p.vouched
		if addr == "" {
			addr = p.addr
		}
		if addr == "" || !p.authenticated {
			continue
		}
		if p.role == RoleRelay {
			relays = append(relays, addr)
		} else if p.alive && !p.lastContact.IsZero() {
			others = append(others, addr)
		}
	}
	e.mu.Unlock()
	sort.Strings(relays)
	sort.Strings(others)
	out := append(relays, e.cfg.Join...)
	if len(out) == 0 {
		out = others[:min(3, len(others))]
	}
	return dedup(out)
}
